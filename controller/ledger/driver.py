"""The ledger's hot statements, run on the database driver's own cursor.

Each append reads the chain head, the incident's head and its idempotency key, inserts, and moves both heads;
each step of an incident reads records by key or by incident. Through SQLAlchemy's Core a statement costs
~40 us of Python before the driver sees it (execution context, events, result proxy): in bench.loop that was
~16% of the worker's CPU, the driver's own work a fifth of it. These statements are fixed text, so they run on
the DBAPI cursor of the connection SQLAlchemy opened, inside its transaction (the same lock, the same
isolation); everything else keeps SQLAlchemy. The SQL is the same on both backends but for the parameter style
(sqlite3: `:name`, psycopg: `%(name)s`), the head's row lock and how a timestamp is bound (below).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError

from autonomy_controller.controller.ledger.canonical import HASH_FIELDS
from autonomy_controller.controller.ledger.schema import RECORDS_TABLE

RECORD_COLUMNS = (*HASH_FIELDS, "hash")
_SELECT = f"SELECT {', '.join(RECORD_COLUMNS)} FROM {RECORDS_TABLE}"
_SAVEPOINT = "ledger_request"


@contextmanager
def driver_read(engine: Engine) -> Iterator[DriverCursor]:
    """A cursor on a pooled connection outside any transaction of ours, for a read of one statement: a single
    statement sees one consistent state on both backends (SQLite takes a read snapshot per statement; PostgreSQL
    runs it in a transaction of its own), so it needs no `read_snapshot` around it."""
    raw = engine.raw_connection()
    try:
        yield DriverCursor.of(engine.dialect, raw.cursor())
    finally:
        raw.close()  # back to the pool, which ends the driver's implicit transaction (PostgreSQL)


class DriverCursor:
    """A driver cursor with the ledger's statements in that driver's parameter style: on the connection of a
    SQLAlchemy Connection (inside its transaction), or from `driver_read`."""

    def __init__(self, conn: Connection) -> None:
        self._on(conn.dialect, conn.connection.cursor())

    @classmethod
    def of(cls, dialect: Dialect, cursor: Any) -> DriverCursor:
        self = cls.__new__(cls)
        self._on(dialect, cursor)
        return self

    def _on(self, dialect: Dialect, cursor: Any) -> None:
        self.postgres = dialect.name == "postgresql"
        self._cursor = cursor
        self._driver_error: type[Exception] = dialect.dbapi.Error  # type: ignore[union-attr]  # a DBAPI module

    def execute(self, sql: str, params: Any = None, many: bool = False) -> None:
        """Run on the cursor; a driver error is raised as SQLAlchemy raises it (OperationalError, IntegrityError,
        ...: what callers catch), so taking this path changes no caller's error handling."""
        try:
            if many:
                self._cursor.executemany(sql, params)
            elif params is None:
                self._cursor.execute(sql)
            else:
                self._cursor.execute(sql, params)
        except self._driver_error as exc:
            raise DBAPIError.instance(sql, params, exc, self._driver_error) from exc

    def p(self, name: str) -> str:
        """The placeholder of the parameter `name`."""
        return f"%({name})s" if self.postgres else f":{name}"

    def _in(self, prefix: str, values: Sequence[str], params: dict[str, Any]) -> str:
        names = [f"{prefix}{n}" for n in range(len(values))]
        params.update(zip(names, values, strict=True))
        return ", ".join(self.p(name) for name in names)

    def rows(self, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.execute(sql, params)
        names = [column[0] for column in self._cursor.description]
        return [dict(zip(names, row, strict=True)) for row in self._cursor.fetchall()]

    def scalar(self, sql: str, params: Mapping[str, Any]) -> Any:
        self.execute(sql, params)
        row = self._cursor.fetchone()
        return None if row is None else row[0]

    def timestamp(self, value: datetime) -> datetime | str:
        """A UTC time as SQLAlchemy's DateTime binds it: PostgreSQL takes the aware value; SQLite stores the
        digits without the zone (reads take them as UTC)."""
        if self.postgres:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    # -- the chain's heads -------------------------------------------------------------------------------------

    def lock_head(self) -> tuple[int, str]:
        """The chain head, locked until the transaction ends (PostgreSQL's row lock; on SQLite, BEGIN IMMEDIATE
        holds the database's write lock already)."""
        lock = " FOR UPDATE" if self.postgres else ""
        self.execute(f"SELECT seq, hash FROM ledger_head WHERE id = 1{lock}")
        seq, hash_ = self._cursor.fetchone()
        return int(seq), str(hash_)

    def head_seq(self) -> int:
        """The chain head's seq (0 when its row is gone: `verify` names that)."""
        return int(self.scalar("SELECT seq FROM ledger_head WHERE id = 1", {}) or 0)

    def move_head(self, seq: int, hash_: str) -> None:
        self.execute(
            f"UPDATE ledger_head SET seq = {self.p('seq')}, hash = {self.p('hash')} WHERE id = 1",
            {"seq": seq, "hash": hash_},
        )

    def incident_heads(self, incident_keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Hash and record count of each incident's head, for those that have one."""
        if not incident_keys:
            return {}
        params: dict[str, Any] = {}
        sql = (
            'SELECT incident_key, hash, "count" FROM ledger_incident_head '
            f"WHERE incident_key IN ({self._in('k', incident_keys, params)})"
        )
        return {row["incident_key"]: (row["hash"], int(row["count"])) for row in self.rows(sql, params)}

    def add_incident_heads(self, heads: Sequence[Mapping[str, Any]]) -> None:
        """Each of {incident_key, seq, hash, count}."""
        columns = ("incident_key", "seq", "hash", "count")
        self.execute(
            'INSERT INTO ledger_incident_head (incident_key, seq, hash, "count") '
            f"VALUES ({', '.join(self.p(c) for c in columns)})",
            heads,
            many=True,
        )

    def move_incident_heads(self, heads: Sequence[Mapping[str, Any]]) -> None:
        """Each of {incident_key, seq, hash, count}."""
        self.execute(
            f'UPDATE ledger_incident_head SET seq = {self.p("seq")}, hash = {self.p("hash")}, "count" = '
            f"{self.p('count')} WHERE incident_key = {self.p('incident_key')}",
            heads,
            many=True,
        )

    # -- records -----------------------------------------------------------------------------------------------

    def insert_records(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Each row of RECORD_COLUMNS, created_at as `timestamp` gives it."""
        values = ", ".join(self.p(c) for c in RECORD_COLUMNS)
        self.execute(f"INSERT INTO {RECORDS_TABLE} ({', '.join(RECORD_COLUMNS)}) VALUES ({values})", rows, many=True)

    def records_by_keys(self, idempotency_keys: Sequence[str]) -> list[dict[str, Any]]:
        if not idempotency_keys:
            return []
        if len(idempotency_keys) == 1:
            return self.rows(f"{_SELECT} WHERE idempotency_key = {self.p('key')}", {"key": idempotency_keys[0]})
        params: dict[str, Any] = {}
        return self.rows(f"{_SELECT} WHERE idempotency_key IN ({self._in('k', idempotency_keys, params)})", params)

    def _incident_where(self, incident_key: str, kinds: Sequence[str] | None, params: dict[str, Any]) -> str:
        params["incident_key"] = incident_key
        where = f"incident_key = {self.p('incident_key')}"
        if kinds is not None:
            where += f" AND kind IN ({self._in('kind', kinds, params)})" if kinds else " AND 1 = 0"
        return where

    def incident_count(self, incident_key: str, kinds: Sequence[str] | None) -> int:
        params: dict[str, Any] = {}
        where = self._incident_where(incident_key, kinds, params)
        return int(self.scalar(f"SELECT count(*) FROM {RECORDS_TABLE} WHERE {where}", params))

    def incident_records(
        self, incident_key: str, kinds: Sequence[str] | None, latest: int | None = None
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        where = self._incident_where(incident_key, kinds, params)
        if latest is None:
            return self.rows(f"{_SELECT} WHERE {where} ORDER BY seq", params)
        params["latest"] = latest
        newest_first = self.rows(f"{_SELECT} WHERE {where} ORDER BY seq DESC LIMIT {self.p('latest')}", params)
        return newest_first[::-1]

    # -- one request's writes inside a shared transaction -------------------------------------------------------

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """The writes inside are undone on an error (raised on), the transaction's others kept."""
        self.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            self.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
            raise
        self.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
