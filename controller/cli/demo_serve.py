"""`autonomy demo --serve`: the last level kept alive and served over HTTP until Ctrl-C.

When the levels have run (demo_run.run_demo's `linger`), nothing is torn down yet: the dev server with every
level's namespace, the throwaway enforcement points (nftables namespace, slapd) and the webhook receiver are
still up. Here a worker starts on the last level's namespace (in this process, as the levels' workers ran) and
`autonomy serve` on that level's state folder; what a newcomer needs to try it is made in that folder (an inbox
account for an approver who may approve what waits, its generated password printed once, a read and an ingest
token); then it waits for SIGINT or SIGTERM, stops the service and the worker, and returns to run_demo's
teardown (dev server, namespace, slapd, receiver). Approving in the inbox really runs the action: the worker
and the enforcement point are alive.

The service is a child process, `python -m autonomy_controller.controller.cli serve`, as `autonomy lab up`
starts it: it is `autonomy serve` itself (its start-up checks, uvicorn's run, its own signal handling), never a
second assembly of the app, and its requests never share an event loop with the worker's activities. It runs in
its own session, so a terminal's Ctrl-C reaches this process alone, which stops the service first (SIGTERM, then
SIGKILL) and only then the worker and the rest.

Signed votes: with a directory the demo's approver keys file requires signatures (demo_identity.py), so the
inbox signs with a key the service holds for the approver (docs/http.md, "Trust model"): the demo makes one for
the account's person, under a key id of its own, and lists its public half in the demo's keys file. Without a
directory the configured keys file is in force, and the inbox's votes are unsigned where it allows them.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from autonomy_controller.controller.approver_keys import generate_key
from autonomy_controller.controller.cli.demo_identity import DemoApprovers
from autonomy_controller.controller.cli.demo_run import (
    EXAMPLE_FEEDS,
    LevelRun,
    Lingering,
    Timings,
    environment,
    level_settings,
    namespace,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.decision.runtime import EngineName
from autonomy_controller.controller.service.approvals import keys_dir
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from autonomy_controller.workflows.contracts import ActionStatus
from autonomy_controller.workflows.worker import connect, incident_worker

HOST = "127.0.0.1"
"""Loopback only: the demo's accounts and tokens are for this machine, and Secure cookies work over http here."""
SERVE_LOG = "serve.log"
"""The service's own output, in the demo's folder (its start-up line, uvicorn's warnings)."""
START_SECONDS = 60.0
STOP_SECONDS = 10.0
KEY_ID_SUFFIX = "demo-inbox"
"""The service-held key's id is `<person>-demo-inbox`: an auditor tells inbox votes from others by it."""
UNSET_WHILE_SERVING = (
    "AUTONOMY_TEMPORAL_ADDRESS",
    "AUTONOMY_TEMPORAL_TLS",
    "AUTONOMY_TEMPORAL_TLS_CA",
    "AUTONOMY_TEMPORAL_TLS_CERT",
    "AUTONOMY_TEMPORAL_TLS_KEY",
    "AUTONOMY_TEMPORAL_TLS_SERVER_NAME",
    "AUTONOMY_TEMPORAL_API_KEY",
    "AUTONOMY_TEMPORAL_API_KEY_FILE",
    "AUTONOMY_API_TOKENS_FILE",
    "AUTONOMY_INBOX_ACCOUNTS_FILE",
    "AUTONOMY_CHATOPS_FILE",
)
"""A user's own Temporal, tokens, accounts and Slack are never the demo's: these are unset while it serves."""


class ServeError(RuntimeError):
    """The demo's service could not start or stopped by itself; the message says why (and the log's tail)."""


def port_taken(port: int) -> str | None:
    """Why `port` cannot be served on (taken, or not allowed), else None. Bound as uvicorn binds it
    (SO_REUSEADDR): a port in TIME_WAIT is free, one with a listener is not."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            return f"port {port} on {HOST} is not free ({exc.strerror or exc}): pick another with --port"
    return None


@dataclass(frozen=True)
class Newcomer:
    """What a person needs to try the service; the password and tokens are printed once and stored hashed."""

    url: str
    level: str
    account: str
    """The inbox sign-in name, also the person in identities.yaml it votes as."""
    password: str
    waiting: int
    """Actions awaiting approval that this person may approve now."""
    read_token: str
    ingest_token: str
    signing_key: str | None
    """The id of the key the service signs this person's votes with, or None (unsigned votes)."""
    log: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _approver_groups(identities_file: Path) -> list[str]:
    """Members of the approver groups, in the data's order (the fallback when nothing waits)."""
    try:
        document = yaml.safe_load(identities_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    groups = document.get("approver_groups") if isinstance(document, dict) else None
    members = [
        member
        for group in (groups.values() if isinstance(groups, dict) else ())
        if isinstance(group, dict) and isinstance(group.get("members"), list)
        for member in group["members"]
    ]
    return [m for m in members if isinstance(m, str)]


def pick_approver(run: LevelRun, identities_file: Path) -> tuple[str, int]:
    """The person who may approve the most of what waits at this level, with that count; when nothing waits,
    the first member of an approver group. Only people may hold an inbox account (never a service)."""
    eligible = people(identities_file)
    counts = Counter(
        person
        for outcome in run.incidents.values()
        for action in outcome.status.actions
        if action.status is ActionStatus.AWAITING_APPROVAL
        for person in action.waiting_on
        if person in eligible
    )
    if counts:
        person, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
        return person, count
    fallback = next((m for m in _approver_groups(identities_file) if m in eligible), None)
    if fallback is None:
        raise ServeError(f"no approver in {identities_file} may hold an inbox account")
    return fallback, 0


def hold_key(state_dir: Path, person: str, approvers: DemoApprovers) -> str:
    """A key the service holds for `person` (inbox-approver-keys/), its public half added to the demo's keys
    file, which the worker reads afresh for every vote. Returns the key id."""
    secret = generate_key(person, key_id=f"{person}-{KEY_ID_SUFFIX}")
    secret.write(keys_dir(state_dir) / f"{person}.key")
    text = approvers.keys_file.read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    listed = document.setdefault("approvers", {}).setdefault(person, {"keys": []})
    listed["keys"].extend(secret.config_entry()["approvers"][person]["keys"])
    header = f"# ...and by `autonomy demo --serve`: {secret.key_id}, the key the inbox signs {person}'s votes with.\n"
    kept = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    approvers.keys_file.write_text(kept + header + yaml.safe_dump(document, sort_keys=False))
    return secret.key_id


def make_newcomer(
    run: LevelRun, identities_file: Path, approvers: DemoApprovers | None, port: int, log: Path
) -> Newcomer:
    """The account, tokens and (under signed votes) the service-held key, all in the level's state folder."""
    person, waiting = pick_approver(run, identities_file)
    password = secrets.token_urlsafe(18)
    AccountStore(accounts_file(run.state_dir)).add(person, person, password, people(identities_file))
    tokens = TokenStore(tokens_file(run.state_dir))
    read_token, _ = tokens.add("demo-reader", [Scope.READ])
    ingest_token, _ = tokens.add("demo-sender", [Scope.INGEST], EXAMPLE_FEEDS)  # the example shippers
    key_id = hold_key(run.state_dir, person, approvers) if approvers is not None else None
    url = f"http://{HOST}:{port}"
    return Newcomer(url, run.level.value, person, password, waiting, read_token, ingest_token, key_id, str(log))


def service_environment(run: LevelRun) -> AbstractContextManager[None]:
    """The level's state folder, ledger and namespace for the service (and the files made for it), with a
    user's own Temporal, tokens, accounts and ChatOps unset; restored on exit."""
    changes: dict[str, str | None] = dict.fromkeys(UNSET_WHILE_SERVING)
    changes |= {
        "AUTONOMY_STATE_DIR": str(run.state_dir),
        "AUTONOMY_LEDGER_URL": run.ledger_url,
        "AUTONOMY_TEMPORAL_NAMESPACE": namespace(run.level),
    }
    return environment(changes)


def _status(url: str) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _Service:
    """`autonomy serve` as a child process in its own session, its output in the demo's log."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    @classmethod
    async def start(cls, run: LevelRun, address: str, port: int, timings: Timings, log: Path) -> _Service:
        command = [sys.executable, "-m", "autonomy_controller.controller.cli", "serve", "--host", HOST]
        command += ["--port", str(port), "--address", address, "--level", run.level.value]
        command += ["--settle", str(timings.settle_seconds), "--quiet", str(timings.quiet_seconds)]
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
            )
        return cls(process, f"http://{HOST}:{port}", log)

    def died(self) -> ServeError:
        return ServeError(
            f"autonomy serve exited with status {self.process.returncode}; its log ({self.log}) ends:\n"
            f"{_tail(self.log)}"
        )

    async def ready(self, stop: asyncio.Event) -> bool:
        """True once /readyz answers 200 (Temporal, ledger and guard usable); False when asked to stop first."""
        deadline = asyncio.get_running_loop().time() + START_SECONDS
        while not stop.is_set():
            if self.process.returncode is not None:
                raise self.died()
            if await asyncio.to_thread(_status, f"{self.url}/readyz") == 200:
                return True
            if asyncio.get_running_loop().time() > deadline:
                raise ServeError(f"autonomy serve was not ready in {START_SECONDS:g} s; see {self.log}")
            await asyncio.sleep(0.2)
        return False

    async def until(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; ServeError when the service exits first."""
        stopped = asyncio.ensure_future(stop.wait())
        exited = asyncio.ensure_future(self.process.wait())
        try:
            await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            exited.cancel()
        if not stop.is_set():
            raise self.died()

    async def stop(self) -> None:
        """SIGTERM (uvicorn's graceful stop), then SIGKILL: the service must not outlive the demo."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@contextmanager
def _stop_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop` while serving (a second one changes nothing: the teardown runs once)."""
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        yield
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


async def serve_last_level(
    lingering: Lingering,
    base: Settings,
    engine: EngineName | None,
    timings: Timings,
    port: int,
    announce: Callable[[Newcomer], None],
) -> None:
    """A worker on the last level's namespace and `autonomy serve` on its state folder, announced once ready,
    until SIGINT or SIGTERM; both stopped before this returns."""
    result = lingering.result
    run = result.levels[-1]
    settings = level_settings(base, result.root, run.level)
    identities_file = data_file(settings.policies_dir, "identities")
    log = result.root / SERVE_LOG
    stop = asyncio.Event()
    with _stop_signals(stop), service_environment(run):
        newcomer = make_newcomer(run, identities_file, lingering.approvers, port, log)
        client = await connect(lingering.address, namespace=namespace(run.level))
        async with incident_worker(client, settings, engine):
            service = await _Service.start(run, lingering.address, port, timings, log)
            try:
                if await service.ready(stop):
                    announce(newcomer)
                    await service.until(stop)
            finally:
                await service.stop()
