"""OCSF 1.x Detection Finding events (class_uid 2004), and OCSF 1.0's Security Finding (2001).

OCSF 1.0 had no Detection Finding: its findings are Security Findings, whose finding object is `finding` (not
`finding_info`) and whose analytic sits at the top level. Both are read, so a 1.0 producer's findings are not
skipped as some other class. Other OCSF classes (network activity, authentication, ...) are valid telemetry, not
findings: they are counted as skipped. Producers put the endpoints and actor either at the top level
(security-control profile) or inside `evidences[]`; both are read, top level first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import classify_ocsf
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw, evidence, make_alert, stable_id
from autonomy_controller.controller.models import Alert

SOURCE = "ocsf"
DETECTION_FINDING = 2004
SECURITY_FINDING = 2001
"""OCSF 1.0's finding class (deprecated since 1.1, which added Detection Finding)."""
FINDING_CLASSES = frozenset({DETECTION_FINDING, SECURITY_FINDING})
FINDING_KEYS = ("finding_info", "finding")
"""Where the finding itself is: `finding_info` since OCSF 1.1, `finding` in 1.0."""
# disposition_id values that mean the activity did not go through: Blocked, Quarantined, Isolated, Deleted,
# Dropped, Reset, Access Revoked, Rejected, Unauthorized. (Alert 19, Detected 15, Allowed 1 did not stop it.)
BLOCKED_DISPOSITIONS = frozenset({2, 3, 4, 5, 6, 21, 24, 25, 26})
ACTION_DENIED = 2
_HUGE = (("unmapped",), ("raw_data",))


def looks_like(record: Record) -> bool:
    return "class_uid" in record and ("metadata" in record or "category_uid" in record)


def skip_reason(record: Record) -> str | None:
    class_uid = fields.optional_int(record, "class_uid")
    if class_uid in FINDING_CLASSES:
        return None
    return f"{SOURCE}: class_uid {class_uid} is not a Detection Finding"


def parse(record: Record) -> Alert:
    finding = _finding_key(record)
    uid = fields.text(record, f"{finding}.uid")
    title = fields.text(record, f"{finding}.title")
    stamp = fields.required(record, "time")
    verdict = classify_ocsf(
        texts=[title, *_vendor_terms(record, finding)],
        has_malware=bool(_lookup(record, "malware")),
        severity_id=fields.optional_int(record, "severity_id"),
        confidence_score=_number(record, "confidence_score"),
        confidence_id=fields.optional_int(record, "confidence_id"),
    )
    analytic = fields.optional_text(record, f"{finding}.analytic.uid") or fields.optional_text(record, "analytic.uid")
    disposition = fields.optional_int(record, "disposition_id")
    return make_alert(
        id=stable_id(SOURCE, uid, stamp),
        source=SOURCE,
        observed_at=fields.epoch_ms(stamp, "time"),
        category=verdict.category,
        severity=verdict.severity,
        confidence=verdict.confidence,
        src_ip=fields.optional_ip(_lookup(record, "src_endpoint.ip"), "src_endpoint.ip"),
        dst_ip=fields.optional_ip(_lookup(record, "dst_endpoint.ip"), "dst_endpoint.ip"),
        dst_port=fields.port(_lookup(record, "dst_endpoint.port"), "dst_endpoint.port"),
        # The affected device is the asset (the infected host of a C2 beacon); else the targeted endpoint.
        asset=_lookup(record, "device.hostname") or _lookup(record, "dst_endpoint.hostname"),
        user=_lookup(record, "actor.user.name") or _lookup(record, "user.name"),
        url=_lookup(record, "url.url_string") or _lookup(record, "http_request.url.url_string"),
        rule_ids=[analytic] if analytic else [],
        signature=title,
        blocked=disposition in BLOCKED_DISPOSITIONS or fields.optional_int(record, "action_id") == ACTION_DENIED,
        src_connected=_connected(record),
        evidence_text=evidence(_evidence_parts(record, finding)),
        raw=bounded_raw(record, _HUGE),
    )


def _finding_key(record: Record) -> str:
    """The key of the record's finding object (FINDING_KEYS, newest first); IngestError naming both when neither."""
    found = next((key for key in FINDING_KEYS if record.get(key) is not None), None)
    if found is None:
        raise IngestError("missing required field finding_info (OCSF 1.1 and later) or finding (OCSF 1.0)")
    return found


def _connected(record: Record) -> bool:
    """Whether the finding's source address is the sender's: an HTTP request (its client held a connection), or a
    process (an endpoint agent saw the device itself act; no packet involved), beside that address: at the top
    level, or in the evidence the address was read from (another evidence's request is another client's). Any
    other finding's source may be a forged packet's (a network sensor's UDP, ICMP or DNS event)."""
    if fields.get_path(record, "src_endpoint.ip") in (None, "", []):
        named = [e for e in _evidences(record) if fields.get_path(e, "src_endpoint.ip") not in (None, "", [])]
        record = named[0] if named else record
    return bool(_lookup(record, "http_request") or _lookup(record, "process"))


def _evidences(record: Record) -> list[Record]:
    items = record.get("evidences")
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def _lookup(record: Record, path: str) -> Any:
    """The field at the top level, else from the first evidence that has it."""
    value = fields.get_path(record, path)
    if value not in (None, "", []):
        return value
    for item in _evidences(record):
        value = fields.get_path(item, path)
        if value not in (None, "", []):
            return value
    return None


def _vendor_terms(record: Record, finding: str) -> Iterator[str]:
    """Vendor-written words that name the class: finding types, analytic name, ATT&CK tactics/techniques."""
    types = fields.get_path(record, f"{finding}.types")
    if isinstance(types, list):
        yield from (str(t) for t in types)
    for path in (f"{finding}.analytic.name", f"{finding}.analytic.category", "analytic.name", "analytic.category"):
        value = fields.optional_text(record, path)
        if value:
            yield value
    for attacks_path in (f"{finding}.attacks", "attacks"):
        attacks = fields.get_path(record, attacks_path)
        for attack in attacks if isinstance(attacks, list) else []:
            for part in ("tactic", "technique", "sub_technique"):
                for key in ("uid", "name"):
                    value = fields.get_path(attack, f"{part}.{key}") if isinstance(attack, dict) else None
                    if value:
                        yield str(value)


def _evidence_parts(record: Record, finding: str) -> list[str | None]:
    parts: list[str | None] = [
        fields.optional_text(record, f"{finding}.desc"),
        fields.optional_text(record, "message"),
    ]
    for item in _evidences(record)[:5]:
        for path in (
            "process.cmd_line",
            "file.path",
            "query.hostname",
            "url.url_string",
            "http_request.user_agent",
        ):
            value = fields.optional_text(item, path)
            if value:
                parts.append(f"{path}: {value}")
    return parts


def _number(record: Record, path: str) -> float | None:
    value = fields.get_path(record, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IngestError(f"field {path} must be a number, got {value!r:.40}")
    return float(value)
