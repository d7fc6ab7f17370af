"""Engines and the two kinds of transaction the ledger needs: a serialised write and a consistent read.

Appends must be strictly one after another, or two workers would both read head N and both write N+1
(a fork in the chain). How that is achieved differs per backend:
- SQLite: `BEGIN IMMEDIATE` takes the database's single write lock before the head is read. Python's
  sqlite3 module would otherwise issue its own deferred BEGIN, so it is put in autocommit mode and the
  BEGIN is emitted here (SQLAlchemy's documented recipe). WAL lets readers run during a write, and the busy
  timeout makes writers in other threads/processes wait instead of failing.
- PostgreSQL: `SELECT ... FOR UPDATE` on the single head row, under READ COMMITTED, so the next appender
  blocks there and then sees the committed new head.
Reads for `verify` run in one snapshot (REPEATABLE READ / a SQLite read transaction) so the head and the
records are read at the same instant even while others append.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection, Engine

from autonomy_controller.controller.ledger.driver import DriverCursor
from autonomy_controller.controller.ledger.schema import create_schema

SQLITE_BUSY_TIMEOUT_S = 60.0
SQLITE_POOL_SIZE = 16
_WRITE = "ledger_write"
_CONFIGURED = "_ledger_configured"
_SCHEMA_LOCK_ID = 0x6C656467  # pg_advisory_xact_lock key for schema creation ("ledg")


class LedgerConfigError(ValueError):
    """The ledger URL cannot give a durable, shareable ledger."""


def sqlite_url(path: str | Path) -> str:
    """URL of a SQLite ledger file (the default backend)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalise_url(url: str) -> str:
    """Pick the psycopg (v3) driver for bare postgresql:// URLs; SQLAlchemy would otherwise want psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@contextmanager
def private_schema(base_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL ledger URL on a new, empty schema `<prefix>_<random>` of the database at base_url, dropped
    afterwards: one database serves many isolated ledgers (tests, benchmarks) without leftovers."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base_url))
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base_url}{'&' if '?' in base_url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for a ledger URL. In-memory SQLite is refused: every thread would see its own empty DB."""
    parsed = make_url(normalise_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in str(parsed):
            raise LedgerConfigError("an in-memory SQLite ledger is not durable nor shared between threads: use a file")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        connect_args.update(kwargs.pop("connect_args", {}))
        # A worker's activity threads each hold one while they work: SQLAlchemy's default of 5 closed and reopened
        # connections (file, WAL index, pragmas) several times per incident under load.
        kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    elif backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, **kwargs)
    else:
        raise LedgerConfigError(f"unsupported ledger backend {backend!r}: use sqlite:///path or postgresql+psycopg://")
    configure_engine(engine)
    return engine


def configure_engine(engine: Engine) -> None:
    """Install the SQLite transaction hooks on an engine, once. Safe to call on any engine."""
    if engine.dialect.name != "sqlite" or getattr(engine, _CONFIGURED, False):
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")  # an audit record acknowledged is an audit record kept
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        # on the driver's cursor: every transaction begins here, and exec_driver_sql's own cost was ~3x the BEGIN's
        DriverCursor(conn).execute("BEGIN IMMEDIATE" if write else "BEGIN")

    setattr(engine, _CONFIGURED, True)
    engine.dispose()  # connections pooled before the hooks existed would skip them


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, waiting as long as the busy timeout for a writer to finish. SQLite answers
    this pragma "database is locked" at once, without its busy timeout, while another connection writes a database
    still in rollback mode: two processes opening a new ledger together (a CI run saw it)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the ledger's write lock (SQLite) or may take it (PostgreSQL, see lock_head)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{_WRITE: True})
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="READ COMMITTED")
        with conn.begin():
            yield conn


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction that sees one consistent state of the ledger."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def install_schema(engine: Engine) -> None:
    """Create tables and guards once, even when many workers start together."""
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalogs.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_ID})
        create_schema(conn)
