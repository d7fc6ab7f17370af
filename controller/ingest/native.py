"""Our own Alert JSON (`Alert.model_dump(mode="json")`), e.g. from another controller or a custom integration.

It is re-validated against the contract and goes through the same bounding as every other source: a file of
"native" alerts is just as attacker-reachable as a WAF log. The record keeps its own id and source, so
exporting and re-ingesting alerts is lossless and idempotent.
"""

from __future__ import annotations

from pydantic import ValidationError

from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record, aware
from autonomy_controller.controller.ingest.normalise import bounded_raw, describe, make_alert
from autonomy_controller.controller.models import Alert

SOURCE = "native"


def looks_like(record: Record) -> bool:
    return "category" in record and "observed_at" in record


def skip_reason(record: Record) -> str | None:
    return None


def parse(record: Record) -> Alert:
    try:
        alert = Alert.model_validate(record)
    except ValidationError as exc:
        raise IngestError(f"invalid native alert: {describe(exc)}") from None
    fields = alert.model_dump(exclude={"observed_at", "raw", "evidence"})
    return make_alert(
        **fields,
        observed_at=aware(alert.observed_at),
        evidence_text=alert.evidence,
        raw=bounded_raw(alert.raw),
    )
