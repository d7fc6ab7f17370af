"""Every read of one incident's records seeks by the incident, never by kind alone.

A read of an incident's alerts that SQLite answered from the (kind, seq) index walked every alert of every incident:
the Submitter's tally per batch, the plan step's alerts and the report each grew slower as the ledger grew. The
statements the ledger runs are captured as SQLite executes them and their plans asked of SQLite itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from autonomy_controller.controller.case.digest import CaseRef
from autonomy_controller.controller.ledger import Ledger, RecordKind, sqlite_url
from autonomy_controller.controller.ledger.cases import case_alerts, tally
from autonomy_controller.controller.ledger.observations import case_records, observation_key
from autonomy_controller.controller.oversight.attacker_timeline import read_timeline
from tests.harness import alert

KEY = "src:198.51.100.66"


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[Ledger, list[str]]]:
    path = tmp_path / "ledger.db"
    with Ledger.from_url(sqlite_url(path)) as ledger:
        for n in range(40):  # other incidents' alerts and notes, so a scan by kind would have rows to walk
            key = KEY if n % 4 == 0 else f"src:203.0.113.{n}"
            ledger.append(key, RecordKind.ALERT, "ingest", alert(n).model_dump(mode="json"), idempotency_key=f"a{n}")
            ledger.append(key, RecordKind.PLAN, "planner:offline", {"actions": []}, idempotency_key=f"p{n}")
        yield ledger, traced_statements(ledger.engine)


def traced_statements(engine: Engine) -> list[str]:
    """The SQL each of the engine's connections runs from now on, its parameters in place (SQLite)."""
    statements: list[str] = []

    def trace(dbapi: sqlite3.Connection, _record: Any) -> None:
        dbapi.set_trace_callback(statements.append)

    event.listen(engine, "connect", trace)
    engine.dispose()  # pooled connections opened before the listener would not trace
    return statements


def query_plans(path: str | Path, statements: Iterable[str]) -> dict[str, str]:
    """Each statement with SQLite's plan for it, its steps joined by " / "."""
    db = sqlite3.connect(path)
    try:
        return {sql: " / ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")) for sql in statements}
    finally:
        db.close()


def test_reads_of_one_incident_seek_by_the_incident(traced: tuple[Ledger, list[str]]) -> None:
    ledger, statements = traced
    alerts = ledger.records(KEY, [RecordKind.ALERT])
    assert len(alerts) == 10
    ledger.records(KEY, [RecordKind.ALERT, RecordKind.PLAN])
    ledger.records(KEY)
    assert ledger.count(KEY, [RecordKind.ALERT]) == 10
    assert tally(ledger, KEY, [alerts[-1].seq]) is not None
    case_alerts(ledger, CaseRef(key=KEY, floor_seq=alerts[0].seq, through_seq=alerts[-1].seq, alerts=10))
    case_records(ledger, KEY)
    read_timeline(ledger, "198.51.100.66")
    ours = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT") and "198.51.100.66" in sql]
    plans = query_plans(str(ledger.engine.url.database), ours)
    assert len(plans) >= 8, plans
    for sql, plan in plans.items():
        assert "incident_key=?" in plan, f"{sql}\n  {plan}"


def test_the_latest_lines_of_a_source_are_read_back_from_the_newest_by_the_index(
    traced: tuple[Ledger, list[str]],
) -> None:
    """A source floods its access log: its case reads only its latest lines (observations.CASE_LINES_MAX), and
    SQLite walks the index back from the newest, never sorting all of them."""
    ledger, statements = traced
    address = "198.51.100.66"
    for n in range(6):
        line = alert(100 + n, address, source="nginx-access").model_dump(mode="json")
        ledger.append(observation_key(address), RecordKind.ACCESS, "ingest", line)
    latest = case_records(ledger, KEY, latest=4)
    assert [r.payload["id"] for r in latest] == [f"a-{address}-{n}" for n in range(102, 106)]
    (sql,) = [s for s in statements if " LIMIT " in s.upper() and observation_key(address) in s]
    plan = query_plans(str(ledger.engine.url.database), [sql])[sql]
    assert "incident_key=?" in plan and "TEMP B-TREE" not in plan, plan
