"""An incident's records as one JSON document that an auditor can verify away from the database.

The export carries every hashed field plus the incident head, so `verify_export` re-runs the incident-chain
checks on the document alone. A self-consistent export proves nothing against someone who rewrote it: compare
its head hash with the live ledger's (or a published one) to anchor it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from autonomy_controller.controller.ledger.canonical import canonical_json, format_ts
from autonomy_controller.controller.ledger.records import IncidentHead, LedgerRecord
from autonomy_controller.controller.ledger.report import VerifyReport
from autonomy_controller.controller.ledger.verify import StoredRecord, check_incident

EXPORT_FORMAT = "autonomy-ledger-incident/1"
HASH_ALGORITHM = "sha256 over canonical JSON (sorted keys, no whitespace, ASCII escapes) of every field but hash"


class ExportFormatError(ValueError):
    """The document is not an incident export this version understands."""


def build_export(
    incident_key: str, records: Iterable[LedgerRecord], head: IncidentHead | None, exported_at: datetime
) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "hash_algorithm": HASH_ALGORITHM,
        "incident_key": incident_key,
        "exported_at": format_ts(exported_at),
        "head": head.model_dump(mode="json") if head else None,
        "records": [record.to_json_dict() for record in records],
    }


def _stored(doc: Mapping[str, Any]) -> StoredRecord:
    return StoredRecord(
        seq=int(doc["seq"]),
        incident_key=str(doc["incident_key"]),
        kind=str(doc["kind"]),
        actor=str(doc["actor"]),
        payload=canonical_json(doc["payload"]),
        created_at=str(doc["created_at"]),
        prev_hash=str(doc["prev_hash"]),
        incident_prev_hash=str(doc["incident_prev_hash"]),
        idempotency_key=None if doc["idempotency_key"] is None else str(doc["idempotency_key"]),
        hash=str(doc["hash"]),
    )


class _ExportIndex:
    """Look-ups within the export only (other incidents' records are not in it)."""

    def __init__(self, records: list[StoredRecord]) -> None:
        self._by_hash = {r.hash: r.seq for r in records}
        self._by_prev = {r.prev_hash: r.seq for r in records}

    def seq_of_hash(self, hash_: str) -> int | None:
        return self._by_hash.get(hash_)

    def seq_linking_to(self, hash_: str) -> int | None:
        return self._by_prev.get(hash_)


def verify_export(doc: Mapping[str, Any]) -> VerifyReport:
    """Recompute an exported incident's hashes and its chain to its head; raises ExportFormatError if malformed."""
    if doc.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not an {EXPORT_FORMAT} document (format={doc.get('format')!r})")
    try:
        key = str(doc["incident_key"])
        records = [_stored(r) for r in doc["records"]]
        head = IncidentHead.model_validate(doc["head"]) if doc.get("head") is not None else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportFormatError(f"malformed incident export: {exc!r}") from exc
    return check_incident(key, records, head, _ExportIndex(records), scope=f"export:{key}")
