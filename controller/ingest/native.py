"""Our own Alert JSON (`Alert.model_dump(mode="json")`), e.g. from another controller or a custom integration.

It is re-validated against the contract and goes through the same bounding as every other source: a file of
"native" alerts is just as attacker-reachable as a WAF log. The record keeps its own id and source, so
exporting and re-ingesting alerts is idempotent.

A native record is a claim (docs/sensors.md, "Provenance"): anyone who can write to the channel can write any
`source` and any `raw`. So its provenance is `claim` and triage reads none of its raw as sensor facts, unless
the operator declared the channel a trusted feed for that source (`--trust-native SOURCE`, a token's
`trust_native`). The record's own `provenance` key, if any, is ignored: only the parser sets it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record, aware
from autonomy_controller.controller.ingest.normalise import bounded_raw, describe, identifier, make_alert
from autonomy_controller.controller.models import Alert, Provenance

SOURCE = "native"
PROVENANCE_KEY = "provenance"
TrustedSources = frozenset[str]
"""The `source` values one channel's native records may speak for (read as that sensor's facts)."""
TRUST_NOTHING: TrustedSources = frozenset()


def trusted_sources(names: Iterable[str]) -> TrustedSources:
    """An operator's `--trust-native` names, checked as the identifiers a `source` can be; ValueError naming the
    bad one. `native` itself is refused: it names no sensor."""
    found: set[str] = set()
    for name in names:
        try:
            checked = identifier("source", name)
        except IngestError as exc:
            raise ValueError(f"--trust-native {name!r}: {exc.problem}") from None
        if not checked or checked == SOURCE:
            raise ValueError(f"--trust-native {name!r}: name a sensor source (auth-log, modsecurity3, suricata, ...)")
        found.add(checked)
    return frozenset(found)


def looks_like(record: Record) -> bool:
    return "category" in record and "observed_at" in record


def skip_reason(record: Record) -> str | None:
    return None


def provenance(alert: Alert, trusted: TrustedSources) -> Provenance:
    return Provenance.TRUSTED_FEED if alert.source in trusted else Provenance.CLAIM


def parse(record: Record) -> Alert:
    try:
        alert = Alert.model_validate({k: v for k, v in record.items() if k != PROVENANCE_KEY})
    except ValidationError as exc:
        raise IngestError(f"invalid native alert: {describe(exc)}") from None
    fields = alert.model_dump(exclude={"observed_at", "raw", "evidence", PROVENANCE_KEY})
    return make_alert(
        **fields,
        observed_at=aware(alert.observed_at),
        evidence_text=alert.evidence,
        raw=bounded_raw(alert.raw),
    )
