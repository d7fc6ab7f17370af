"""`autonomy ingest --follow`: tail a growing alert log like `tail -F` and submit what appears.

Three promises, and how they are kept:
- **No line lost across rotation.** A rename-and-recreate rotation is seen as the path naming another inode:
  the old file is read to its end first, then the new one from its start. A truncation (copytruncate) is seen
  as the file shrinking below our offset, or, when the sensor wrote past our offset again before the next poll,
  as other bytes where the file began: reading restarts at 0.
- **A restart resumes where the last run stopped.** After every flush (alerts in the ledger and signalled to
  their workflows) the position is written to a small offset file in the state folder: path, device, inode,
  byte offset, line number and a hash of the file's first bytes. On restart the same file resumes at that
  offset; if the path now names a new file, the old one is looked for beside it by inode (`alerts.jsonl.1`)
  and its unread tail is read first. The head hash catches an inode number reused by a new file.
- **Nothing counted twice.** The offset only moves past lines that were submitted, so a crash re-reads at most
  the last unflushed lines, and those are dropped again by the ledger (idempotency key per alert id) and the
  workflow (dedup by alert id).

Only complete lines are read: a last line without its newline is still being written and waits for the next
poll (or the next `--once` run). Each line is framed by `controller.ingest.lines` (terminators, BOM, blank
lines, strict UTF-8, the line limit) and parsed by `controller.ingest.parse_line`: the same rules `read_alerts`
applies to JSON Lines. A bad line is dead-lettered with file, line and its exact bytes, like `evaluate`; an
overlong one is spooled to disk as it grows (across polls), and the saved offset stays at its start until it
ends, so a restart reads it again whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

from autonomy_controller.controller.ingest import (
    TRUST_NOTHING,
    DeadLetter,
    IngestError,
    IngestReport,
    TrustedSources,
    lines,
    parse_line,
)
from autonomy_controller.workflows.client import Submitter

HEAD_BYTES = 4096
"""Bytes of the file's start hashed into the offset file, to tell a reused inode number from the same file."""
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Position:
    """Where reading stopped in one file: what the offset file stores."""

    path: str
    device: int
    inode: int
    offset: int
    line: int
    head: str
    """sha256 of the first min(offset, HEAD_BYTES) bytes."""


def _head(handle: IO[bytes], upto: int) -> bytes:
    """The file's first min(upto, HEAD_BYTES) bytes, read without moving the handle."""
    return os.pread(handle.fileno(), min(upto, HEAD_BYTES), 0)


def _head_hash(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


class OffsetStore:
    """`<state_dir>/follow/<hash of the path>.json`, replaced atomically so a crash never leaves half a file."""

    def __init__(self, state_dir: Path, followed: Path) -> None:
        name = hashlib.sha256(str(followed.resolve()).encode()).hexdigest()[:16]
        self.path = state_dir / "follow" / f"{name}.json"

    def load(self) -> Position | None:
        try:
            return Position(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None  # a damaged offset file: start over; the dedup by alert id absorbs the re-read

    def save(self, position: Position) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(position)))
        os.replace(scratch, self.path)


@dataclass(frozen=True)
class Line:
    source: str
    number: int
    text: str
    error: str | None = None
    data: bytes | IO[bytes] = b""
    """The line's exact bytes (lines.Framed.data): what a dead letter keeps."""

    def close(self) -> None:
        if not isinstance(self.data, bytes):
            self.data.close()


class LineSource:
    """Complete lines of one path across rotations and truncations, and the position after the last one."""

    def __init__(self, path: Path, saved: Position | None) -> None:
        self.path = path
        self.notes: list[str] = []
        self.handle: IO[bytes] | None = None
        self.reading: Path = path
        self.line = 0
        self.overlong: lines.Overlong | None = None
        """Inside an overlong line: its bytes so far, spooled until its newline."""
        self.overlong_start = 0
        self.pending: list[Line] = []
        """Lines finished outside `read` (an overlong line cut short by a rotation), returned by the next read."""
        self.head = b""
        """The current file's first bytes as read (up to HEAD_BYTES): other bytes there before a read means it was
        truncated and written past our offset again between two polls (copytruncate), which its size cannot show."""
        self._resume(saved)

    # -- opening -----------------------------------------------------------------------------------------

    def _open(self, path: Path, offset: int = 0, line: int = 0) -> bool:
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            return False
        handle.seek(offset)
        self._end_overlong("the file was rotated or truncated inside this overlong line")
        self.close()
        self.handle, self.reading, self.line = handle, path, line
        self.head = _head(handle, offset)  # resumed: the hash checked it is ours
        return True

    def _same_file(self, path: Path, saved: Position) -> bool:
        try:
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) != (saved.device, saved.inode) or stat.st_size < saved.offset:
                return False
            with path.open("rb") as handle:
                return _head_hash(_head(handle, saved.offset)) == saved.head
        except OSError:
            return False

    def _resume(self, saved: Position | None) -> None:
        if saved is None:
            self._open(self.path)
            return
        if self._same_file(self.path, saved):
            self._open(self.path, saved.offset, saved.line)
            return
        candidates = [Path(saved.path), *sorted(self.path.parent.glob(glob_escape(self.path.name) + "?*"))]
        rotated = next((p for p in candidates if p != self.path and self._same_file(p, saved)), None)
        if rotated is not None:
            self.notes.append(f"{self.path} was rotated while not followed: reading the rest of {rotated} first")
            self._open(rotated, saved.offset, saved.line)
            return
        if saved.offset:
            self.notes.append(
                f"{self.path} is not the file last followed (replaced or truncated) and the old one is not beside"
                f" it: lines after byte {saved.offset} of the old file could not be read; reading from the start"
            )
        self._open(self.path)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        if self.overlong is not None:  # stopped inside an overlong line: the saved offset is at its start
            self.overlong.file.close()
            self.overlong = None

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, limit: int) -> list[Line]:
        """Up to `limit` complete lines from where reading stopped (fewer at the end of what is written)."""
        out, self.pending = self.pending, []
        if self.handle is None and not self._open(self.path):
            return out
        assert self.handle is not None
        if self.head and _head(self.handle, len(self.head)) != self.head:
            self.notes.append(f"{self.path} was truncated and written again: reading it from its start")
            self._open(self.path)
            assert self.handle is not None
        most = lines.MAX_LINE_BYTES
        while len(out) < limit:
            start = self.handle.tell()
            if self.overlong is not None:
                chunk = self.handle.readline(most)
                if not chunk:
                    break
                if self.overlong.add(chunk):
                    out.append(self._line(self.overlong.framed()))
                    self.overlong = None
                continue
            chunk = self.handle.readline(most + 1)
            if not chunk:
                break
            if not chunk.endswith(b"\n"):
                if len(chunk) <= most:
                    self.handle.seek(start)  # still being written: wait for its newline
                    break
                self.line += 1
                self.overlong, self.overlong_start = lines.Overlong(self.line, most), start
                self.overlong.add(chunk)
                continue
            self.line += 1
            framed = lines.frame(self.line, chunk, first=start == 0)
            if framed is not None:
                out.append(self._line(framed))
        if len(self.head) < HEAD_BYTES and self.handle.tell() > len(self.head):
            self.head = _head(self.handle, self.handle.tell())
        return out

    def _line(self, framed: lines.Framed) -> Line:
        return Line(str(self.reading), framed.number, framed.text or "", framed.error, framed.data)

    def _end_overlong(self, why: str) -> None:
        """An overlong line whose file ends before its newline is still a dead letter, with the bytes read."""
        if self.overlong is not None:
            framed = self.overlong.framed()
            self.pending.append(self._line(replace(framed, error=f"{framed.error}; {why}")))
            self.overlong = None

    def rotate_if_needed(self) -> bool:
        """At the end of the current file: switch to a new file at the path, or restart a truncated one.

        Returns True when it switched (there may be more to read at once). Call only after `read` reached
        the end, so the old file's last lines are read before leaving it.
        """
        if self.handle is None:
            return self._open(self.path)
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return False  # between the rename and the new file's creation: keep the old one for now
        current = os.fstat(self.handle.fileno())
        if (stat.st_dev, stat.st_ino) != (current.st_dev, current.st_ino):
            if self.overlong is not None:
                self.notes.append(f"{self.reading} ended inside an overlong line")
            self.notes.append(f"{self.path} was rotated: now reading the new file from its start")
            return self._open(self.path)
        if stat.st_size < self.handle.tell():
            self.notes.append(f"{self.path} was truncated: reading again from its start")
            return self._open(self.path)
        return False

    def position(self) -> Position | None:
        if self.handle is None:
            return None
        stat = os.fstat(self.handle.fileno())
        offset, line = self.handle.tell(), self.line
        if self.overlong is not None:  # not past a line that is not finished: a restart reads it again whole
            offset, line = self.overlong_start, self.overlong.number - 1
        # The bytes kept as read (`head` covers every offset up to HEAD_BYTES the handle has been at)
        return Position(str(self.reading), stat.st_dev, stat.st_ino, offset, line, _head_hash(self.head[:offset]))


@dataclass
class Flush:
    """What one flush submitted: the per-flush line of `ingest --follow` output."""

    lines: int
    alerts: int
    dead_lettered: int
    incidents: dict[str, int]
    """Records per ledger key: cases, and `_access:<address>` for access-log lines (observations, no case)."""
    position: Position | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": "flush",
            "lines": self.lines,
            "alerts": self.alerts,
            "dead_lettered": self.dead_lettered,
            "incidents": self.incidents,
            "position": asdict(self.position) if self.position else None,
            "notes": self.notes,
        }


@dataclass
class Follower:
    """Reads lines from a LineSource, parses and submits them, and commits the offset after each flush."""

    source: LineSource
    store: OffsetStore
    submitter: Submitter
    dead_letter: DeadLetter
    report: IngestReport
    batch_lines: int = 500
    interval: float = 1.0
    on_flush: Callable[[Flush], None] = lambda _flush: None
    trusted: TrustedSources = TRUST_NOTHING
    """The sources this file's native records may speak for (`ingest --follow --trust-native`)."""
    _lines: int = 0
    _alerts: int = 0
    _dead: int = 0
    _incidents_before: dict[str, int] = field(default_factory=dict)
    _saved: Position | None = None

    async def _ingest(self, line: Line) -> None:
        self.report.records_read += 1
        self._lines += 1
        origin = f"{line.source}:{line.number}"
        try:
            if line.error is not None:
                raise IngestError(line.error, origin)
            result = parse_line(line.text, origin, self.trusted)
        except IngestError as exc:
            self.report.add_error(str(exc))
            self.dead_letter.write(source=line.source, line=line.number, error=exc.problem, data=line.data)
            self._dead += 1
            return
        finally:
            line.close()
        self.report.count(result)
        self._alerts += len(result.alerts)
        for alert in result.alerts:
            await self.submitter.add(alert)

    async def flush(self) -> None:
        """Submit what is buffered, then (and only then) move the saved offset past it."""
        await self.submitter.flush()
        position = self.source.position()
        if position is not None and position != self._saved:
            self.store.save(position)
            self._saved = position
        notes, self.source.notes = self.source.notes, []
        if not self._lines and not notes:
            return
        now = {**self.submitter.report.incidents, **self.submitter.report.observed}  # observed: _access:<address>
        delta = {k: n - self._incidents_before.get(k, 0) for k, n in now.items() if n != self._incidents_before.get(k)}
        self._incidents_before = now
        self.on_flush(Flush(self._lines, self._alerts, self._dead, delta, position, notes))
        self._lines = self._alerts = self._dead = 0

    async def run(self, *, once: bool, stop: asyncio.Event) -> None:
        """Until `stop` (or, with `once`, until the end of what is written now), flushing every
        `batch_lines` lines or `interval` seconds, whichever comes first."""
        last_flush = time.monotonic()
        while not stop.is_set():
            wanted = self.batch_lines - self._lines
            lines = self.source.read(wanted)
            for line in lines:
                await self._ingest(line)
            if self._lines >= self.batch_lines or time.monotonic() - last_flush >= self.interval:
                await self.flush()
                last_flush = time.monotonic()
            if len(lines) < wanted:  # at the end of what is written so far
                if self.source.rotate_if_needed():
                    continue
                if once:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        await self.flush()
        self.source.close()
