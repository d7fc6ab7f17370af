"""Reading records back: as LedgerRecords for callers, as StoredRecords (raw) for verify."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, String, select, type_coerce
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger import schema
from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, format_ts
from autonomy_controller.controller.ledger.driver import DriverCursor
from autonomy_controller.controller.ledger.errors import LedgerError
from autonomy_controller.controller.ledger.records import ChainHead, IncidentHead, LedgerRecord
from autonomy_controller.controller.ledger.verify import StoredRecord

_BATCH = 1000


class DbIndex:
    """Explains mismatches by asking where a hash sits in the chain (table scans; used a few times at most)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def seq_of_hash(self, hash_: str) -> int | None:
        return self._conn.execute(select(schema.records.c.seq).where(schema.records.c.hash == hash_).limit(1)).scalar()

    def seq_linking_to(self, hash_: str) -> int | None:
        query = select(schema.records.c.seq).where(schema.records.c.prev_hash == hash_).limit(1)
        return self._conn.execute(query).scalar()


def stream(conn: Connection, incident_key: str | None = None) -> Iterator[StoredRecord]:
    """Records in seq order, in batches (keyset pagination), so verifying a large ledger uses little memory."""
    after = 0
    while True:
        query = select_records(conn).where(schema.records.c.seq > after)
        if incident_key is not None:
            query = query.where(schema.records.c.incident_key == incident_key)
        rows = conn.execute(query.order_by(schema.records.c.seq).limit(_BATCH)).all()
        for row in rows:
            m = row._mapping
            yield StoredRecord(
                seq=m["seq"],
                incident_key=m["incident_key"],
                kind=m["kind"],
                actor=m["actor"],
                payload=m["payload"],
                created_at=_timestamp_text(m["created_at"]),
                prev_hash=m["prev_hash"],
                incident_prev_hash=m["incident_prev_hash"],
                idempotency_key=m["idempotency_key"],
                hash=m["hash"],
            )
        if len(rows) < _BATCH:
            return
        after = rows[-1].seq


def read_head(conn: Connection) -> ChainHead:
    row = conn.execute(select(schema.head.c.seq, schema.head.c.hash).where(schema.head.c.id == 1)).first()
    if row is None:  # the head row itself was deleted: report an empty head so verify names the missing tail
        return ChainHead(seq=0, hash=GENESIS_HASH)
    return ChainHead(seq=row.seq, hash=row.hash)


def read_incident_head(conn: Connection, incident_key: str) -> IncidentHead | None:
    row = conn.execute(
        select(schema.incident_heads).where(schema.incident_heads.c.incident_key == incident_key)
    ).first()
    return IncidentHead.model_validate(row._mapping) if row else None


def read_incident_heads(conn: Connection) -> list[IncidentHead]:
    rows = conn.execute(select(schema.incident_heads).order_by(schema.incident_heads.c.seq))
    return [IncidentHead.model_validate(row._mapping) for row in rows]


def incident_records(conn: Connection, incident_key: str, kinds: list[str] | None = None) -> list[LedgerRecord]:
    return [to_record(row) for row in DriverCursor(conn).incident_records(incident_key, kinds)]


def first_record(conn: Connection, condition: Any) -> LedgerRecord | None:
    row = conn.execute(select_records(conn).where(condition).limit(1)).first()
    return to_record(row._mapping) if row else None


def select_records(conn: Connection) -> Select[Any]:
    """All record columns; on SQLite created_at comes back as the stored text, because SQLite stores whatever
    an editor writes there and SQLAlchemy's parser would raise mid-verify instead of reporting the record."""
    if conn.dialect.name != "sqlite":
        return select(schema.records)
    columns = [c for c in schema.records.c if c.name != "created_at"]
    return select(*columns, type_coerce(schema.records.c.created_at, String).label("created_at"))


def _parse_timestamp(value: datetime | str) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _timestamp_text(value: datetime | str) -> str:
    """The hashed spelling of a stored timestamp; an unparsable one is kept verbatim so its hash mismatches."""
    try:
        return format_ts(_parse_timestamp(value))
    except ValueError:
        return str(value)


def to_record(row: Mapping[Any, Any]) -> LedgerRecord:
    m = dict(row)
    try:
        m["created_at"] = _parse_timestamp(m["created_at"])
        m["payload"] = json.loads(m["payload"])
        return LedgerRecord.model_validate(m)
    except (ValueError, ValidationError) as exc:
        raise LedgerError(f"record {m.get('seq')} is unreadable ({exc}); run verify") from exc
