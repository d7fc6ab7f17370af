"""The single place where parsed fields become an `Alert`, with every attacker-controlled field bounded.

Request lines, user agents, matched data and even rule messages reach us from the attacker (docs/architecture.md,
"Untrusted input"). Before they enter an Alert they are cut to a fixed size, so one 1 MB header cannot
bloat Temporal history, the ledger or an LLM prompt, and their control characters are escaped, so a payload
cannot rewrite a terminal, forge log lines with a carriage return, or hide text behind bidi overrides. `raw`
keeps the original record for auditors, minus known-huge bodies and capped in size.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.models import Alert, Category, Severity

EVIDENCE_LIMIT = 2000
"""Characters of untrusted evidence kept per alert: enough for a request line, a user agent and matches."""
EVIDENCE_PART_LIMIT = 600
"""Per piece, so one long matched value cannot crowd the request line out of the evidence."""
URL_LIMIT = 2000
LABEL_LIMIT = 256
"""Free-text labels cut (marked) at this length when they are not identifiers."""
RAW_LIMIT = 64 * 1024
"""Serialised bytes of `raw` kept per alert; raw travels to the ledger, not through workflow history."""
RAW_STRING_LIMIT = 4096
ID_LIMIT = 160
"""An alert id becomes part of workflow ids, incident keys, file names and URLs: sensor ids longer than this
are hashed (`stable_id`), and a native alert that brings a longer one is refused."""
IDENTIFIER_LIMITS: dict[str, int] = {
    "id": ID_LIMIT,
    "source": 64,
    "user": 256,  # a UPN or DN is well below; an identity.disable_user target
    "asset": 255,  # a DNS name is at most 253; a host.isolate target and an incident key
    "rule_ids[]": 128,
    "signature": 512,
}
"""Identifiers are never cut or rewritten (a cut user name is another user, or none): a longer one, or one
holding a control, zero-width or bidi character, is an error for that record, naming the field and limit."""
MAX_RULE_IDS = 256
"""Rules one alert may name (CRS at paranoia 4 fires a few dozen per request)."""
TRUNCATION_MARK = "…[truncated]"

# C0/C1 controls (except tab and newline, which are only layout), zero-width and bidi-override characters.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_LINE_BREAKS = re.compile("[\t\n\u2028\u2029]")
"""Layout in free text, but never inside an identifier: a newline in a rule id could forge report lines."""
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@+\-]")
_ID_SAFE = re.compile(r"[A-Za-z0-9_.:@+\-]+")


def clean_text(value: object, limit: int) -> str:
    """Untrusted text cut to `limit` characters with control characters escaped (idempotent)."""
    raw = value if isinstance(value, str) else str(value)
    escaped = _UNSAFE_CHARS.sub(_escape_char, raw[: limit + 1])
    if len(escaped) > limit or len(raw) > limit:
        return escaped[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return escaped


def clean_optional(value: object, limit: int = LABEL_LIMIT) -> str | None:
    if value is None or value == "":
        return None
    return clean_text(value, limit)


def evidence(parts: Iterable[str | None]) -> str:
    """Join non-empty, de-duplicated evidence lines, each and all bounded."""
    seen: set[str] = set()
    lines: list[str] = []
    for part in parts:
        if not part:
            continue
        line = clean_text(part, EVIDENCE_PART_LIMIT)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return clean_text("\n".join(lines), EVIDENCE_LIMIT)


def stable_id(source: str, *parts: object) -> str:
    """`source:part:part`, from the sensor's own ids so re-ingesting a file gives the same alert ids.

    Ids end up in workflow ids, file names and URLs: anything outside a safe alphabet is replaced, and an
    overlong id is shortened to a hash so it stays unique and bounded.
    """
    body = ":".join(_ID_UNSAFE.sub("_", str(p)) for p in parts)
    full = f"{source}:{body}"
    if len(full) <= ID_LIMIT:
        return full
    return f"{source}:sha256-{hashlib.sha256(body.encode()).hexdigest()[:40]}"


def content_id(source: str, record: Mapping[str, Any]) -> str:
    """Fallback id when a sensor gives none: a hash of the canonical record, still deterministic."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return f"{source}:sha256-{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


def bounded_raw(record: Mapping[str, Any], drop: Sequence[tuple[str, ...]] = ()) -> dict[str, Any]:
    """A copy of the record for auditors: `drop` paths (response bodies) replaced by a size note, long
    strings cut, and the whole capped at RAW_LIMIT bytes (beyond that only the top-level shape is kept)."""
    copy = _cap_strings(record, RAW_STRING_LIMIT)
    notes: list[str] = []
    for path in drop:
        parent: Any = copy
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and path[-1] in parent:
            size = len(json.dumps(record_at(record, path), default=str))
            parent[path[-1]] = f"[dropped by ingest: {size} bytes]"
            notes.append(".".join(path))
    size = len(json.dumps(copy, default=str))
    if size > RAW_LIMIT:
        copy = _cap_strings(copy, 256)
        if len(json.dumps(copy, default=str)) > RAW_LIMIT:
            copy = {"_ingest_note": f"record of {size} bytes too large to keep", "keys": sorted(copy)[:50]}
    if notes:
        copy["_ingest_dropped"] = notes
    return copy


def record_at(record: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def make_alert(
    *,
    id: str,
    source: str,
    observed_at: datetime,
    category: Category,
    severity: Severity,
    confidence: float,
    raw: dict[str, Any],
    src_ip: str | None = None,
    dst_ip: str | None = None,
    dst_port: int | None = None,
    asset: str | None = None,
    user: str | None = None,
    url: str | None = None,
    rule_ids: Sequence[str] = (),
    signature: str | None = None,
    blocked: bool = False,
    src_connected: bool = False,
    evidence_text: str = "",
) -> Alert:
    """Build the Alert, bounding every free-text field; a contract violation becomes an IngestError."""
    if not _ID_SAFE.fullmatch(id):
        raise IngestError("field id must be 1 or more of A-Z a-z 0-9 _ . : @ + - (it keys workflows and files)")
    try:
        return Alert(
            id=_required_identifier("id", id),
            source=_required_identifier("source", source),
            observed_at=observed_at,
            category=category,
            severity=severity,
            confidence=round(min(max(confidence, 0.0), 1.0), 2),
            src_ip=peer_address(src_ip),
            dst_ip=peer_address(dst_ip),
            dst_port=dst_port,
            asset=identifier("asset", asset),
            user=identifier("user", user),
            url=clean_optional(url, URL_LIMIT),
            rule_ids=_rule_ids(rule_ids),
            signature=identifier("signature", signature),
            blocked=blocked,
            src_connected=src_connected,
            evidence=clean_text(evidence_text, EVIDENCE_LIMIT),
            raw=raw,
        )
    except ValidationError as exc:
        raise IngestError(f"invalid alert field(s): {describe(exc)}") from None


def peer_address(value: str | None) -> str | None:
    """A sensor's address as the host on the wire: a dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d
    (Apache's mod_security2 logs it so), which no packet carries. Kept, that spelling made the attacker a case of
    its own beside the same address from other sensors, and its block (denied: IPv4-mapped is special-purpose,
    and an IPv6 set never sees the IPv4 packets) never contained it. Anything else is left to the Alert's own
    address check."""
    if not isinstance(value, str):
        return value
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return value
    if not isinstance(address, ipaddress.IPv6Address) or address.scope_id is not None:
        return value  # a zone id is the Alert's to refuse, with its reason
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else value


def identifier(field: str, value: object) -> str | None:
    """An identifier as given, or an IngestError naming the field: not text (a whole number, as some sensors
    number their rules, is written out), over its limit, or with a character that could hide or reorder text.
    None stays None (and so does "", which no identifier means). A list (a key written twice), a mapping or a
    boolean is refused rather than spelled as Python would: that spelling names nothing anyone wrote."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise IngestError(f"field {field} must be text, got {_json_kind(value)}")
    text = value if isinstance(value, str) else str(value)
    limit = IDENTIFIER_LIMITS[field]
    if len(text) > limit:
        raise IngestError(f"field {field} longer than the {limit}-character limit ({len(text)} characters)")
    unsafe = _UNSAFE_CHARS.search(text) or _LINE_BREAKS.search(text)
    if unsafe:
        code = ord(unsafe.group())
        raise IngestError(f"field {field} holds a control, zero-width or bidi character (U+{code:04X})")
    return text


def _required_identifier(field: str, value: object) -> str:
    checked = identifier(field, value)
    if checked is None:
        raise IngestError(f"missing required field {field}")
    return checked


def _rule_ids(rule_ids: Sequence[object]) -> list[str]:
    if len(rule_ids) > MAX_RULE_IDS:
        raise IngestError(f"field rule_ids holds more than the {MAX_RULE_IDS}-rule limit ({len(rule_ids)} rules)")
    return [_required_identifier("rule_ids[]", rule) for rule in rule_ids]


def _json_kind(value: object) -> str:
    kinds = {bool: "true/false", list: "a list", dict: "a mapping", float: "a number with a fraction"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), type(value).__name__)


def describe(exc: ValidationError) -> str:
    """A pydantic error as one bounded line: field paths and messages (messages may quote the bad input)."""
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors()[:5])
    return clean_text(problems, 500)


def _cap_strings(value: Any, limit: int, depth: int = 0) -> Any:
    if depth > 32:
        return "[nested too deep: dropped by ingest]"
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + TRUNCATION_MARK
    if isinstance(value, Mapping):
        return {str(k): _cap_strings(v, limit, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_cap_strings(v, limit, depth + 1) for v in value]
    return value


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
