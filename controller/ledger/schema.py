"""The ledger's tables (SQLModel) and the database-side guards installed with them.

`seq` is assigned by the appender under a lock, not by a SERIAL/AUTOINCREMENT: PostgreSQL sequences skip
numbers on rollback, and a gap must mean "a row was deleted", never "a transaction aborted".
The payload is stored as its canonical JSON text (not JSONB), so the bytes hashed are the bytes stored.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Table, Text, inspect, text
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from autonomy_controller.controller.ledger.canonical import GENESIS_HASH

RECORDS_TABLE = "ledger_record"
KIND_SEQ_INDEX = "ix_ledger_record_kind_seq"
INCIDENT_KIND_SEQ_INDEX = "ix_ledger_record_incident_kind_seq"


class RecordRow(SQLModel, table=True):
    __tablename__ = RECORDS_TABLE
    __table_args__ = (Index("ix_ledger_record_incident_seq", "incident_key", "seq"),)

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    incident_key: str = Field(sa_column=Column(String(512), nullable=False))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    actor: str = Field(sa_column=Column(String(256), nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    incident_prev_hash: str = Field(sa_column=Column(String(64), nullable=False))
    idempotency_key: str | None = Field(default=None, sa_column=Column(String(512), unique=True, nullable=True))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class HeadRow(SQLModel, table=True):
    """Single row (id=1): the chain head, and on PostgreSQL the row whose lock serialises appends."""

    __tablename__ = "ledger_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))


class IncidentHeadRow(SQLModel, table=True):
    __tablename__ = "ledger_incident_head"

    incident_key: str = Field(sa_column=Column(String(512), primary_key=True))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    hash: str = Field(sa_column=Column(String(64), nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))


class AttackerProfileRow(SQLModel, table=True):
    """One attacker profile (controller/attackers/): a view folded from the ledger, not part of the chain.

    Rows are rewritten and evicted (docs/attackers.md); the ledger records they cite stay. The profile itself is
    one JSON document (`profile`); the columns are what lists sort and eviction orders by."""

    __tablename__ = "attacker_profile"
    __table_args__ = (Index("ix_attacker_profile_evict", "connected_rank", "last_seen", "address"),)

    address: str = Field(sa_column=Column(String(64), primary_key=True))
    network: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    stage_rank: int = Field(sa_column=Column(Integer, nullable=False))
    connected_rank: int = Field(sa_column=Column(Integer, nullable=False))
    """The stage reached on connected evidence (eviction's order): forged packets' stages pin no address."""
    first_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    alerts: int = Field(sa_column=Column(BigInteger, nullable=False))
    through_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    profile: str = Field(sa_column=Column(Text, nullable=False))


class AttackerHintRow(SQLModel, table=True):
    """A linking hint (same /24 or /64, same User-Agent) between profiles: never proof of one actor."""

    __tablename__ = "attacker_hint"
    __table_args__ = (Index("ix_attacker_hint_address", "address"),)

    kind: str = Field(sa_column=Column(String(16), primary_key=True))
    value: str = Field(sa_column=Column(String(128), primary_key=True))
    address: str = Field(sa_column=Column(String(64), primary_key=True))


class AttackerCursorRow(SQLModel, table=True):
    """Single row (id=1): the last ledger seq folded into the profiles, and the profile count for eviction."""

    __tablename__ = "attacker_cursor"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    through: int = Field(sa_column=Column(BigInteger, nullable=False))
    profiles: int = Field(sa_column=Column(BigInteger, nullable=False))
    evicted: int = Field(sa_column=Column(BigInteger, nullable=False))


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


records: Table = _table(RecordRow)
head: Table = _table(HeadRow)
incident_heads: Table = _table(IncidentHeadRow)
TABLES = (records, head, incident_heads)
attacker_profiles: Table = _table(AttackerProfileRow)
attacker_hints: Table = _table(AttackerHintRow)
attacker_cursor: Table = _table(AttackerCursorRow)
ATTACKER_TABLES = (attacker_profiles, attacker_hints, attacker_cursor)
"""Attacker profiles (controller/attackers/): derived from the ledger, rewritable, outside the hash chain."""

_SQLITE_GUARDS = [
    f"""CREATE TRIGGER IF NOT EXISTS {RECORDS_TABLE}_no_{op.lower()} BEFORE {op} ON {RECORDS_TABLE}
    BEGIN SELECT RAISE(ABORT, '{RECORDS_TABLE} is append-only: {op} rejected'); END"""
    for op in ("UPDATE", "DELETE")
]

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {RECORDS_TABLE}_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{RECORDS_TABLE} is append-only: % rejected', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$"""

_PG_TRIGGERS = {
    f"{RECORDS_TABLE}_append_only": f"BEFORE UPDATE OR DELETE ON {RECORDS_TABLE} FOR EACH ROW",
    f"{RECORDS_TABLE}_no_truncate": f"BEFORE TRUNCATE ON {RECORDS_TABLE} FOR EACH STATEMENT",
}


def _drop_outdated_profiles(conn: Connection) -> None:
    """Profiles folded by a version without `connected_rank` are rebuilt: they are a view of the ledger (its records
    are untouched), refolded from seq 0 by the next fold with the rules they lacked."""
    schema = inspect(conn)
    columns = schema.get_columns(attacker_profiles.name) if schema.has_table(attacker_profiles.name) else []
    if columns and "connected_rank" not in {c["name"] for c in columns}:
        for table in reversed(ATTACKER_TABLES):
            table.drop(conn)


def create_schema(conn: Connection) -> None:
    """Create the tables, the head row and the append-only triggers; idempotent, run inside the write lock.

    The triggers are defence in depth only: an owner or superuser can drop them, which is why `verify`
    recomputes the chain rather than trusting the database to have refused edits.
    """
    _drop_outdated_profiles(conn)
    SQLModel.metadata.create_all(conn, tables=[*TABLES, *ATTACKER_TABLES])
    # Views that fold the ledger by kind (controller/ledger/excerpts.py) seek here instead of reading every row;
    # IF NOT EXISTS also adds it to ledgers created before it existed. Not hashed, not checked by verify.
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {KIND_SEQ_INDEX} ON {RECORDS_TABLE} (kind, seq)")
    # An incident's records of some kinds (its alerts, per batch and per plan): without this SQLite seeks by kind
    # alone and reads every alert of every incident, so each step slowed as the ledger grew (bench.loop's rounds).
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS {INCIDENT_KIND_SEQ_INDEX} ON {RECORDS_TABLE} (incident_key, kind, seq)"
    )
    conn.execute(
        text("INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, :genesis) ON CONFLICT (id) DO NOTHING"),
        {"genesis": GENESIS_HASH},
    )
    conn.execute(
        text(
            "INSERT INTO attacker_cursor (id, through, profiles, evicted) VALUES (1, 0, 0, 0) "
            "ON CONFLICT (id) DO NOTHING"
        )
    )
    if conn.dialect.name == "sqlite":
        for ddl in _SQLITE_GUARDS:
            conn.exec_driver_sql(ddl)
    elif conn.dialect.name == "postgresql":
        conn.execute(text(_PG_FUNCTION))  # text() escapes the % for psycopg
        for name, when in _PG_TRIGGERS.items():
            exists = conn.execute(
                text("SELECT 1 FROM pg_trigger WHERE tgname = :name AND tgrelid = CAST(:table AS regclass)"),
                {"name": name, "table": RECORDS_TABLE},
            ).first()
            if exists is None:
                conn.exec_driver_sql(f"CREATE TRIGGER {name} {when} EXECUTE FUNCTION {RECORDS_TABLE}_reject_mutation()")
