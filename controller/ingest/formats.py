"""Format detection per record, and the parse entry points that turn one record or line into alerts.

Detection is per record, not per file: one stream may mix sources (a collector forwarding WAF and IDS events
to one file), and a file's name says nothing reliable about its content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from autonomy_controller.controller.ingest import (
    auth_log,
    crs_corpus,
    modsec2,
    modsec3,
    native,
    nginx_access,
    ocsf,
    suricata,
)
from autonomy_controller.controller.ingest.decoding import REPAIRS_KEY, decode_json
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.native import TRUST_NOTHING, TrustedSources
from autonomy_controller.controller.ingest.normalise import clean_text
from autonomy_controller.controller.models import Alert, Provenance


class Format(StrEnum):
    NATIVE = native.SOURCE
    OCSF = ocsf.SOURCE
    SURICATA = suricata.SOURCE
    MODSECURITY2 = modsec2.SOURCE
    MODSECURITY3 = modsec3.SOURCE
    CRS_CORPUS = crs_corpus.SOURCE
    NGINX_ACCESS = nginx_access.SOURCE
    AUTH_LOG = auth_log.SOURCE


@dataclass(frozen=True)
class _Parser:
    looks_like: Callable[[Record], bool]
    skip_reason: Callable[[Record], str | None]
    parse: Callable[[Record], Alert]


# Order matters where shapes overlap: our own Alert first (it could carry any key), ModSecurity v2
# (transaction + audit_data) before v3 (transaction only).
_PARSERS: dict[Format, _Parser] = {
    Format.NATIVE: _Parser(native.looks_like, native.skip_reason, native.parse),
    Format.OCSF: _Parser(ocsf.looks_like, ocsf.skip_reason, ocsf.parse),
    Format.SURICATA: _Parser(suricata.looks_like, suricata.skip_reason, suricata.parse),
    Format.MODSECURITY2: _Parser(modsec2.looks_like, modsec2.skip_reason, modsec2.parse),
    Format.MODSECURITY3: _Parser(modsec3.looks_like, modsec3.skip_reason, modsec3.parse),
    Format.CRS_CORPUS: _Parser(crs_corpus.looks_like, crs_corpus.skip_reason, crs_corpus.parse),
    Format.NGINX_ACCESS: _Parser(nginx_access.looks_like, nginx_access.skip_reason, nginx_access.parse),
    Format.AUTH_LOG: _Parser(auth_log.looks_like, auth_log.skip_reason, auth_log.parse),
}


@dataclass(frozen=True)
class ParseResult:
    """One record's outcome: its alerts, or why a valid record carries none (`skipped`)."""

    format: Format
    alerts: list[Alert] = field(default_factory=list)
    skipped: str | None = None


def detect_format(record: Mapping[str, Any]) -> Format:
    """The sensor format of one decoded record; IngestError when it matches none."""
    for fmt, parser in _PARSERS.items():
        if parser.looks_like(record):
            return fmt
    keys = ", ".join(clean_text(k, 40) for k in list(record)[:8]) or "none"
    raise IngestError(f"unrecognised record format (top-level keys: {keys})")


def parse_value(value: object, origin: str, trusted: TrustedSources = TRUST_NOTHING) -> ParseResult:
    """Parse one decoded JSON value. Any problem becomes an IngestError located at `origin`.

    Each alert's provenance is set here, by the parser that produced it: `sensor` from a sensor's own format,
    and for our Alert JSON `claim`, or `trusted_feed` when its `source` is one of `trusted` (the channel's).

    Unexpected shapes deep inside a record (a string where an object belongs) surface as TypeError and the
    like; they are converted too, because one odd record must cost one dead letter, not the whole stream.
    """
    if not isinstance(value, dict):
        raise IngestError(f"expected a JSON object, got {type(value).__name__}", origin)
    try:
        fmt = detect_format(value)
        parser = _PARSERS[fmt]
        reason = parser.skip_reason(value)
        if reason is not None:
            return ParseResult(fmt, skipped=reason)
        alert = parser.parse(value)
        vouched = native.provenance(alert, trusted) if fmt is Format.NATIVE else Provenance.SENSOR
        return ParseResult(fmt, [_stamped(alert, value, vouched)])
    except IngestError as exc:
        raise exc.at(origin) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        problem = f"unexpected record shape ({type(exc).__name__}: {clean_text(exc, 200)})"
        raise IngestError(problem, origin) from exc


def _stamped(alert: Alert, record: Mapping[str, Any], provenance: Provenance) -> Alert:
    """The alert with its provenance, its raw record naming what decoding had to show differently (decoding.py),
    whatever the format keeps of the record in raw: a repair is never silent."""
    update: dict[str, Any] = {"provenance": provenance}
    repairs = record.get(REPAIRS_KEY)
    if repairs and alert.raw.get(REPAIRS_KEY) != repairs:
        update["raw"] = {**alert.raw, REPAIRS_KEY: repairs}
    return alert.model_copy(update=update)


def parse_record(record: Mapping[str, Any], origin: str, trusted: TrustedSources = TRUST_NOTHING) -> list[Alert]:
    """The alerts in one decoded record ([] for a valid non-alert record such as a Suricata flow event)."""
    return parse_value(dict(record) if not isinstance(record, dict) else record, origin, trusted).alerts


def parse_line(text: str, origin: str, trusted: TrustedSources = TRUST_NOTHING) -> ParseResult:
    """Decode and parse one JSON line (for a follow/tail mode, or a message from a queue), strictly (decoding.py)."""
    return parse_value(decode_json(text, origin), origin, trusted)
