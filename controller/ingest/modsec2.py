"""ModSecurity v2 (Apache mod_security2) JSON audit records.

Shape: {transaction{time, transaction_id, remote_address, local_address, local_port}, request{request_line,
headers}, response{body}, audit_data{messages[...], error_messages[...], action{intercepted}, engine_mode}}.
Each rule hit is one string of bracketed fields: `Warning. ... [id "942100"] [msg "..."] [data "..."]
[severity "CRITICAL"] [tag "attack-sqli"] ...`. `error_messages` repeats the same hits with an Apache prefix,
so it is read only when `messages` is empty.
"""

from __future__ import annotations

import re
from typing import Any

from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import RuleHit
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw
from autonomy_controller.controller.ingest.waf import WafTransaction, header, rule_hit, waf_alert
from autonomy_controller.controller.models import Alert

SOURCE = "modsecurity2"
# Bodies can be huge (the default Apache page alone is 10 kB): never keep them in raw.
_HUGE = (("response", "body"), ("request", "body"))
_DUPLICATE = ("audit_data", "error_messages")
"""Dropped from raw when `messages` holds the same hits: it only doubles the size."""
_FIELD = re.compile(r'\[(\w+) "((?:[^"\\]|\\.)*)"\]')


def looks_like(record: Record) -> bool:
    return isinstance(record.get("transaction"), dict) and isinstance(record.get("audit_data"), dict)


def skip_reason(record: Record) -> str | None:
    return None if _messages(record) else f"{SOURCE}: no rule matched"


def parse(record: Record) -> Alert:
    tx = fields.mapping(record, "transaction")
    request = fields.mapping(record, "request", optional=True)
    hits = [parse_message(m, i) for i, m in enumerate(_messages(record))]
    request_line = fields.optional_text(request, "request_line")
    intercepted = fields.get_path(record, "audit_data.action.intercepted") is True
    return waf_alert(
        WafTransaction(
            source=SOURCE,
            sensor_id=fields.text(record, "transaction.transaction_id"),
            observed_at=fields.apache_time(fields.text(record, "transaction.time"), "transaction.time"),
            src_ip=fields.ip(tx.get("remote_address"), "transaction.remote_address"),
            dst_ip=fields.optional_ip(tx.get("local_address"), "transaction.local_address"),
            dst_port=fields.port(tx.get("local_port"), "transaction.local_port"),
            request_line=request_line,
            user_agent=header(request.get("headers"), "User-Agent"),
            hits=hits,
            # mod_security2 records its own verdict; nothing else to infer.
            blocked=intercepted,
            raw=bounded_raw(record, (*_HUGE, _DUPLICATE) if _has_messages(record) else _HUGE),
        )
    )


def parse_message(message: Any, index: int) -> RuleHit:
    """One bracketed ModSecurity v2 message string as a RuleHit (tags may repeat, the rest are single).

    Only the rule's metadata is read: the fields from the last `[file "` on (else the last `[id "`), which
    mod_security2 writes after the operator's text with quotes escaped. The text before it names the matched
    variable, and mod_security2 logs an argument's or header's *name* with its quotes unescaped
    (log_escape_nq): a request with an argument named `x"] [id "942100"] [severity "CRITICAL"] [x "` would
    otherwise pass for a critical libinjection hit."""
    if not isinstance(message, str):
        raise IngestError(f"audit_data.messages[{index}] must be a string")
    single: dict[str, str] = {}
    tags: list[str] = []
    for key, value in _FIELD.findall(message[_metadata_start(message) :]):
        value = value.replace('\\"', '"')
        if key == "tag":
            tags.append(value)
        else:
            single.setdefault(key, value)
    return rule_hit(
        rule_id=single.get("id"),
        message=single.get("msg"),
        data=single.get("data"),
        severity=single.get("severity"),
        tags=tags,
    )


def _metadata_start(message: str) -> int:
    for opening in ('[file "', '[id "'):
        found = message.rfind(opening)
        if found >= 0:
            return found
    return 0


def _has_messages(record: Record) -> bool:
    return bool(fields.sequence(record, "audit_data.messages", optional=True))


def _messages(record: Record) -> list[Any]:
    return fields.sequence(record, "audit_data.messages", optional=True) or fields.sequence(
        record, "audit_data.error_messages", optional=True
    )
