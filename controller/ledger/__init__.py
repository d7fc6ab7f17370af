"""The audit ledger: append-only, hash-chained records of every step of every incident.

Auditors rely on it to answer "why did this action run" long after the fact, and workflows use it to keep
large or sensitive payloads (raw alerts, LLM transcripts) out of Temporal history: they store the payload
here and pass the record's `seq`. SQLite file by default; PostgreSQL by URL for many workers.

    ledger = Ledger.from_url("sqlite:///var/ledger.db")        # or postgresql+psycopg://...
    rec = ledger.append(incident.key, RecordKind.DECISION, "guard", decision, idempotency_key=f"{wf}:{step}")
    ledger.verify().ok
"""

from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, canonical_json, record_hash
from autonomy_controller.controller.ledger.engine import (
    LedgerConfigError,
    make_engine,
    normalise_url,
    private_schema,
    sqlite_url,
)
from autonomy_controller.controller.ledger.errors import IdempotencyConflict, LedgerError
from autonomy_controller.controller.ledger.excerpts import ExcerptPage, RecordExcerpt
from autonomy_controller.controller.ledger.export import EXPORT_FORMAT, ExportFormatError, verify_export
from autonomy_controller.controller.ledger.records import ChainHead, IncidentHead, LedgerRecord, RecordKind
from autonomy_controller.controller.ledger.report import Problem, ProblemCode, VerifyReport
from autonomy_controller.controller.ledger.store import Ledger

__all__ = [
    "EXPORT_FORMAT",
    "GENESIS_HASH",
    "ChainHead",
    "ExcerptPage",
    "ExportFormatError",
    "IdempotencyConflict",
    "IncidentHead",
    "Ledger",
    "LedgerConfigError",
    "LedgerError",
    "LedgerRecord",
    "Problem",
    "ProblemCode",
    "RecordExcerpt",
    "RecordKind",
    "VerifyReport",
    "canonical_json",
    "make_engine",
    "normalise_url",
    "private_schema",
    "record_hash",
    "sqlite_url",
    "verify_export",
]
