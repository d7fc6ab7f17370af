"""The cross-incident safety counters (controller/decision/safety.py) on both backends: the circuit breaker counts
failures inside its window only, and budgets count reservations per incident and per window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from autonomy_controller.controller.decision.levels import Budget, CircuitBreaker
from autonomy_controller.controller.decision.safety import SafetyStore
from autonomy_controller.controller.ledger import Ledger, RecordKind, sqlite_url
from autonomy_controller.controller.ledger.driver import driver_read
from autonomy_controller.controller.models import ActionClass, Level
from tests.test_ledger import ledger_url  # noqa: F401  (the both-backends fixture)
from tests.test_ledger_query_plans import query_plans, traced_statements

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(ledger_url: str) -> Iterator[SafetyStore]:  # noqa: F811
    with Ledger.from_url(ledger_url) as ledger:
        yield SafetyStore(ledger.engine)


def test_the_breaker_counts_the_failures_inside_its_window_only(store: SafetyStore) -> None:
    breaker = CircuitBreaker(window_seconds=600, max_failures=2, lower_to=Level.L1)
    store.record_failure(ActionClass.CONTAIN_NETWORK, "inc-1", "old", now=NOW - timedelta(seconds=601))
    store.record_failure(ActionClass.CONTAIN_NETWORK, "inc-1", "recent", now=NOW - timedelta(seconds=5))
    assert store.health_cap(breaker, now=NOW) is None  # one failure in the window, the other before it
    store.record_failure(ActionClass.CONTAIN_NETWORK, "inc-2", "newest", now=NOW - timedelta(seconds=1))
    cap = store.health_cap(breaker, now=NOW)
    assert cap is not None and cap.level is Level.L1 and "2 failed" in cap.why
    assert store.health_cap(breaker, now=NOW + timedelta(seconds=600)) is None  # both aged out


def test_a_failure_is_counted_once_per_key(store: SafetyStore) -> None:
    breaker = CircuitBreaker(window_seconds=600, max_failures=2, lower_to=Level.L1)
    for _ in range(3):  # a retried verification
        store.record_failure(ActionClass.CONTAIN_NETWORK, "inc-1", "same", now=NOW)
    assert store.health_cap(breaker, now=NOW) is None


def test_budgets_count_per_incident_and_per_window(store: SafetyStore) -> None:
    budget = Budget(per_incident=1, per_window=2, window_seconds=3600)
    assert store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-1", "a", now=NOW).granted
    assert store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-1", "a", now=NOW).granted  # a retry: its grant
    assert not store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-1", "b", now=NOW).granted
    assert store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-2", "c", now=NOW).granted
    refused = store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-3", "d", now=NOW)
    assert not refused.granted and "2 of 2" in refused.reason
    later = NOW + timedelta(seconds=3601)
    assert store.reserve(budget, ActionClass.CONTAIN_HOST, "inc-3", "d", now=later).granted


def test_a_driver_error_reaches_callers_as_sqlalchemy_raises_it(ledger_url: str) -> None:  # noqa: F811
    """The ledger's hot statements run on the driver's cursor (controller/ledger/driver.py); callers catch
    SQLAlchemy's error classes (the HTTP ingest's 503, the investigate adapter's retry), so a driver error must
    arrive as one of them."""
    with Ledger.from_url(ledger_url) as ledger:
        ledger.append("inc-1", RecordKind.ALERT, "ingest", {"id": "a"}, idempotency_key="k")
        with driver_read(ledger.engine) as cursor, pytest.raises(IntegrityError):
            cursor.scalar(
                f"INSERT INTO ledger_incident_head (incident_key, seq, hash, count) VALUES "
                f"({cursor.p('k')}, 1, 'x', 1)",
                {"k": "inc-1"},  # the incident has a head already
            )


def test_every_count_seeks_by_an_index_on_sqlite(tmp_path: Path) -> None:
    """The breaker asks before every decision, and a budget before every reservation: their counts must seek, not
    walk the table (the per-incident budget scanned every reservation ever made). A ledger made before the indexes
    gets them when the store opens it."""
    path = tmp_path / "ledger.db"
    with Ledger.from_url(sqlite_url(path)) as ledger:
        SafetyStore(ledger.engine)
        with ledger.engine.begin() as conn:  # as an older version left it
            for index in ("ix_safety_events_event_class_at", "ix_safety_events_incident"):
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
        store = SafetyStore(ledger.engine)
        statements = traced_statements(ledger.engine)
        budget = Budget(per_incident=5, per_window=50, window_seconds=3600)
        for n in range(20):
            store.reserve(budget, ActionClass.CONTAIN_HOST, f"inc-{n % 4}", f"r{n}", now=NOW)
        store.health_cap(CircuitBreaker(window_seconds=600, max_failures=2, lower_to=Level.L1), now=NOW)
    counts = [sql for sql in statements if "count(" in sql.lower()]
    assert len(counts) == 41  # two per reservation, one for the breaker
    for sql, plan in query_plans(path, counts).items():
        assert "USING COVERING INDEX ix_safety_events_" in plan, (sql, plan)
