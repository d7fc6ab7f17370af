"""Streaming alert files: JSON Lines or JSON documents (one object, an array, concatenated objects), gzipped
or not.

Memory stays flat whatever the file size: JSON Lines are read one bounded line at a time, and JSON documents
are decoded one top-level value at a time from a sliding buffer. So a 10 GB `eve.json` or a 1 GB array export
costs about one record of memory, not one file.

How the layout is chosen, so that one broken line can never flip it: gzip by its magic bytes (not the name);
`.jsonl`/`.ndjson` are always JSON Lines; anything else is JSON Lines unless its content starts with `[`,
as soon as ANY of its first SNIFF_LINES non-blank lines is a complete, non-empty JSON object on its own
(Suricata calls its JSON Lines `eve.json`; a truncated first line leaves the others to decide). Otherwise it is
read as a JSON document.

Error recovery: in JSON Lines a bad line costs that line only (lines.py has the framing rules). In a JSON
document, a value that cannot be decoded cannot be delimited either, so from the start of that value the rest
of the file is read line by line, as JSON Lines: the line where it broke is dead-lettered with the document
error, every later line that is a record on its own is still read (one trailing comma, as array elements
carry, or the array's closing bracket after the last one, is allowed there, and a line of only `[`, `]` or `,`
is layout), and every other line is dead-lettered
with its bytes. Nothing after a break is skipped unaccounted.

Every dead-letter entry keeps the record's exact bytes (report.py), so it can be fixed and replayed.

Progress: `on_position` reports the byte offset reached in the file as stored (compressed bytes for .gz), so a
caller can show a percentage of the input's size without knowing the layout or decompressing anything twice.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from autonomy_controller.controller.ingest import lines
from autonomy_controller.controller.ingest.decoding import Decoded, raw_decode, settle
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.formats import parse_line, parse_value
from autonomy_controller.controller.ingest.native import TRUST_NOTHING, TrustedSources
from autonomy_controller.controller.ingest.normalise import clean_text
from autonomy_controller.controller.ingest.report import DeadLetter, IngestReport
from autonomy_controller.controller.models import Alert

MAX_DOCUMENT_RECORD_CHARS = 16 * 1024 * 1024
"""The line limit's counterpart for one value inside a JSON document."""
SNIFF_LINES = 64
"""Non-blank lines looked at to choose the layout; any one complete JSON object among them means JSON Lines."""
CHUNK_CHARS = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
LINE_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_NOT_SPACE = re.compile(r"\S")
_UNDECODED = object()
_LAYOUT_ONLY = frozenset({"[", "]", ",", ""})
"""What a line of a broken JSON array may hold besides records once it is read line by line."""


@dataclass(frozen=True)
class _Item:
    """One record as read: its text, its original bytes (None: the text's own UTF-8), the decoded value if the
    reader has it, or a read error."""

    line: int
    text: str
    value: Any = _UNDECODED
    error: str | None = None
    data: bytes | IO[bytes] | None = None

    def original(self) -> bytes | IO[bytes]:
        # Document text was decoded with surrogateescape, so encoding it back gives the exact bytes read.
        return self.data if self.data is not None else self.text.encode("utf-8", "surrogateescape")

    def close(self) -> None:
        if self.data is not None and not isinstance(self.data, bytes):
            self.data.close()


class _Position:
    """Where reading has got to: the last line reached, shared with the error handler so a read failure can say
    where it stopped, and the file as stored, whose offset is what a progress display wants."""

    line = 0
    stored: IO[bytes] | None = None
    reached = 0

    def offset(self) -> int:
        """Bytes of the stored file consumed so far (read-buffer granularity); the last offset seen once a
        reader that owned the file has closed it."""
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
    trusted: TrustedSources = TRUST_NOTHING,
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

    `trusted`: the sources this file's native records may speak for (formats.parse_value); none by default.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such alert file: {path}")
    with path.open("rb"):
        pass  # fail now on permissions, not at the first next()
    return _read(path, dead_letter, report if report is not None else IngestReport(), on_position, trusted)


def _read(
    path: Path,
    dead_letter: DeadLetter | None,
    report: IngestReport,
    on_position: Callable[[int], None] | None,
    trusted: TrustedSources,
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
            result = (
                parse_line(item.text, origin, trusted)
                if item.value is _UNDECODED
                else parse_value(item.value, origin, trusted)
            )
        except IngestError as exc:
            report.add_error(str(exc))
            if dead_letter is not None:
                dead_letter.write(source=source, line=item.line, error=exc.problem, data=item.original())
            continue
        finally:
            item.close()
        report.count(result)
        yield from result.alerts


def _items(path: Path, position: _Position) -> Iterator[_Item]:
    with path.open("rb") as stored, _decoded(stored) as stream:
        position.stored = stored
        try:
            as_lines = _content_suffix(path) in LINE_SUFFIXES or _looks_like_lines(stream)
            stream.seek(0)
            yield from _line_items(stream, position) if as_lines else _document_items(stream, position)
        except (OSError, EOFError, zlib.error) as exc:
            problem = f"file unreadable after line {position.line} (corrupt or truncated?): {exc}"
            yield _Item(position.line + 1, "", error=problem, data=b"")


def _decoded(stored: IO[bytes]) -> IO[bytes]:
    """The content of the stored file: gunzipped on the fly when it starts with gzip's magic bytes.

    The gzip reader reads through `stored` (it does not close it), so the stored offset stays meaningful."""
    magic = stored.read(2)
    stored.seek(0)
    return cast(IO[bytes], gzip.GzipFile(fileobj=stored, mode="rb")) if magic == GZIP_MAGIC else stored


def _content_suffix(path: Path) -> str:
    name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
    return Path(name).suffix.lower()


def _looks_like_lines(stream: IO[bytes]) -> bool:
    """Sniff: no leading `[`, and one of the first SNIFF_LINES non-blank lines is a JSON object on its own."""
    seen = 0
    while seen < SNIFF_LINES and (chunk := stream.readline(lines.MAX_LINE_BYTES + 1)):
        text = chunk.decode("utf-8", "surrogateescape").strip()
        if seen == 0:
            text = text.lstrip("\ufeff").strip()
        if not text:
            continue
        if seen == 0 and text.startswith("["):
            return False
        seen += 1
        if _is_object_line(text):
            return True
    return False


def _is_object_line(text: str) -> bool:
    if not (text.startswith("{") and text.endswith("}")):
        return False
    try:
        value, end, _ = raw_decode(text)
    except (ValueError, RecursionError):
        return False
    return end == len(text) and isinstance(value, dict) and bool(value)


def _line_items(
    stream: IO[bytes] | _Prefixed, position: _Position, *, first_line: int = 1, in_array: bool = False
) -> Iterator[_Item]:
    """JSON Lines from `stream`; `first_line` and `in_array` when recovering the rest of a broken document."""
    line = first_line - 1
    limit = lines.MAX_LINE_BYTES
    while chunk := stream.readline(limit + 1):
        line += 1
        position.line = line
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            overlong = lines.Overlong(line, limit)
            ended = overlong.add(chunk)
            while not ended and (chunk := stream.readline(limit)):
                ended = overlong.add(chunk)
            spooled = overlong.framed()
            yield _Item(line, "", error=spooled.error, data=spooled.data)
            continue
        framed = lines.frame(line, chunk, first=line == 1)
        if framed is None:
            continue
        if framed.text is None:
            yield _Item(line, "", error=framed.error, data=framed.data)
        elif in_array:
            text = _array_element(framed.text)
            if text.strip() not in _LAYOUT_ONLY:
                yield _Item(line, text, data=framed.data)
        else:
            yield _Item(line, framed.text, data=framed.data)


def _array_element(line: str) -> str:
    """A line of a broken JSON array as the record it holds: without the comma an element carries, or without the
    array's closing bracket on the last element's line (`{...}]`, as exports write it): an object ends in `}`."""
    text = line.strip()
    if text.endswith(","):
        return text[:-1]
    if text.endswith("]") and text[:-1].rstrip().endswith("}"):
        return text[:-1].rstrip()
    return text


class _Prefixed:
    """What is left of a document after a break: the bytes already read but not consumed, then the stream."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self.prefix = io.BytesIO(prefix)
        self.rest = rest

    def readline(self, limit: int) -> bytes:
        chunk = self.prefix.readline(limit)
        if chunk.endswith(b"\n") or len(chunk) >= limit:
            return chunk
        return chunk + self.rest.readline(limit - len(chunk))


class _Buffer:
    """A sliding window over a byte stream, decoded as UTF-8 with surrogateescape (so every byte can be given
    back exactly), that counts the lines it moves past."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def fill(self, at_least: int = 0) -> bool:
        """Drop what was consumed and read more (at least doubling a pending value); False at end of file."""
        while not self.eof:
            raw = self.stream.read(max(CHUNK_CHARS, at_least))
            self.eof = not raw
            chunk = self.decoder.decode(raw, final=self.eof)
            if chunk:
                self.text, self.pos = self.text[self.pos :] + chunk, 0
                return True
        return False

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

    def unconsumed(self) -> _Prefixed:
        """The rest of the input from the current position, as bytes: for reading it line by line."""
        pending, _ = self.decoder.getstate()
        return _Prefixed(self.text[self.pos :].encode("utf-8", "surrogateescape") + pending, self.stream)


def _document_items(stream: IO[bytes], position: _Position) -> Iterator[_Item]:
    buffer = _Buffer(stream)
    if buffer.peek() == "\ufeff":
        buffer.advance(buffer.pos + 1)
    in_array = buffer.peek() == "["
    if in_array:
        buffer.advance(buffer.pos + 1)
    need_comma = False
    while (char := buffer.peek()) is not None:
        position.line = buffer.line
        if in_array and char == "]":
            buffer.advance(buffer.pos + 1)
            in_array = need_comma = False  # concatenated values may follow
            continue
        if need_comma:
            if char == ",":
                buffer.advance(buffer.pos + 1)
                need_comma = False
                continue
            problem = f"expected ',' or ']' in the JSON array, found {char!r}"
            yield from _recover(buffer, position, problem, in_array)
            return
        decoded = _decode_one(buffer)
        if isinstance(decoded, str):
            yield from _recover(buffer, position, decoded, in_array)
            return
        yield _decoded_item(buffer, *decoded)
        need_comma = in_array
    if in_array:
        yield _Item(buffer.line, "", error="file ends inside the top-level JSON array (truncated?)", data=b"")


def _decode_one(buffer: _Buffer) -> tuple[Any, int, Decoded] | str:
    """The value at the buffer's position (value, end, what decoding met), or the problem when it cannot be
    delimited."""
    while True:
        try:
            value, end, seen = raw_decode(buffer.text, buffer.pos)
        except json.JSONDecodeError as exc:
            pending = len(buffer.text) - buffer.pos
            if pending > MAX_DOCUMENT_RECORD_CHARS:
                return f"JSON value longer than the {MAX_DOCUMENT_RECORD_CHARS}-character record limit"
            if buffer.fill(pending):
                continue
            line = buffer.line + buffer.text.count("\n", buffer.pos, exc.pos)
            return f"invalid JSON: {exc.msg} (line {line})"
        except (ValueError, RecursionError) as exc:
            return f"invalid JSON: {clean_text(exc, 200)}"
        if end == len(buffer.text) and not isinstance(value, dict | list) and buffer.fill():
            continue  # a bare number may continue in the next chunk
        return value, end, seen


def _decoded_item(buffer: _Buffer, value: Any, end: int, seen: Decoded) -> _Item:
    """The decoded value as a record (undecodable bytes shown, repairs named: decoding.py), or an error for it
    alone: it was delimited, so the rest reads on."""
    start, text = buffer.line, buffer.text[buffer.pos : end]
    buffer.advance(end)
    try:
        return _Item(start, text, value=settle(value, seen))
    except IngestError as exc:
        return _Item(start, text, error=exc.problem)


def _recover(buffer: _Buffer, position: _Position, problem: str, in_array: bool) -> Iterator[_Item]:
    """From the broken value on, read the rest line by line. Its first line carries the document's problem,
    unless that line is a record on its own (a missing comma between two good values costs nothing)."""
    start = buffer.line
    items = _line_items(buffer.unconsumed(), position, first_line=start, in_array=in_array)
    for item in items:
        if item.line == start and item.error is None and not _is_object_line(item.text):
            problem = f"{problem}; the rest of the file is read line by line"
            item = _Item(start, item.text, error=problem, data=item.data)
        yield item
