"""The replay's client, run inside the attacker namespace (`ip netns exec NS python -m controller.lab.sender`).

Reads one batch as JSON on stdin (target, rate, limit, timeout, and sessions: a source address and its requests
as wire bytes), sends every session from its own address (the socket is bound to it) in order, one thread per
session, and prints one JSON line per request: {"source", "index", "status" (None: no answer), "ms", "error"}.
The last line is {"done": true, "sent": n}.

Why raw bytes on a socket and http.client only for the answer: the recorded requests must reach the WAF as
recorded (header order, odd but valid characters that http.client's request builder would refuse), while the
response still needs a real HTTP parser (status, keep-alive, chunked bodies).

Pacing: a shared schedule grants send slots at `rate` per second (0: as fast as the threads go) up to `limit`
requests. A source whose requests get no answer twice in a row is cut off (blocked, most likely): its remaining
requests are not sent, and a {"source", "cut_off_at"} line says where it stopped.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

CUT_OFF_AFTER = 2
"""Consecutive requests without an answer before a source counts as cut off."""


@dataclass
class Pacer:
    rate: float
    limit: int | None
    started: float
    granted: int = 0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def slot(self) -> bool:
        """Wait for the next send slot; False once the limit is reached."""
        with self.lock:
            if self.limit is not None and self.granted >= self.limit:
                return False
            n = self.granted
            self.granted += 1
        if self.rate > 0:
            delay = self.started + n / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return True


class Output:
    """Serialises result lines from many threads onto stdout."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


class Connection:
    """One source's keep-alive connection, bound to its address; reopened when the server closes it."""

    def __init__(self, source: str, host: str, port: int, timeout: float) -> None:
        self.source, self.host, self.port, self.timeout = source, host, port, timeout
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, wire: bytes, method: str) -> int:
        """Send one request and read its whole answer; the status. Retries once on a fresh connection when a
        reused one turns out closed by the server before it answered (nothing was processed then)."""
        reused = self.sock is not None
        try:
            return self._exchange(wire, method)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.close()
            if not reused:
                raise
            return self._exchange(wire, method)

    def _exchange(self, wire: bytes, method: str) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(
                (self.host, self.port), timeout=self.timeout, source_address=(self.source, 0)
            )
        self.sock.sendall(wire)
        response = http.client.HTTPResponse(self.sock, method=method)
        try:
            response.begin()
            response.read()
        finally:
            response.close()
        if response.will_close:
            self.close()
        return response.status


def run_session(session: dict[str, Any], batch: dict[str, Any], pacer: Pacer, out: Output) -> None:
    source = session["source"]
    connection = Connection(source, batch["host"], int(batch["port"]), float(batch["timeout"]))
    missed = 0
    try:
        for index, (method, encoded) in enumerate(session["requests"]):
            if missed >= CUT_OFF_AFTER:
                out.emit({"source": source, "cut_off_at": index})
                return
            if not pacer.slot():
                return
            began = time.monotonic()
            status: int | None = None
            error = None
            try:
                status = connection.exchange(base64.b64decode(encoded), method)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                error = f"{type(exc).__name__}: {exc}"
            missed = missed + 1 if status is None else 0
            ms = round((time.monotonic() - began) * 1000, 2)
            out.emit({"source": source, "index": index, "status": status, "ms": ms, "error": error})
    finally:
        connection.close()


def main() -> int:
    batch = json.load(sys.stdin)
    pacer = Pacer(float(batch["rate"]), batch.get("limit"), time.monotonic())
    out = Output()
    threads = [
        threading.Thread(target=run_session, args=(session, batch, pacer, out), daemon=True)
        for session in batch["sessions"]
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.emit({"done": True, "sent": min(pacer.granted, pacer.limit or pacer.granted)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
