"""The ledger's group commit and batched appends, on both backends: concurrent appends of one process share a
transaction, each returns only once it is committed, one append's error stays its own, and the chain a batch
writes is the one record-by-record appends would write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger import IdempotencyConflict, Ledger, LedgerRecord, RecordKind, sqlite_url
from tests.test_ledger import ledger_url  # noqa: F401  # the both-backends fixture


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger.from_url(ledger_url) as opened:
        yield opened


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _alert(ledger: Ledger, incident: str, alert_id: str, key: str) -> LedgerRecord:
    return ledger.append(incident, RecordKind.ALERT, "ingest", {"id": alert_id}, idempotency_key=key)


def _hold_the_lead(ledger: Ledger, pool: ThreadPoolExecutor) -> tuple[threading.Event, Future[Any]]:
    """A transaction held open by a first request, so that the appends submitted next queue up behind it."""
    release, inside = threading.Event(), threading.Event()

    def hold(conn: Connection) -> None:
        inside.set()
        release.wait(10)

    held = pool.submit(ledger.committer.run, ledger.engine, hold)
    inside.wait(10)
    return release, held


def _committed_rows(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM ledger_record")).scalar_one())


def test_concurrent_appends_share_one_transaction_and_return_only_once_committed(ledger: Ledger) -> None:
    before = (ledger.committer.requests, ledger.committer.transactions)
    with ThreadPoolExecutor(max_workers=12) as pool:
        release, held = _hold_the_lead(ledger, pool)
        appends = [
            pool.submit(
                ledger.append, f"inc-{n % 3}", RecordKind.ALERT, "ingest", {"id": str(n)}, idempotency_key=f"k{n}"
            )
            for n in range(10)
        ]
        _wait_until(lambda: ledger.committer.queued() == 10)
        time.sleep(0.05)
        assert not any(f.done() for f in appends) and _committed_rows(ledger) == 0  # nobody told "written" yet
        release.set()
        held.result(10)
        records = [f.result(10) for f in appends]
    assert (ledger.committer.requests - before[0], ledger.committer.transactions - before[1]) == (11, 2)
    assert sorted(r.seq for r in records) == list(range(1, 11))
    assert _committed_rows(ledger) == 10
    assert ledger.verify().ok
    assert [ledger.find(f"k{n}") for n in range(10)] == records


def test_an_append_that_fails_in_a_shared_transaction_fails_alone(ledger: Ledger) -> None:
    ledger.append("inc-a", RecordKind.ALERT, "ingest", {"id": "first"}, idempotency_key="taken")
    with ThreadPoolExecutor(max_workers=4) as pool:
        release, held = _hold_the_lead(ledger, pool)
        good = pool.submit(_alert, ledger, "inc-a", "good", "g1")
        _wait_until(lambda: ledger.committer.queued() == 1)
        clash = pool.submit(
            ledger.append, "inc-b", RecordKind.PLAN, "planner:x", {"actions": []}, idempotency_key="taken"
        )
        _wait_until(lambda: ledger.committer.queued() == 2)
        after = pool.submit(_alert, ledger, "inc-b", "after", "g2")
        _wait_until(lambda: ledger.committer.queued() == 3)
        release.set()
        held.result(10)
        with pytest.raises(IdempotencyConflict, match="taken"):
            clash.result(10)
        written = [good.result(10), after.result(10)]
    assert [r.seq for r in written] == [2, 3]
    assert [r.payload["id"] for r in ledger.records("inc-a")] == ["first", "good"]
    assert [r.payload["id"] for r in ledger.records("inc-b")] == ["after"]
    assert ledger.verify().ok


def test_a_batch_into_a_new_incident_is_one_linked_segment(ledger: Ledger) -> None:
    entries = [({"id": "1"}, "k1"), ({"id": "2"}, "k2"), ({"id": "1 again"}, "k1"), ({"id": "3"}, None)]
    records = ledger.append_many("inc", RecordKind.ALERT, "ingest", entries)
    assert [r.seq for r in records] == [1, 2, 1, 3] and records[2] == records[0]
    head = ledger.incident_head("inc")
    assert head is not None and (head.seq, head.count, head.hash) == (3, 3, records[3].hash)
    again = ledger.append_many("inc", RecordKind.ALERT, "ingest", [({"id": "x"}, "k2"), ({"id": "4"}, "k4")])
    assert again[0] == records[1] and again[1].seq == 4
    assert [r.incident_prev_hash for r in ledger.records("inc")][1:] == [r.hash for r in ledger.records("inc")][:-1]
    assert ledger.verify().ok


def test_a_worker_s_threads_reuse_their_connections(tmp_path: Path) -> None:
    """As many threads as a worker's activity slots, appending and reading at once, open their connections once:
    a pool smaller than that closed and reopened SQLite connections (file, WAL index, pragmas) all through a run."""
    with Ledger.from_url(sqlite_url(tmp_path / "ledger.db")) as ledger:
        opened: list[int] = []
        event.listen(ledger.engine, "connect", lambda *_: opened.append(1))
        ready = threading.Barrier(12)

        def work(n: int) -> None:
            ready.wait()
            for m in range(20):
                _alert(ledger, f"src:203.0.113.{n}", f"a{n}-{m}", f"k{n}-{m}")
                ledger.records(f"src:203.0.113.{n}")

        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(work, range(12)))
        assert len(opened) <= 12 + 1  # one per thread at most (+ the group commit's leader may hold its own)
