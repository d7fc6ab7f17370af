"""ModSecurity v3 (libmodsecurity3, e.g. nginx) JSON audit records.

Shape: {"transaction": {client_ip, host_ip, host_port, unique_id, time_stamp, request{method, uri,
http_version, headers}, response{http_code, body}, producer{secrules_engine}, messages[{message,
details{ruleId, severity ("2"), tags, data}}]}}.

`producer` and `messages` are audit log part H (libmodsecurity3's transaction.cc writes both only with it). A site
whose SecAuditLogParts leaves H out logs valid records without either: they are recognised by part A's keys and
skipped with that reason (which rules matched is not in them), not dead-lettered as broken.
"""

from __future__ import annotations

from typing import Any

from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import RuleHit
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw
from autonomy_controller.controller.ingest.waf import WafTransaction, header, rule_hit, waf_alert, waf_blocked
from autonomy_controller.controller.models import Alert

SOURCE = "modsecurity3"
_HUGE = (("transaction", "response", "body"), ("transaction", "request", "body"))
PART_A_KEYS = ("client_ip", "time_stamp", "unique_id")
"""What every libmodsecurity3 transaction holds, whatever SecAuditLogParts says."""
PART_H_KEYS = ("producer", "messages")


def looks_like(record: Record) -> bool:
    tx = record.get("transaction")
    if not isinstance(tx, dict) or "audit_data" in record or "messages" in record:
        return False  # v2 has audit_data; rule messages beside the transaction are another WAF's (Coraza)
    return any(key in tx for key in PART_H_KEYS) or all(key in tx for key in PART_A_KEYS)


def skip_reason(record: Record) -> str | None:
    """A transaction logged with no rule match (SecAuditEngine On) is traffic, not an alert; one logged without
    part H says nothing of rules."""
    tx = fields.mapping(record, "transaction")
    if not any(key in tx for key in PART_H_KEYS):
        return f"{SOURCE}: no rule messages, audit log part H not logged (add H to SecAuditLogParts)"
    return None if fields.sequence(record, "transaction.messages", optional=True) else f"{SOURCE}: no rule matched"


def parse(record: Record) -> Alert:
    tx = fields.mapping(record, "transaction")
    request = fields.mapping(record, "transaction.request", optional=True)
    hits = [_hit(m, i) for i, m in enumerate(fields.sequence(record, "transaction.messages"))]
    method, uri = fields.optional_text(request, "method"), fields.optional_text(request, "uri")
    version = fields.optional_text(request, "http_version")
    request_line = " ".join(p for p in (method, uri, f"HTTP/{version}" if version else None) if p) or None
    engine = (fields.optional_text(tx, "producer.secrules_engine") or "").lower()
    return waf_alert(
        WafTransaction(
            source=SOURCE,
            sensor_id=fields.text(record, "transaction.unique_id"),
            observed_at=fields.ctime_utc(fields.text(record, "transaction.time_stamp"), "transaction.time_stamp"),
            src_ip=fields.ip(tx.get("client_ip"), "transaction.client_ip"),
            dst_ip=fields.optional_ip(tx.get("host_ip"), "transaction.host_ip"),
            dst_port=fields.port(tx.get("host_port"), "transaction.host_port"),
            request_line=request_line,
            url=uri,
            user_agent=header(request.get("headers"), "User-Agent"),
            hits=hits,
            blocked=waf_blocked(
                engine_enabled=engine == "enabled",
                hits=hits,
                status=fields.optional_int(record, "transaction.response.http_code"),
            ),
            raw=bounded_raw(record, _HUGE),
        )
    )


def _hit(message: Any, index: int) -> RuleHit:
    if not isinstance(message, dict):
        raise IngestError(f"transaction.messages[{index}] must be an object")
    details = message.get("details") or {}
    if not isinstance(details, dict):
        raise IngestError(f"transaction.messages[{index}].details must be an object")
    return rule_hit(
        rule_id=details.get("ruleId"),
        message=message.get("message"),
        data=details.get("data"),
        severity=details.get("severity"),
        tags=details.get("tags"),
    )
