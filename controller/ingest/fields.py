"""Typed, fail-loud access to fields of a decoded JSON record.

Sensor records are untrusted JSON: any key may be missing, null, or of the wrong type. These helpers turn
every such surprise into an `IngestError` that names the field by its dotted path, so a dead-letter entry
says exactly what was wrong instead of a bare KeyError.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from autonomy_controller.controller.ingest.errors import IngestError

Record = Mapping[str, Any]

_MONTHS = {
    m: i
    for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)
}
# Apache/ModSecurity v2 audit time: 23/Nov/2026:08:41:10.759627 +0000
_APACHE_TIME = re.compile(
    r"^(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s+([+-])(\d{2}):?(\d{2})$"
)
# libmodsecurity3 time_stamp (ctime, no zone): Mon Nov 23 08:41:32 2026
_CTIME = re.compile(r"^[A-Za-z]{3}\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})$")


def get_path(record: Record, path: str) -> Any:
    """The value at a dotted path, or None when any step is missing or not an object."""
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def required(record: Record, path: str) -> Any:
    value = get_path(record, path)
    if value is None or value == "":
        raise IngestError(f"missing required field {path}")
    return value


def mapping(record: Record, path: str, *, optional: bool = False) -> Record:
    """An object-valued field; an absent optional one reads as empty so callers need no None checks."""
    value = get_path(record, path)
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise IngestError(f"field {path} must be an object, got {_kind(value)}")
    return value


def sequence(record: Record, path: str, *, optional: bool = False) -> list[Any]:
    value = get_path(record, path)
    if value is None and optional:
        return []
    if not isinstance(value, list):
        raise IngestError(f"field {path} must be a list, got {_kind(value)}")
    return value


def text(record: Record, path: str) -> str:
    """A required scalar rendered as text (sensor ids are sometimes numbers, sometimes strings)."""
    value = required(record, path)
    if isinstance(value, Mapping | list):
        raise IngestError(f"field {path} must be a scalar, got {_kind(value)}")
    return str(value)


def optional_text(record: Record, path: str) -> str | None:
    value = get_path(record, path)
    if value is None or isinstance(value, Mapping | list) or value == "":
        return None
    return str(value)


def optional_int(record: Record, path: str) -> int | None:
    value = get_path(record, path)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise IngestError(f"field {path} must be an integer, got a boolean")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise IngestError(f"field {path} must be an integer, got {value!r:.60}") from None


def ip(value: Any, path: str) -> str:
    """A required, canonical IP address. An invalid one is an error, never dropped: it would mis-key
    incidents (and give a block action a wrong target)."""
    if value is None or value == "":
        raise IngestError(f"missing required field {path}")
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise IngestError(f"invalid IP address in {path}: {str(value)!r:.80}") from None


def optional_ip(value: Any, path: str) -> str | None:
    return None if value is None or value == "" else ip(value, path)


def port(value: Any, path: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise IngestError(f"invalid port in {path}: {str(value)!r:.40}") from None
    if not 0 <= number <= 65535:
        raise IngestError(f"invalid port in {path}: {number}")
    return number


def apache_time(value: str, path: str) -> datetime:
    """ModSecurity v2 / Apache audit time, with its explicit offset."""
    m = _APACHE_TIME.match(value.strip())
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if not m or month is None:
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}")
    day, _, year, hh, mm, ss, frac, sign, oh, om = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (-1 if sign == "-" else 1)
    micro = int((frac or "0").ljust(6, "0"))
    return _build(path, value, int(year), month, int(day), int(hh), int(mm), int(ss), micro, timezone(offset))


def ctime_utc(value: str, path: str) -> datetime:
    """libmodsecurity3's zone-less ctime stamp, read as UTC.

    libmodsecurity3 writes the server's local time without a zone. Servers that feed a SOC run on UTC (the lab
    WAF's own `Date:` response header matches the stamp exactly), and a guessed local zone would be worse than
    a documented assumption.
    """
    m = _CTIME.match(value.strip())
    month = _MONTHS.get(m.group(1).lower()) if m else None
    if not m or month is None:
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}")
    _, day, hh, mm, ss, year = m.groups()
    return _build(path, value, int(year), month, int(day), int(hh), int(mm), int(ss), 0, UTC)


def iso_time(value: Any, path: str) -> datetime:
    """An ISO 8601 stamp (Suricata writes +0000 offsets); a zone-less one is read as UTC."""
    if not isinstance(value, str):
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}") from None
    return aware(parsed)


EPOCH_SECONDS_BELOW = 100_000_000_000
"""An OCSF `time` below this is seconds, not milliseconds: as milliseconds it would be before March 1973."""


def epoch_ms(value: Any, path: str) -> datetime:
    """OCSF `time`: milliseconds since the epoch. Some producers write seconds: read as milliseconds, today would be
    January 1970, so a value below EPOCH_SECONDS_BELOW is seconds. An ISO string is accepted too."""
    number = _epoch_number(value, path)
    if number is None:
        return iso_time(value, path)
    seconds = number if abs(number) < EPOCH_SECONDS_BELOW else number / 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}") from None


def _epoch_number(value: Any, path: str) -> float | None:
    """The number an epoch stamp holds (a JSON number or its text); None for other text (an ISO stamp, perhaps)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}")
    try:
        number = float(value)
    except ValueError:
        return None
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise IngestError(f"invalid timestamp in {path}: {value!r:.60}")
    return number


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _build(path: str, raw: str, *parts: Any) -> datetime:
    try:
        return datetime(*parts)
    except ValueError:
        raise IngestError(f"invalid timestamp in {path}: {raw!r:.60}") from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
