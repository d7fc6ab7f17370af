"""One line of a JSON Lines stream as a record: the framing rules `read_alerts` and `ingest --follow` share.

- A line ends at LF; a CR before it is part of the terminator (CRLF files), nothing else is.
- A UTF-8 byte order mark is skipped at the start of a file only; anywhere else it is content.
- A line of only whitespace is layout, not a record (it is counted as neither alert nor error).
- A line's bytes must be UTF-8; a line that is not is an error for that line alone, kept as bytes.
- A line longer than MAX_LINE_BYTES is not parsed (no sane alert is that big, and holding it would cost the
  memory), but its bytes are copied to a temporary file, so the dead letter still keeps every byte.

`Framed.data` is always the line's exact bytes without its terminator: what the dead-letter file keeps, so an
entry can be replayed byte for byte.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import IO

from autonomy_controller.controller.ingest.decoding import decode_bytes

MAX_LINE_BYTES = 8 * 1024 * 1024
"""A longer line is dead-lettered unparsed (its bytes are kept, spooled to disk)."""
BOM = b"\xef\xbb\xbf"


def overlong_error(limit: int) -> str:
    return f"line longer than the {limit}-byte line limit, not parsed (its bytes are kept)"


@dataclass(frozen=True)
class Framed:
    """One non-blank line: its text when it is UTF-8, else the error; always its original bytes."""

    number: int
    data: bytes | IO[bytes]
    """The line's bytes without the terminator; a temporary file (at offset 0) for an overlong line."""
    text: str | None = None
    error: str | None = None

    def close(self) -> None:
        """Free an overlong line's temporary file (a no-op for a line held in memory)."""
        if not isinstance(self.data, bytes):
            self.data.close()


def frame(number: int, chunk: bytes, *, first: bool) -> Framed | None:
    """A complete line as read (terminator included or not) as a record; None for a blank line."""
    data = _without_terminator(chunk)
    if first and data.startswith(BOM):
        data = data[len(BOM) :]
    if not data.strip():
        return None
    # Undecodable bytes stay in the text (surrogateescape) for decoding.py to show, or to refuse in a key.
    return Framed(number, data, text=decode_bytes(data))


class Overlong:
    """The bytes of one line beyond the limit, spooled to a temporary file as they are read."""

    def __init__(self, number: int, limit: int) -> None:
        self.number = number
        self.limit = limit
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed by Framed.close)

    def add(self, chunk: bytes) -> bool:
        """Append what was read; True when this chunk ends the line."""
        ended = chunk.endswith(b"\n")
        self.file.write(chunk[:-1] if ended else chunk)
        if ended and self.file.tell():  # a CR before the LF is terminator, even if it came in the last chunk
            self.file.seek(-1, 2)
            if self.file.read(1) == b"\r":
                self.file.truncate(self.file.tell() - 1)
            self.file.seek(0, 2)
        return ended

    def framed(self) -> Framed:
        self.file.seek(0)
        return Framed(self.number, self.file, error=overlong_error(self.limit))


def _without_terminator(chunk: bytes) -> bytes:
    if chunk.endswith(b"\r\n"):
        return chunk[:-2]
    return chunk[:-1] if chunk.endswith(b"\n") else chunk
