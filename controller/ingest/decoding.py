"""Bytes to text to JSON for one record: the only place ingest decodes untrusted input.

Sensor records carry the attacker's bytes: ModSecurity logs a matched value URL-decoded (`%FF` becomes a raw
0xFF byte) and an attacker's duplicate request headers as duplicate JSON keys. Refusing such a record would
let one stray byte hide an attack, and repairing it silently would hide the repair. So:

- an undecodable byte or a lone surrogate in a *value* is shown as text (`\\xff`, `\\ud800`), never dropped or
  replaced by U+FFFD; a key found twice keeps all its values, as a list in arrival order;
- every such repair is named in the record itself, under `_ingest_repairs` (so it reaches raw, the ledger and
  the reports), and the record's original bytes stay what the dead-letter file or the sensor's log holds;
- an undecodable byte or a lone surrogate in a *key* is an error for that record (which field it named is
  unknowable), as is invalid JSON;
- so is a number JSON cannot hold (NaN, Infinity, or 1e999, which Python reads as infinity): no sensor writes one
  for an attacker, and the ledger (plain JSON) would refuse it, and with it the whole batch it came in; and so is
  nesting deeper than MAX_DEPTH.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.normalise import clean_text

REPAIRS_KEY = "_ingest_repairs"
"""Where a record lists what decoding had to show or keep differently (a key no sensor format uses)."""
KEY_SHOWN_CHARS = 80
"""Characters of a key quoted in a message (the key is attacker-controlled)."""
MAX_DEPTH = 100
"""Objects and lists nested deeper than this are refused: no sensor writes them, and each level costs a frame of
every recursive walk after decoding (Python's decoder alone takes ~990)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTE = 0xDC00
"""surrogateescape maps an undecodable byte 0x80-0xff to U+DC80-U+DCFF."""


class Decoded:
    """What one decode met on the way: keys found twice, and a key that is not text."""

    def __init__(self) -> None:
        self.duplicates: list[str] = []
        self.bad_key: str | None = None

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        merged: set[str] = set()
        for key, value in pairs:
            if self.bad_key is None and _SURROGATE.search(key):
                self.bad_key = key
            if key not in record:
                record[key] = value
                continue
            if key not in merged:  # the first repeat turns the value into the list of every value, in order
                record[key], merged = [record[key]], merged | {key}
                self.duplicates.append(key)
            record[key].append(value)
        return record


def raw_decode(text: str, pos: int = 0) -> tuple[Any, int, Decoded]:
    """The JSON value starting at `pos`, where it ends, and what decoding met (duplicates, a key not text).

    JSONDecodeError, ValueError and RecursionError propagate."""
    seen = Decoded()
    value, end = json.JSONDecoder(object_pairs_hook=seen.hook).raw_decode(text, pos)
    return value, end, seen


def settle(value: Any, seen: Decoded) -> Any:
    """The decoded value with undecodable bytes shown as text and its repairs named; IngestError for a key that
    is not text."""
    if seen.bad_key is not None:
        shown = clean_text(_shown(seen.bad_key), KEY_SHOWN_CHARS)
        problem = f"a JSON key holds bytes that are not UTF-8 text ({shown!r}): which field it names is unknowable"
        raise IngestError(problem)
    shown_count = [0]
    try:
        value = _show_surrogates(value, shown_count)
    except _NotJsonNumber as exc:
        where = clean_text(_non_finite_path(value) or "the value", KEY_SHOWN_CHARS)
        raise IngestError(f"{where} holds {exc.number}, which is not a JSON number (RFC 8259)") from None
    repairs = [
        f"key {clean_text(key, KEY_SHOWN_CHARS)!r} appeared more than once: all its values kept, as a list"
        for key in seen.duplicates
    ]
    if shown_count[0]:
        repairs.append(f"{shown_count[0]} string value(s) held bytes that are not UTF-8 text: shown as \\xNN")
    if repairs and isinstance(value, dict):
        value[REPAIRS_KEY] = repairs
    return value


class _NotJsonNumber(Exception):
    def __init__(self, number: float) -> None:
        super().__init__(number)
        self.number = number


def _show_surrogates(value: Any, count: list[int], depth: int = 0) -> Any:
    """Walks every value once: undecodable bytes shown (counted), a non-finite number raised, nesting bounded."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _NotJsonNumber(value)
    if isinstance(value, str):
        if _SURROGATE.search(value):
            count[0] += 1
            return _shown(value)
        return value
    if isinstance(value, list | dict) and depth >= MAX_DEPTH:
        raise IngestError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_show_surrogates(v, count, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _show_surrogates(v, count, depth + 1) for k, v in value.items()}
    return value


def _non_finite_path(value: Any, path: str = "") -> str | None:
    """Where the first number JSON cannot hold sits ("raw.a[0].b"); walked only once one was found."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite_path(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


def _shown(text: str) -> str:
    return _SURROGATE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - _ESCAPED_BYTE:02x}"
    return f"\\u{code:04x}"


def decode_bytes(data: bytes) -> str:
    """A record's bytes as text: UTF-8, with each undecodable byte kept (surrogateescape) for `settle` to show."""
    return data.decode("utf-8", "surrogateescape")


def decode_json(text: str, origin: str | None = None) -> Any:
    """One complete JSON value, settled (see the module docstring); IngestError (located at `origin`) saying what
    is wrong."""
    try:
        value, end, seen = raw_decode(text, _leading_space(text))
        if text[end:].strip(" \t\r\n"):
            raise IngestError(f"invalid JSON: extra data after the value (column {end + 1})")
        return settle(value, seen)
    except IngestError as exc:
        raise (exc.at(origin) if origin else exc) from None
    except json.JSONDecodeError as exc:
        raise IngestError(f"invalid JSON: {exc.msg} (column {exc.colno})", origin) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer beyond the digit limit, absurd nesting
        raise IngestError(f"invalid JSON: {clean_text(exc, 200)}", origin) from None


def _leading_space(text: str) -> int:
    return len(text) - len(text.lstrip(" \t\r\n"))
