"""Replay labelled traffic through the lab's real WAF from many source addresses, and keep the ground truth.

`replay(lab, sessions, ...)`:
1. checks the lab is up (namespaces, nginx) and notes the audit log's size (where this replay's lines start);
2. adds each session's address to the attacker's veth (/32, from `sessions.REPLAY_POOL`);
3. runs the client (`controller.lab.sender`) inside the attacker namespace, `workers` processes, each with its
   share of the sessions and of the rate: every source sends its session in order over its own keep-alive
   connection bound to its address, paced by one schedule per process;
4. removes the addresses again, also when something failed (and says which could not be removed);
5. waits for the audit log to be quiet (ModSecurity writes a line in nginx's log phase, after the answer) and
   writes the manifest (`controller.lab.manifest`): source -> label, session, requests sent, statuses.

Fails closed: a client process that dies, or a result line that does not parse, is a ReplayError, never a
shorter replay passed off as complete.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.lab.lab import Lab, LabError
from autonomy_controller.controller.lab.manifest import MANIFEST_NAME, Manifest, SourceRecord
from autonomy_controller.controller.lab.network import ip_binary
from autonomy_controller.controller.lab.sessions import Session
from autonomy_controller.controller.lab.waf import SERVER_NAME

QUIET_SECONDS = 0.3
QUIET_TIMEOUT_SECONDS = 15.0


class ReplayError(RuntimeError):
    pass


@dataclass(frozen=True)
class Sent:
    """One result line of the client: a request answered (status) or not (None)."""

    source: str
    index: int
    status: int | None
    ms: float
    error: str | None


OnSent = Callable[[Sent], None]


def _batch(lab: Lab, sessions: list[Session], rate: float, limit: int | None, timeout: float) -> dict[str, Any]:
    return {
        "host": lab.topology.victim_a,
        "port": lab.config.http_port,
        "timeout": timeout,
        "rate": rate,
        "limit": limit,
        "sessions": [
            {
                "source": session.source,
                "requests": [
                    [r.method, base64.b64encode(r.wire(SERVER_NAME)).decode("ascii")] for r in session.requests
                ],
            }
            for session in sessions
        ],
    }


def _split(total: int | None, parts: int) -> list[int | None]:
    if total is None:
        return [None] * parts
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@dataclass
class Sending:
    """What the client processes reported: every request's result, where cut-off sources stopped, and the
    sending window (first request out to last answer in, so process start-up does not dilute the rate)."""

    results: list[Sent] = field(default_factory=list)
    cut_off: dict[str, int] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None

    def add(self, sent: Sent) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now - sent.ms / 1000
        self.last = now
        self.results.append(sent)

    @property
    def rate(self) -> float:
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return round(len(self.results) / (self.last - self.first), 1)


def send(
    lab: Lab,
    sessions: list[Session],
    rate: float = 0.0,
    limit: int | None = None,
    timeout: float = 3.0,
    workers: int = 1,
    on_sent: OnSent | None = None,
) -> Sending:
    """Run the client processes and collect what they report. The sources' addresses must be on the
    attacker's veth already (`replay` adds them)."""
    workers = max(1, min(workers, len(sessions)))
    groups = [sessions[i::workers] for i in range(workers)]
    limits = _split(limit, workers)
    lines: queue.Queue[str | None] = queue.Queue()
    processes: list[subprocess.Popen[str]] = []
    command = [
        ip_binary(),
        "netns",
        "exec",
        lab.topology.attacker,
        sys.executable,
        "-m",
        "autonomy_controller.controller.lab.sender",
    ]
    try:
        for group, share in zip(groups, limits, strict=True):
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=REPO_ROOT,
            )  # fmt: skip
            processes.append(process)
            threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
            assert process.stdin is not None
            process.stdin.write(json.dumps(_batch(lab, group, rate / workers, share, timeout)))
            process.stdin.close()
        sending = Sending()
        open_streams = len(processes)
        while open_streams:
            line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ReplayError(f"the replay client printed something unexpected: {line[:200]!r}") from None
            if "cut_off_at" in record:
                sending.cut_off[record["source"]] = int(record["cut_off_at"])
            elif "index" in record:
                sent = Sent(record["source"], int(record["index"]), record["status"], record["ms"], record["error"])
                sending.add(sent)
                if on_sent is not None:
                    on_sent(sent)
        for process in processes:
            stderr = process.stderr.read() if process.stderr else ""
            if process.wait() != 0:
                raise ReplayError(f"the replay client exited with {process.returncode}: {stderr.strip()[-800:]}")
        return sending
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_quiet(path: Path, quiet: float = QUIET_SECONDS, timeout: float = QUIET_TIMEOUT_SECONDS) -> int:
    """The file's size once it stopped growing for `quiet` seconds (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    size, since = _size(path), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = _size(path)
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def replay(
    lab: Lab,
    sessions: list[Session],
    *,
    rate: float = 0.0,
    limit: int | None = None,
    timeout: float = 3.0,
    workers: int = 1,
    inputs: list[str] | None = None,
    seed: int = 0,
    manifest_path: Path | None = None,
    on_sent: OnSent | None = None,
) -> tuple[Manifest, Path]:
    """Replay the sessions (see the module doc); the manifest and where it was written."""
    if not sessions:
        raise ReplayError("nothing to replay: no sessions")
    status = lab.status()
    if not status.network_complete or not status.nginx.running:
        raise LabError(f"the lab in {lab.root} is not up (namespaces and nginx): autonomy lab up")
    addresses = [session.source for session in sessions]
    if len(set(addresses)) != len(addresses):
        raise ReplayError("two sessions share a source address")
    start_offset = wait_quiet(lab.audit_log, quiet=0.1)
    started_at, began = datetime.now(UTC), time.monotonic()
    added = lab.network.add_sources(addresses)
    try:
        sending = send(lab, sessions, rate, limit, timeout, workers, on_sent)
    finally:
        left = lab.network.remove_sources(added)
    if left:
        raise ReplayError(f"could not remove the replay's addresses from {lab.topology.attacker}: {left}")
    seconds = time.monotonic() - began
    end_offset = wait_quiet(lab.audit_log)
    records = {s.source: SourceRecord(s.label, s.name, len(s.requests)) for s in sessions}
    for sent in sending.results:
        records[sent.source].count(sent.status)
    for source, index in sending.cut_off.items():
        records[source].cut_off_at = index
    manifest = Manifest(
        started_at=started_at.isoformat(),
        finished_at=datetime.now(UTC).isoformat(),
        seconds=round(seconds, 3),
        rate={"requested": rate, "achieved": sending.rate},
        target=f"{lab.topology.victim_a}:{lab.config.http_port}",
        netns=lab.topology.attacker,
        paranoia_level=lab.config.paranoia_level,
        inputs=inputs or [],
        seed=seed,
        audit_log={"path": str(lab.audit_log), "start_offset": start_offset, "end_offset": end_offset},
        sources=records,
    )
    target = manifest_path or lab.audit_log.parent / MANIFEST_NAME
    return manifest, manifest.write(target)
