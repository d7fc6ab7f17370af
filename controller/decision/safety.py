"""Cross-incident safety state: blast-radius budgets and the circuit breaker's failure count.

Both must hold across every workflow and worker, so they live in the ledger's database (SQLite or
PostgreSQL), in a table of their own: a budget check and its reservation are one serialised transaction, so
two workflows racing for the last isolation of the hour cannot both get it. The audit trail of each
reservation or refusal is written to the ledger by the caller; this table is only the counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.engine import Connection, Engine

from autonomy_controller.controller.decision.levels import Budget, CircuitBreaker, HealthCap
from autonomy_controller.controller.ledger.driver import driver_read
from autonomy_controller.controller.ledger.engine import write_transaction
from autonomy_controller.controller.models import ActionClass

_metadata = MetaData()
safety_events = Table(
    "safety_events",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event", String(32), nullable=False),
    Column("action_class", String(32), nullable=False),
    Column("incident_key", String(256), nullable=False),
    Column("idempotency_key", String(512), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    # The counts each decision and reservation makes seek by these: without them the per-incident budget walked
    # every reservation ever made, and the breaker's every reservation in its window.
    Index("ix_safety_events_event_class_at", "event", "action_class", "at"),
    Index("ix_safety_events_incident", "incident_key", "event", "action_class"),
)
_LOCK_ID = 0x73616665  # pg_advisory_xact_lock key serialising budget checks ("safe")


class SafetyEvent(StrEnum):
    RESERVED = "reserved"
    """A budget unit taken by an action about to run."""
    FAILURE = "failure"
    """A failed verification or a compensation: what the circuit breaker counts."""


@dataclass(frozen=True)
class BudgetAnswer:
    granted: bool
    reason: str


class SafetyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with write_transaction(engine) as conn:
            self._lock(conn)
            _metadata.create_all(conn, checkfirst=True)
            for index in safety_events.indexes:  # a table made by an older version lacks the newer ones
                index.create(conn, checkfirst=True)

    def _lock(self, conn: Connection) -> None:
        """SQLite's write transaction is already exclusive; PostgreSQL needs an explicit lock for count+insert."""
        if self.engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_ID})

    def reserve(
        self,
        budget: Budget | None,
        action_class: ActionClass,
        incident_key: str,
        idempotency_key: str,
        now: datetime | None = None,
    ) -> BudgetAnswer:
        """Take one unit of the class's budget, or say which cap is spent. A retried call returns its grant."""
        if budget is None:  # nothing to count against: no transaction on the shared ledger database
            return BudgetAnswer(True, f"no budget declared for {action_class.value}")
        now = now or datetime.now(UTC)
        with write_transaction(self.engine) as conn:
            self._lock(conn)
            if self._exists(conn, idempotency_key):
                return BudgetAnswer(True, "budget already reserved for this action (retry)")
            refusal = self._refusal(conn, budget, action_class, incident_key, now)
            if refusal:
                return BudgetAnswer(False, refusal)
            self._insert(conn, SafetyEvent.RESERVED, action_class, incident_key, idempotency_key, now)
        return BudgetAnswer(True, f"within the {action_class.value} budget")

    def _refusal(
        self, conn: Connection, budget: Budget, action_class: ActionClass, incident_key: str, now: datetime
    ) -> str | None:
        reserved = (safety_events.c.event == SafetyEvent.RESERVED.value) & (
            safety_events.c.action_class == action_class.value
        )
        if budget.per_incident is not None:
            used = conn.execute(
                select(func.count()).where(reserved & (safety_events.c.incident_key == incident_key))
            ).scalar_one()
            if used >= budget.per_incident:
                return f"{action_class.value} budget spent: {used} of {budget.per_incident} per incident"
        if budget.per_window is not None:
            since = now - timedelta(seconds=budget.window_seconds)
            used = conn.execute(select(func.count()).where(reserved & (safety_events.c.at > since))).scalar_one()
            if used >= budget.per_window:
                return (
                    f"{action_class.value} budget spent: {used} of {budget.per_window} "
                    f"in the last {budget.window_seconds} s (all incidents)"
                )
        return None

    def record_failure(
        self, action_class: ActionClass, incident_key: str, idempotency_key: str, now: datetime | None = None
    ) -> None:
        """Count a failed verification or a compensation toward the breaker (once per idempotency key)."""
        with write_transaction(self.engine) as conn:
            self._lock(conn)
            if not self._exists(conn, idempotency_key):
                self._insert(conn, SafetyEvent.FAILURE, action_class, incident_key, idempotency_key, now)

    @staticmethod
    def _exists(conn: Connection, idempotency_key: str) -> bool:
        query = select(safety_events.c.id).where(safety_events.c.idempotency_key == idempotency_key)
        return conn.execute(query).first() is not None

    @staticmethod
    def _insert(
        conn: Connection,
        event: SafetyEvent,
        action_class: ActionClass,
        incident_key: str,
        idempotency_key: str,
        now: datetime | None,
    ) -> None:
        conn.execute(
            safety_events.insert().values(
                event=event.value,
                action_class=action_class.value,
                incident_key=incident_key,
                idempotency_key=idempotency_key,
                at=now or datetime.now(UTC),
            )
        )

    def health_cap(self, breaker: CircuitBreaker | None, now: datetime | None = None) -> HealthCap | None:
        """The breaker's ceiling when failures in the window reach its threshold, else None."""
        if breaker is None:
            return None
        since = (now or datetime.now(UTC)) - timedelta(seconds=breaker.window_seconds)
        # Asked before every decision (guard and pre-flight): one statement on the driver's cursor (driver.py)
        with driver_read(self.engine) as cursor:
            failures = cursor.scalar(
                f"SELECT count(*) FROM {safety_events.name} WHERE event = {cursor.p('event')} "
                f"AND at > {cursor.p('since')}",
                {"event": SafetyEvent.FAILURE.value, "since": cursor.timestamp(since)},
            )
        if failures < breaker.max_failures:
            return None
        return HealthCap(
            level=breaker.lower_to,
            why=(
                f"circuit breaker open: {failures} failed verifications/compensations in the last "
                f"{breaker.window_seconds} s (threshold {breaker.max_failures})"
            ),
        )
