"""OCSF 1.x Detection Finding events (class_uid 2004).

Other OCSF classes (network activity, authentication, ...) are valid telemetry, not findings: they are counted
as skipped. Producers put the endpoints and actor either at the top level (security-control profile) or inside
`evidences[]`; both are read, top level first.
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
# disposition_id values that mean the activity did not go through: Blocked, Quarantined, Isolated, Deleted,
# Dropped, Reset, Access Revoked, Rejected, Unauthorized. (Alert 19, Detected 15, Allowed 1 did not stop it.)
BLOCKED_DISPOSITIONS = frozenset({2, 3, 4, 5, 6, 21, 24, 25, 26})
ACTION_DENIED = 2
_HUGE = (("unmapped",), ("raw_data",))


def looks_like(record: Record) -> bool:
    return "class_uid" in record and ("metadata" in record or "category_uid" in record)


def skip_reason(record: Record) -> str | None:
    class_uid = fields.optional_int(record, "class_uid")
    return None if class_uid == DETECTION_FINDING else f"{SOURCE}: class_uid {class_uid} is not a Detection Finding"


def parse(record: Record) -> Alert:
    uid = fields.text(record, "finding_info.uid")
    title = fields.text(record, "finding_info.title")
    stamp = fields.required(record, "time")
    verdict = classify_ocsf(
        texts=[title, *_vendor_terms(record)],
        has_malware=bool(_lookup(record, "malware")),
        severity_id=fields.optional_int(record, "severity_id"),
        confidence_score=_number(record, "confidence_score"),
        confidence_id=fields.optional_int(record, "confidence_id"),
    )
    analytic = fields.optional_text(record, "finding_info.analytic.uid")
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
        evidence_text=evidence(_evidence_parts(record)),
        raw=bounded_raw(record, _HUGE),
    )


def _connected(record: Record) -> bool:
    """Whether the finding's source address is the sender's: an HTTP request (its client held a connection), or a
    process (an endpoint agent saw the device itself act; no packet involved). Any other finding's source may be
    a forged packet's (a network sensor's UDP, ICMP or DNS event)."""
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


def _vendor_terms(record: Record) -> Iterator[str]:
    """Vendor-written words that name the class: finding types, analytic name, ATT&CK tactics/techniques."""
    types = fields.get_path(record, "finding_info.types")
    if isinstance(types, list):
        yield from (str(t) for t in types)
    for path in ("finding_info.analytic.name", "finding_info.analytic.category"):
        value = fields.optional_text(record, path)
        if value:
            yield value
    for attacks_path in ("finding_info.attacks", "attacks"):
        attacks = fields.get_path(record, attacks_path)
        for attack in attacks if isinstance(attacks, list) else []:
            for part in ("tactic", "technique", "sub_technique"):
                for key in ("uid", "name"):
                    value = fields.get_path(attack, f"{part}.{key}") if isinstance(attack, dict) else None
                    if value:
                        yield str(value)


def _evidence_parts(record: Record) -> list[str | None]:
    parts: list[str | None] = [
        fields.optional_text(record, "finding_info.desc"),
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
