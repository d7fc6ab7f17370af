"""Streaming alert files: JSON Lines or JSON documents (one object, an array, concatenated objects), gzipped
or not.

Memory stays flat whatever the file size: JSON Lines are read one bounded line at a time, and JSON documents
are decoded one top-level value at a time from a sliding buffer. So a 10 GB `eve.json` or a 1 GB array export
costs about one record of memory, not one file.

How the layout is chosen: gzip by its magic bytes (not the name); `.jsonl`/`.ndjson` are always JSON Lines, so
a broken first line cannot flip the mode; anything else is sniffed: a leading `[` means an array, a first line
that is complete JSON means JSON Lines (Suricata calls its JSON Lines `eve.json`), else one JSON document.

Error recovery: in JSON Lines a bad line costs that line only. Inside a JSON document a syntax error leaves
nothing to resynchronise on, so the rest of that file is dead-lettered as one entry that says so.

Progress: `on_position` reports the byte offset reached in the file as stored (compressed bytes for .gz), so a
caller can show a percentage of the input's size without knowing the layout or decompressing anything twice.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from controller.ingest.errors import IngestError
from controller.ingest.formats import parse_line, parse_value
from controller.ingest.report import DEAD_LETTER_TEXT_LIMIT, DeadLetter, IngestReport
from controller.models import Alert

MAX_LINE_BYTES = 8 * 1024 * 1024
"""A longer line is dead-lettered unread: no sane alert is that big, and reading it would cost the memory."""
MAX_DOCUMENT_RECORD_CHARS = 16 * 1024 * 1024
"""The same guard for one value inside a JSON document."""
CHUNK_CHARS = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
LINE_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_NOT_SPACE = re.compile(r"\S")
_UNDECODED = object()


@dataclass(frozen=True)
class _Item:
    """One record as read: its text and line, plus the decoded value if the reader has it, or a read error."""

    line: int
    text: str
    value: Any = _UNDECODED
    error: str | None = None


class _Position:
    """Where reading has got to: the last line reached, shared with the error handler so a read failure can say
    where it stopped, and the file as stored, whose offset is what a progress display wants."""

    line = 0
    stored: IO[bytes] | None = None
    reached = 0

    def offset(self) -> int:
        """Bytes of the stored file consumed so far (read-buffer granularity); the last offset seen once a
        reader that owned the file has closed it (a JSON document's text wrapper does, on a read error)."""
        stored = self.stored
        if stored is not None and not stored.closed:
            self.reached = stored.tell()
        return self.reached


def read_alerts(
    path: Path,
    dead_letter: DeadLetter | None = None,
    report: IngestReport | None = None,
    *,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[Alert]:
    """Alerts from one file, lazily, in file order.

    Bad records never stop the stream: each becomes an error naming file, line and problem, written to
    `dead_letter` (when given) and counted on `report` (when given; the first errors are kept there for
    display, and every one is logged). A missing or unreadable file raises OSError at once: that is the
    caller's mistake, not a bad record.

    `on_position`, when given, is called after every record (alert, skipped or dead-lettered: all consume
    input) with the byte offset reached in the file as stored, compressed bytes for .gz. It advances in
    read-buffer steps and ends at or before the file's size; the caller knows a file is done when the
    iterator is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such alert file: {path}")
    with path.open("rb"):
        pass  # fail now on permissions, not at the first next()
    return _read(path, dead_letter, report if report is not None else IngestReport(), on_position)


def _read(
    path: Path, dead_letter: DeadLetter | None, report: IngestReport, on_position: Callable[[int], None] | None
) -> Iterator[Alert]:
    source = str(path)
    position = _Position()
    for item in _items(path, position):
        report.records_read += 1
        if on_position is not None:
            on_position(position.offset())
        origin = f"{source}:{item.line}"
        try:
            if item.error is not None:
                raise IngestError(item.error, origin)
            result = parse_line(item.text, origin) if item.value is _UNDECODED else parse_value(item.value, origin)
        except IngestError as exc:
            report.add_error(str(exc))
            if dead_letter is not None:
                dead_letter.write(source=source, line=item.line, error=exc.problem, text=item.text)
            continue
        report.formats[result.format.value] += 1
        if result.skipped is not None:
            report.skipped[result.skipped] += 1
        report.alerts += len(result.alerts)
        yield from result.alerts


def _items(path: Path, position: _Position) -> Iterator[_Item]:
    with path.open("rb") as stored, _decoded(stored) as stream:
        position.stored = stored
        try:
            if _content_suffix(path) in LINE_SUFFIXES or _first_line_is_json(stream):
                stream.seek(0)
                yield from _line_items(stream, position)
            else:
                stream.seek(0)
                yield from _document_items(stream, position)
        except (OSError, EOFError, zlib.error) as exc:
            problem = f"file unreadable after line {position.line} (corrupt or truncated?): {exc}"
            yield _Item(position.line + 1, "", error=problem)


def _decoded(stored: IO[bytes]) -> IO[bytes]:
    """The content of the stored file: gunzipped on the fly when it starts with gzip's magic bytes.

    The gzip reader reads through `stored` (it does not close it), so the stored offset stays meaningful."""
    magic = stored.read(2)
    stored.seek(0)
    return cast(IO[bytes], gzip.GzipFile(fileobj=stored, mode="rb")) if magic == GZIP_MAGIC else stored


def _content_suffix(path: Path) -> str:
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return Path(name).suffix.lower()


def _first_line_is_json(stream: IO[bytes]) -> bool:
    """Sniff: is the first non-blank line a complete JSON value other than an array opener?"""
    while chunk := stream.readline(MAX_LINE_BYTES):
        text = chunk.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        if not text:
            continue
        if text.startswith("["):
            return False
        try:
            json.loads(text)
        except (ValueError, RecursionError):
            return False
        return True
    return True


def _line_items(stream: IO[bytes], position: _Position) -> Iterator[_Item]:
    line = 0
    while chunk := stream.readline(MAX_LINE_BYTES + 1):
        line += 1
        position.line = line
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            head = chunk[:DEAD_LETTER_TEXT_LIMIT].decode("utf-8", errors="replace")
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield _Item(line, head, error=f"line longer than {MAX_LINE_BYTES} bytes, not read")
            continue
        text = chunk.decode("utf-8", errors="replace")
        if line == 1:
            text = text.lstrip("\ufeff")
        if text.strip():
            yield _Item(line, text.rstrip("\r\n"))


class _Buffer:
    """A sliding window over a text stream that counts the lines it moves past."""

    def __init__(self, reader: io.TextIOBase) -> None:
        self.reader = reader
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def fill(self, at_least: int = 0) -> bool:
        """Drop what was consumed and read more (at least doubling a pending value); False at end of file."""
        if self.eof:
            return False
        chunk = self.reader.read(max(CHUNK_CHARS, at_least))
        self.text, self.pos = self.text[self.pos :] + chunk, 0
        self.eof = not chunk
        return bool(chunk)

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def peek(self) -> str | None:
        """The next non-blank character (consuming the blanks), None at end of file."""
        while True:
            found = _NOT_SPACE.search(self.text, self.pos)
            if found:
                self.advance(found.start())
                return self.text[self.pos]
            self.advance(len(self.text))
            if not self.fill():
                return None


def _document_items(stream: IO[bytes], position: _Position) -> Iterator[_Item]:
    buffer = _Buffer(io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace"))
    decoder = json.JSONDecoder()
    in_array = buffer.peek() == "["
    if in_array:
        buffer.advance(buffer.pos + 1)
    need_comma = False
    while (char := buffer.peek()) is not None:
        position.line = buffer.line
        if in_array and char == "]":
            buffer.advance(buffer.pos + 1)
            if buffer.peek() is not None:
                yield _Item(buffer.line, _head(buffer), error="unexpected content after the top-level array")
            return
        if need_comma:
            if char != ",":
                yield _Item(buffer.line, _head(buffer), error=f"expected ',' or ']' in the array, found {char!r}")
                return
            buffer.advance(buffer.pos + 1)
            need_comma = False
            continue
        item = _decode_one(buffer, decoder)
        yield item
        if item.error is not None:
            return
        need_comma = in_array
    if in_array:
        yield _Item(buffer.line, "", error="file ends inside the top-level array (truncated?)")


def _decode_one(buffer: _Buffer, decoder: json.JSONDecoder) -> _Item:
    start = buffer.line
    while True:
        try:
            value, end = decoder.raw_decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as exc:
            pending = len(buffer.text) - buffer.pos
            if pending <= MAX_DOCUMENT_RECORD_CHARS and buffer.fill(pending):
                continue
            line = start + buffer.text.count("\n", buffer.pos, exc.pos)
            problem = (
                f"invalid JSON: {exc.msg} (line {line}); the rest of this JSON document cannot be delimited"
                " and was not read"
                if pending <= MAX_DOCUMENT_RECORD_CHARS
                else f"JSON value longer than {MAX_DOCUMENT_RECORD_CHARS} characters, rest of file not read"
            )
            return _Item(start, _head(buffer), error=problem)
        except (ValueError, RecursionError) as exc:
            return _Item(start, _head(buffer), error=f"invalid JSON: {str(exc)[:200]}")
        if end == len(buffer.text) and not isinstance(value, dict | list) and buffer.fill():
            continue  # a bare number may continue in the next chunk
        text = buffer.text[buffer.pos : end]
        buffer.advance(end)
        return _Item(start, text, value=value)


def _head(buffer: _Buffer) -> str:
    return buffer.text[buffer.pos : buffer.pos + DEAD_LETTER_TEXT_LIMIT]
