"""The embedded engine's child process: a RegoSession behind two pipes, so that a query can be stopped.

Why a process: regopy 1.5.2 cannot interrupt a query (no cancel, no instruction limit in its Python API) and a
thread cannot be killed, so a policy that loops held a worker forever. A process can be killed. It is started
once per engine and reused: an evaluation costs a round trip over the pipes, not a process start.

The wire, both ways: frames of a 4-byte big-endian length, one byte of kind, then the payload. The parent sends
LOAD (a CompiledPolicy as JSON) once, then EVALUATE (the input as JSON) one at a time; the child answers READY
or ERROR to the load, RESULT (the value as JSON), UNDEFINED or ERROR (the message) to each input. regopy prints
on the child's stdout, so the frames travel on pipes of their own.

Run as `python -m autonomy_controller.controller.decision.engines.regopy_process READ_FD WRITE_FD` (by
RegoProcess, never by hand).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, BinaryIO

from autonomy_controller.controller.decision.engines.base import PolicyEngineError, PolicyUndefinedError

if TYPE_CHECKING:
    from autonomy_controller.controller.decision.engines.regopy_session import CompiledPolicy

LOAD, EVALUATE = b"L", b"E"
READY, RESULT, UNDEFINED, ERROR = b"R", b"V", b"U", b"X"
_HEADER = struct.Struct(">IB")
_ORPHAN_CHECK_S = 0.5  # how often the child looks whether its parent is gone
_MEMORY_CHECK_S = 0.05  # how often the parent reads the child's size while it evaluates
_PAGE = os.sysconf("SC_PAGE_SIZE")


class ProcessEnded(PolicyEngineError):
    """The child process is gone (crashed, killed, or closed its pipe)."""


class DeadlineExceeded(PolicyEngineError):
    """The child did not answer in time."""


class MemoryExceeded(PolicyEngineError):
    """The child grew past its memory limit while evaluating (killed)."""


def frame(kind: bytes, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), kind[0]) + payload


# --- the child ------------------------------------------------------------------------------------------------------
def _read_frame(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None at the end of the pipe (the parent closed it or is gone)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    length, kind = _HEADER.unpack(header)
    payload = stream.read(length)
    return (bytes([kind]), payload) if len(payload) == length else None


def _exit_when_orphaned(parent: int) -> None:
    """A child whose parent died (even by SIGKILL, mid-query) must not run on: its query may never end."""
    while True:
        time.sleep(_ORPHAN_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def serve(read_fd: int, write_fd: int) -> None:
    """Load the policy from the first frame, then answer each input until the pipe ends."""
    from autonomy_controller.controller.decision.engines.regopy_session import CompiledPolicy, RegoSession

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides our end
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    with os.fdopen(read_fd, "rb") as requests, os.fdopen(write_fd, "wb") as replies:

        def reply(kind: bytes, payload: bytes) -> None:
            replies.write(frame(kind, payload))
            replies.flush()

        first = _read_frame(requests)
        if first is None or first[0] != LOAD:
            return
        try:
            session = RegoSession(CompiledPolicy.from_json(first[1]))
        except PolicyEngineError as exc:
            return reply(ERROR, str(exc).encode())
        reply(READY, b"")
        while (request := _read_frame(requests)) is not None:
            try:
                value = session.evaluate(json.loads(request[1]), request[1])
            except PolicyUndefinedError as exc:
                reply(UNDEFINED, str(exc).encode())
            except PolicyEngineError as exc:
                reply(ERROR, str(exc).encode())
            except (ValueError, RecursionError) as exc:  # JSON this side cannot read back (too deep)
                reply(ERROR, f"embedded engine error: {exc}".encode())
            else:
                reply(RESULT, json.dumps(value, separators=(",", ":")).encode())


# --- the parent -----------------------------------------------------------------------------------------------------
class RegoProcess:
    """One child process serving one compiled policy. Not thread-safe: the engine holds its lock around each
    call. Every failure is a PolicyEngineError; after a ProcessEnded or a DeadlineExceeded the process is dead
    (killed if it was not) and the caller starts another."""

    def __init__(self, policy: CompiledPolicy) -> None:
        """Start the child and send it the policy (from a thread: the policy may be larger than a pipe holds,
        and the child reads it only once Python has started). Returns at once; wait_ready() waits for the load.
        The child is killed when this object is dropped, or at exit, if kill() was not called."""
        child_reads, parent_writes = os.pipe()
        parent_reads, child_writes = os.pipe()
        command = [sys.executable, "-P", "-m", __name__, str(child_reads), str(child_writes)]
        try:
            self._process = subprocess.Popen(
                command, pass_fds=(child_reads, child_writes), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        except OSError as exc:
            os.close(parent_writes)
            os.close(parent_reads)
            raise PolicyEngineError(f"embedded engine: could not start its regopy process: {exc}") from exc
        finally:  # the child's ends are the child's alone: with them open here, its death would show no EOF
            os.close(child_reads)
            os.close(child_writes)
        self._requests, self._replies = parent_writes, parent_reads
        self.ready = False
        self._loaded_size: int | None = None  # read at the first evaluation: the policy and data loaded
        self._buffer = bytearray()
        self._poll = select.poll()  # not select.select: a busy worker's descriptors pass FD_SETSIZE
        self._poll.register(parent_reads, select.POLLIN)
        loader = threading.Thread(target=_send_policy, args=(parent_writes, policy), daemon=True)
        self.kill = weakref.finalize(self, _stop, self._process, loader, parent_writes, parent_reads)
        self._loader = loader
        loader.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self, seconds: float) -> None:
        """Return once the policy is loaded; PolicyEngineError with the load's own message if it failed."""
        if self.ready:
            return
        kind, payload = self._receive(time.monotonic() + seconds)
        self._loader.join()
        if kind != READY:
            self.kill()
            raise PolicyEngineError(payload.decode(errors="replace"))
        self.ready = True

    def evaluate(self, text: bytes, seconds: float, headroom_bytes: int | None = None) -> Any:
        """The value of the policy for this input (JSON text), within `seconds` of sending it and, given
        `headroom_bytes`, without the child growing that much past its size once loaded (MemoryExceeded)."""
        if not self.kill.alive:  # killed: its pipes are closed, their numbers may be another file's by now
            raise ProcessEnded("its regopy process was stopped")
        if headroom_bytes is not None and self._loaded_size is None:
            self._loaded_size = self.resident_bytes()
        limit = None if headroom_bytes is None or self._loaded_size is None else self._loaded_size + headroom_bytes
        try:
            _write_all(self._requests, frame(EVALUATE, text))
        except OSError:  # EPIPE: the child is gone
            raise self._ended() from None
        kind, payload = self._receive(time.monotonic() + seconds, limit)
        if kind == RESULT:
            return json.loads(payload)
        message = payload.decode(errors="replace")
        raise PolicyUndefinedError(message) if kind == UNDEFINED else PolicyEngineError(message)

    def resident_bytes(self) -> int | None:
        """The child's resident size (Linux /proc); None where it cannot be read."""
        try:
            with open(f"/proc/{self._process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            return None

    def _receive(self, deadline: float, memory_limit: int | None = None) -> tuple[bytes, bytes]:
        """The next frame from the child by `deadline`; past it, past `memory_limit` bytes resident, or at the
        pipe's end, the child is killed."""
        while True:
            if len(self._buffer) >= _HEADER.size:
                length, kind = _HEADER.unpack_from(self._buffer)
                if len(self._buffer) >= _HEADER.size + length:
                    payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
                    del self._buffer[: _HEADER.size + length]
                    return bytes([kind]), payload
            left = deadline - time.monotonic()
            wait = left if memory_limit is None else min(left, _MEMORY_CHECK_S)
            if left <= 0 or not self._poll.poll(wait * 1000):
                if left > wait:  # a slice of the wait ended: the child is still at work; how big is it?
                    size = self.resident_bytes()
                    if size is not None and memory_limit is not None and size > memory_limit:
                        self.kill()
                        raise MemoryExceeded(f"grew to {size >> 20} MB resident")
                    continue
                self.kill()
                raise DeadlineExceeded("no answer in time")
            try:
                chunk = os.read(self._replies, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                raise self._ended()
            self._buffer += chunk

    def _ended(self) -> ProcessEnded:
        self.kill()
        code = self._process.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return ProcessEnded(f"its regopy process ended ({how})")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send_policy(requests: int, policy: CompiledPolicy) -> None:
    """The loader thread: a child that died before reading it all shows up as ProcessEnded in wait_ready."""
    with contextlib.suppress(OSError):  # EPIPE: the child was killed (_stop waits for us before it closes the pipe)
        _write_all(requests, frame(LOAD, policy.to_json()))


def _stop(process: subprocess.Popen[bytes], loader: threading.Thread, requests: int, replies: int) -> None:
    """Kill the child (a runaway query does not stop for less) and close our ends of its pipes. RegoProcess.kill:
    runs once, whether called, on the object's end, or at exit."""
    if process.poll() is None:
        process.kill()
    process.wait()
    if loader.is_alive() and loader is not threading.current_thread():
        loader.join()  # it ends on EPIPE now: closing the pipe under it could let it write into a reused number
    os.close(requests)
    os.close(replies)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
