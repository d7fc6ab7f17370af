"""Bytes to text to JSON for one record, strictly: the only place ingest decodes untrusted input.

Nothing is repaired on the way: invalid UTF-8 is an error for that record (a replacement character could
silently rename a key, and the field it named would vanish), a key that appears twice in one object is an
error (which value a sensor meant is unknowable, and JSON parsers disagree on which one wins), and a lone
surrogate escape is an error (it cannot be written back out as UTF-8, so it would fail later, far away).
"""

from __future__ import annotations

import json
import re
from typing import Any

from controller.ingest.errors import IngestError
from controller.ingest.normalise import clean_text

KEY_SHOWN_CHARS = 80
"""Characters of a duplicate key quoted in its error (the key is attacker-controlled)."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")


def raw_decode(text: str, pos: int = 0) -> tuple[Any, int, str | None]:
    """The JSON value starting at `pos`, where it ends, and the first key found twice in one of its objects.

    A duplicate is reported, not raised, so a caller reading a document still learns where the value ends and
    can dead-letter exactly that value. JSONDecodeError, ValueError and RecursionError propagate."""
    duplicates: list[str] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        record = dict(pairs)
        if len(record) != len(pairs) and not duplicates:
            duplicates.append(_first_duplicate(pairs))
        return record

    value, end = json.JSONDecoder(object_pairs_hook=unique).raw_decode(text, pos)
    return value, end, duplicates[0] if duplicates else None


def _first_duplicate(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no duplicate key")  # pragma: no cover: called only when dict(pairs) lost a pair


def duplicate_key(key: str) -> str:
    return f"duplicate key {clean_text(key, KEY_SHOWN_CHARS)!r} in a JSON object (which value is meant is unknowable)"


def invalid_utf8(data: bytes, offset: int) -> str:
    return f"invalid UTF-8 at byte {offset} (0x{data[offset]:02x}); the record is kept as bytes, not repaired"


def raw_surrogate_offset(text: str) -> int | None:
    """Where text decoded with `surrogateescape` holds an undecodable byte (a document's record), else None."""
    found = _RAW_SURROGATE.search(text)
    return found.start() if found else None


def decode_json(text: str, origin: str | None = None) -> Any:
    """One complete JSON value, strictly; IngestError (located at `origin`) saying what is wrong."""
    try:
        value, end, duplicate = raw_decode(text, _leading_space(text))
        if text[end:].strip(" \t\r\n"):
            raise IngestError(f"invalid JSON: extra data after the value (column {end + 1})")
        if duplicate is not None:
            raise IngestError(duplicate_key(duplicate))
    except IngestError as exc:
        raise (exc.at(origin) if origin else exc) from None
    except json.JSONDecodeError as exc:
        raise IngestError(f"invalid JSON: {exc.msg} (column {exc.colno})", origin) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer beyond the digit limit, absurd nesting
        raise IngestError(f"invalid JSON: {clean_text(exc, 200)}", origin) from None
    check_surrogates(text, value, origin)
    return value


def check_surrogates(text: str, value: Any, origin: str | None = None) -> None:
    """A `\\udXXX` escape must be half of a pair; a lone one cannot be encoded as UTF-8 downstream."""
    if not _SURROGATE_ESCAPE.search(text):
        return  # the common case costs one regex scan
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise IngestError("invalid JSON string: a lone surrogate escape (\\ud800-\\udfff)", origin) from None


def _leading_space(text: str) -> int:
    return len(text) - len(text.lstrip(" \t\r\n"))
