"""Reading records back: as LedgerRecords for callers, as StoredRecords (raw) for verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Row, Select, String, bindparam, select, type_coerce
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger import schema
from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, format_ts
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
    if kinds is None:
        rows = conn.execute(_statements(conn).of_incident, {"incident_key": incident_key})
    else:
        rows = conn.execute(_statements(conn).of_incident_kinds, {"incident_key": incident_key, "kinds": kinds})
    return [to_record(row) for row in rows]


def first_record(conn: Connection, condition: Any) -> LedgerRecord | None:
    row = conn.execute(select_records(conn).where(condition).limit(1)).first()
    return to_record(row) if row else None


def record_by_key(conn: Connection, idempotency_key: str) -> LedgerRecord | None:
    """The record an idempotency key names, if any (every append looks its key up: one prepared statement)."""
    row = conn.execute(_statements(conn).by_key, {"key": idempotency_key}).first()
    return to_record(row) if row else None


def records_by_keys(conn: Connection, idempotency_keys: list[str]) -> list[LedgerRecord]:
    return [to_record(row) for row in conn.execute(_statements(conn).by_keys, {"keys": idempotency_keys})]


def select_records(conn: Connection) -> Select[Any]:
    """All record columns; on SQLite created_at comes back as the stored text, because SQLite stores whatever
    an editor writes there and SQLAlchemy's parser would raise mid-verify instead of reporting the record."""
    return _statements(conn).records


class _Statements:
    """The hot reads, built once per dialect with bound parameters: SQLAlchemy then finds each compiled in its
    cache from the statement object, instead of building a statement and its cache key on every call (in
    bench.loop's profile that was most of an append's Python time, the database's own work a tenth of it)."""

    def __init__(self, dialect: str) -> None:
        c = schema.records.c
        self.records = _all_columns(dialect)
        self.by_key = self.records.where(c.idempotency_key == bindparam("key")).limit(1)
        self.by_keys = self.records.where(c.idempotency_key.in_(bindparam("keys", expanding=True)))
        of_incident = self.records.where(c.incident_key == bindparam("incident_key"))
        self.of_incident = of_incident.order_by(c.seq)
        self.of_incident_kinds = of_incident.where(c.kind.in_(bindparam("kinds", expanding=True))).order_by(c.seq)


def _all_columns(dialect: str) -> Select[Any]:
    if dialect != "sqlite":
        return select(schema.records)
    columns = [c for c in schema.records.c if c.name != "created_at"]
    return select(*columns, type_coerce(schema.records.c.created_at, String).label("created_at"))


_BY_DIALECT: dict[str, _Statements] = {}


def _statements(conn: Connection) -> _Statements:
    found = _BY_DIALECT.get(conn.dialect.name)
    if found is None:  # a race builds it twice, harmlessly
        found = _BY_DIALECT[conn.dialect.name] = _Statements(conn.dialect.name)
    return found


def _parse_timestamp(value: datetime | str) -> datetime:
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _timestamp_text(value: datetime | str) -> str:
    """The hashed spelling of a stored timestamp; an unparsable one is kept verbatim so its hash mismatches."""
    try:
        return format_ts(_parse_timestamp(value))
    except ValueError:
        return str(value)


def to_record(row: Row[Any]) -> LedgerRecord:
    m = dict(row._mapping)
    try:
        m["created_at"] = _parse_timestamp(m["created_at"])
        m["payload"] = json.loads(m["payload"])
        return LedgerRecord.model_validate(m)
    except (ValueError, ValidationError) as exc:
        raise LedgerError(f"record {m.get('seq')} is unreadable ({exc}); run verify") from exc
