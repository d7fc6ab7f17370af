"""What ModSecurity v3, ModSecurity v2 and the flattened CRS corpus have in common, in one place.

The three formats differ only in where they keep the same facts (client address, request line, matched
rules, engine mode). Each parser maps its record onto `WafTransaction`; classification, the `blocked`
decision, evidence and the Alert itself are built here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autonomy_controller.controller.ingest.classify import BLOCKING_EVALUATION, RuleHit, classify_crs
from autonomy_controller.controller.ingest.normalise import evidence, make_alert, stable_id
from autonomy_controller.controller.models import Alert


@dataclass(frozen=True)
class WafTransaction:
    """One WAF audit record, format-free.

    There is no `asset`: the only host name a WAF logs is the request's Host header, which the attacker
    writes. A WAF alert names its target by `dst_ip`/`dst_port`, which the server itself reports.
    """

    source: str
    sensor_id: str
    observed_at: datetime
    src_ip: str
    hits: Sequence[RuleHit]
    blocked: bool
    raw: dict[str, Any]
    dst_ip: str | None = None
    dst_port: int | None = None
    request_line: str | None = None
    url: str | None = None
    user_agent: str | None = None


def rule_hit(*, rule_id: Any, message: Any, data: Any, severity: Any, tags: Any) -> RuleHit:
    """A RuleHit from loosely typed JSON (ids and severities come as numbers or strings, tags may be null)."""
    return RuleHit(
        rule_id=_scalar(rule_id),
        message=_scalar(message),
        data=_scalar(data),
        severity=_scalar(severity),
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
    )


def _scalar(value: Any) -> str | None:
    return None if value is None or value == "" or isinstance(value, dict | list) else str(value)


def engine_intervened(hits: Sequence[RuleHit]) -> bool:
    """True when CRS's blocking evaluation (949xxx inbound, 959xxx outbound) fired: the anomaly total
    crossed the threshold, which in blocking mode means the request was denied."""
    return any(hit.family in BLOCKING_EVALUATION for hit in hits)


def waf_blocked(*, engine_enabled: bool, hits: Sequence[RuleHit], status: int | None) -> bool:
    """Did the request get denied?

    A 403 answer is a denial whatever produced it (CRS, or an nginx deny list during containment, as the lab's
    audit log shows: a 403 with only 920350 logged). Otherwise the engine must be in blocking mode *and* its
    blocking evaluation must have fired; a recorded 2xx/3xx status overrules that (the request went through).
    """
    if status == 403:
        return True
    if status is not None and status < 400:
        return False
    return engine_enabled and engine_intervened(hits)


def request_target(request_line: str | None) -> str | None:
    """The URL of "GET /a?b=1 HTTP/1.1" (None when the line has no target)."""
    if not request_line:
        return None
    parts = request_line.split(" ")
    return parts[1] if len(parts) >= 2 and parts[1] else None


def header(headers: Any, name: str) -> str | None:
    """A request header by case-insensitive name (sensors keep the client's spelling)."""
    if not isinstance(headers, dict):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted and value not in (None, ""):
            return str(value)
    return None


def waf_alert(tx: WafTransaction) -> Alert:
    """Classify the transaction's rules and build its Alert."""
    verdict = classify_crs(tx.hits)
    ordered = [
        *verdict.deciding,
        *(h for h in tx.hits if h not in verdict.deciding and not h.is_anomaly_total),
    ]
    matched = [f"{h.rule_id}: {h.data}" for h in ordered if h.data]
    return make_alert(
        id=stable_id(tx.source, tx.sensor_id),
        source=tx.source,
        observed_at=tx.observed_at,
        category=verdict.category,
        severity=verdict.severity,
        confidence=verdict.confidence,
        src_ip=tx.src_ip,
        dst_ip=tx.dst_ip,
        dst_port=tx.dst_port,
        url=tx.url or request_target(tx.request_line),
        rule_ids=[h.rule_id for h in tx.hits if h.rule_id],
        signature=verdict.primary.message if verdict.primary else None,
        blocked=tx.blocked,
        src_connected=True,  # an HTTP request: its client completed a connection, from the address logged
        evidence_text=evidence([tx.request_line, f"User-Agent: {tx.user_agent}" if tx.user_agent else None, *matched]),
        raw=tx.raw,
    )
