"""Child processes the controller starts itself (OPA, the Temporal dev server): ports and a clean stop."""

from __future__ import annotations

import socket
import subprocess


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the caller binds it soon after; a lost race fails loudly at start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL: a child that ignores TERM must not outlive us."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
