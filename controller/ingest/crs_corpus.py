"""The flattened CRS regression corpus (shared/corpora/crs-3.3.4-regression-alerts.jsonl.gz).

Shape: {time, id, src_ip, request_line, headers, body, engine_mode, messages[{id, msg, data, severity (word),
tags}]}: ModSecurity v2 records already split into fields, so only the field names differ from modsec2.
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

SOURCE = "crs-corpus"
_HUGE = (("body",),)


def looks_like(record: Record) -> bool:
    return isinstance(record.get("messages"), list) and "request_line" in record and "engine_mode" in record


def skip_reason(record: Record) -> str | None:
    return None if fields.sequence(record, "messages") else f"{SOURCE}: no rule matched"


def parse(record: Record) -> Alert:
    hits = [_hit(m, i) for i, m in enumerate(fields.sequence(record, "messages"))]
    engine = fields.text(record, "engine_mode").upper()
    return waf_alert(
        WafTransaction(
            source=SOURCE,
            sensor_id=fields.text(record, "id"),
            observed_at=fields.apache_time(fields.text(record, "time"), "time"),
            src_ip=fields.ip(record.get("src_ip"), "src_ip"),
            request_line=fields.optional_text(record, "request_line"),
            user_agent=header(record.get("headers"), "User-Agent"),
            hits=hits,
            # The corpus has no response status: blocking mode plus CRS's blocking evaluation is the verdict,
            # and DETECTION_ONLY (the whole published corpus) never blocks.
            blocked=waf_blocked(engine_enabled=engine == "ENABLED", hits=hits, status=None),
            raw=bounded_raw(record, _HUGE),
        )
    )


def _hit(message: Any, index: int) -> RuleHit:
    if not isinstance(message, dict):
        raise IngestError(f"messages[{index}] must be an object")
    return rule_hit(
        rule_id=message.get("id"),
        message=message.get("msg"),
        data=message.get("data"),
        severity=message.get("severity"),
        tags=message.get("tags"),
    )
