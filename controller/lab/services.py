"""The lab's long-running processes (Temporal dev server, worker, follow ingest): start in the background,
find again from another command, stop for sure.

`autonomy lab up` and `autonomy lab down` are separate invocations, so each process is remembered in a pid
file in the lab folder. A pid alone could name an unrelated process after a reboot or pid reuse, so the file
also keeps the process's start time (from /proc): a pid whose start time differs is not ours and is never
signalled. Each service runs in a session of its own, and stopping signals the whole process group, so the
probes a worker spawns go with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from autonomy_controller.controller.lab.network import alive


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: clock ticks after boot when the process started."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Service:
    name: str
    run_dir: Path
    log_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def recorded(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None

    def pid(self) -> int | None:
        """The running process this service started, or None (not started, exited, or the pid was reused)."""
        data = self.recorded()
        if data is None:
            return None
        pid = data["pid"]
        assert isinstance(pid, int)
        if not alive(pid) or start_time(pid) != data.get("start_time"):
            return None
        return pid

    def start(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> int:
        """Start in the background (its own session, output to the log file) unless it runs already."""
        running = self.pid()
        if running is not None:
            return running
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        record = {"pid": process.pid, "start_time": start_time(process.pid), "argv": argv}
        scratch = self.pid_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(record))
        os.replace(scratch, self.pid_file)
        return process.pid

    def exited(self) -> bool:
        """Started (a pid file exists) but no longer running."""
        return self.recorded() is not None and self.pid() is None

    def stop(self, grace_seconds: float = 10.0) -> int | None:
        """SIGTERM its process group (a clean shutdown: the follower saves its offset, the worker drains), then
        SIGKILL what is left. Returns the pid that was running, if any."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while time.monotonic() < deadline and _groupalive(pid):
                time.sleep(0.05)
            if _groupalive(pid):
                _signal_group(pid, signal.SIGKILL)
                deadline = time.monotonic() + grace_seconds
                while time.monotonic() < deadline and _groupalive(pid):
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Until `text` appears in this run's log output (the service says it is ready) or it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log_tail(200).rsplit("--- ", 1)[-1]:
                return True
            if self.pid() is None:
                return False
            time.sleep(0.1)
        return False


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _groupalive(pgid: int) -> bool:
    """Any living (non-zombie) process in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def wait_listening(address: str, timeout: float, service: Service) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(address):
            return True
        if service.pid() is None:
            return False
        time.sleep(0.1)
    return False
