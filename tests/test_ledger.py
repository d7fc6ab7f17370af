"""The audit ledger on both backends: chain shape, idempotency, concurrency, tamper detection, triggers, export.

Every test runs on SQLite (a temp file) and on PostgreSQL (a fresh schema per test in the database that
.ci/postgres.sh provides). Tampering is done with raw SQL, the way an insider with database access would.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from autonomy_controller.controller.ledger import (
    GENESIS_HASH,
    ExportFormatError,
    IdempotencyConflict,
    Ledger,
    LedgerConfigError,
    LedgerError,
    ProblemCode,
    RecordKind,
    VerifyReport,
    make_engine,
    normalise_url,
    private_schema,
    record_hash,
    sqlite_url,
    verify_export,
)
from autonomy_controller.controller.models import GuardDecision, Level, RiskAssessment, RiskFactor, Verdict

PG_ENV = "AUTONOMY_TEST_POSTGRES_URL"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty ledger location of each backend; PostgreSQL gets a private schema per test."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "ledger.db")
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.fail(f'{PG_ENV} is not set: run `export {PG_ENV}="$(bash .ci/postgres.sh)"` first (CI does)')
    with private_schema(base, "ledger_test") as url:
        yield url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    with Ledger.from_url(ledger_url) as led:
        yield led


def _raw(led: Ledger, sql: str, **params: Any) -> None:
    with led.engine.connect() as conn, conn.begin():
        conn.execute(text(sql), params)


def _drop_guards(conn: Connection) -> None:
    """What an owner or superuser can do: the triggers are defence in depth, not the integrity proof."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER ledger_record_no_update")
        conn.exec_driver_sql("DROP TRIGGER ledger_record_no_delete")
    else:
        conn.exec_driver_sql("DROP TRIGGER ledger_record_append_only ON ledger_record")


def _tamper(led: Ledger, *statements: str, **params: Any) -> None:
    with led.engine.connect() as conn, conn.begin():
        _drop_guards(conn)
        for sql in statements:
            conn.execute(text(sql), params)


def _six(led: Ledger) -> None:
    """A1 B1 A2 B2 A3 B3 at seq 1..6: two interleaved incidents."""
    for i in range(1, 4):
        led.append("A", RecordKind.EXECUTION, "worker:a", {"step": i, "target": "198.51.100.7"})
        led.append("B", RecordKind.EXECUTION, "worker:b", {"step": i, "target": "203.0.113.9"})


def _hash_of(led: Ledger, seq: int) -> str:
    record = led.get(seq)
    assert record is not None
    return record.hash


def _assert_first(report: VerifyReport, code: ProblemCode, seq: int) -> None:
    assert not report.ok, report.summary()
    first = report.first_problem
    assert first is not None
    assert (first.code, first.seq) == (code, seq), report.summary()
    assert f"seq {seq}" in report.summary()


# -- shape of the chain --------------------------------------------------------------------------------------


def test_appends_form_one_gap_free_chain_and_per_incident_chains(ledger: Ledger) -> None:
    _six(ledger)
    a = ledger.records("A")
    b = ledger.records("B")
    assert [r.seq for r in a] == [1, 3, 5] and [r.seq for r in b] == [2, 4, 6]
    everything = sorted(a + b, key=lambda r: r.seq)
    assert everything[0].prev_hash == GENESIS_HASH
    for before, after in pairwise(everything):
        assert after.prev_hash == before.hash
    for chain in (a, b):
        assert chain[0].incident_prev_hash == GENESIS_HASH
        assert [r.incident_prev_hash for r in chain[1:]] == [r.hash for r in chain[:-1]]
    assert all(r.hash == r.computed_hash() for r in everything)
    assert (ledger.head().seq, ledger.head().hash) == (6, everything[-1].hash)
    heads = {h.incident_key: h for h in ledger.incidents()}
    assert (heads["A"].seq, heads["A"].count, heads["A"].hash) == (5, 3, a[-1].hash)
    assert ledger.verify().ok and ledger.verify("A").ok and ledger.verify("B").ok


def test_hash_is_sha256_of_canonical_json_of_every_field_but_hash(ledger: Ledger) -> None:
    """Pinned so that an outside tool can recompute an export without this code."""
    rec = ledger.append("inc", RecordKind.ALERT, "ingest", {"b": [1, 2.5], "a": "é"}, idempotency_key="k1")
    doc = {
        "seq": 1,
        "incident_key": "inc",
        "kind": "alert",
        "actor": "ingest",
        "payload": {"a": "é", "b": [1, 2.5]},
        "created_at": rec.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "prev_hash": "0" * 64,
        "incident_prev_hash": "0" * 64,
        "idempotency_key": "k1",
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert '"payload":{"a":"\\u00e9","b":[1,2.5]}' in canonical
    assert rec.hash == hashlib.sha256(canonical.encode()).hexdigest() == record_hash(doc)
    assert rec.created_at.utcoffset() == timedelta(0)


def test_records_read_back_exactly_and_filter_by_kind(ledger: Ledger) -> None:
    alert = ledger.append("inc", "alert", "ingest:suricata", {"raw": {"event_type": "alert", "n": 1}})
    plan = ledger.append("inc", RecordKind.PLAN, "planner:offline", {"actions": []})
    ledger.append("other", RecordKind.PLAN, "planner:offline", {"actions": ["x"]})
    assert ledger.get(alert.seq) == alert
    assert ledger.get(99) is None
    assert ledger.records("inc") == [alert, plan]
    assert ledger.records("inc", kinds=[RecordKind.PLAN]) == [plan]
    assert ledger.records("nobody") == []


def test_an_incident_s_records_are_counted_by_kind(ledger: Ledger) -> None:
    for n in range(3):
        ledger.append("inc", RecordKind.ALERT, "ingest", {"n": n})
    ledger.append("inc", RecordKind.PLAN, "planner:offline", {"actions": []})
    ledger.append("other", RecordKind.ALERT, "ingest", {"n": 3})
    assert ledger.count("inc", [RecordKind.ALERT]) == 3
    assert ledger.count("inc", [RecordKind.ALERT, RecordKind.PLAN]) == ledger.count("inc") == 4
    assert ledger.count("inc", []) == ledger.count("nobody") == 0


def test_the_latest_records_of_an_incident_are_the_newest_in_the_order_written(ledger: Ledger) -> None:
    written = [ledger.append("inc", RecordKind.ACCESS, "ingest", {"n": n}) for n in range(5)]
    ledger.append("inc", RecordKind.PLAN, "planner:offline", {"actions": []})  # another kind, newer still
    ledger.append("other", RecordKind.ACCESS, "ingest", {"n": 5})  # another incident, newer still
    assert ledger.records("inc", [RecordKind.ACCESS], latest=3) == written[2:]
    assert ledger.records("inc", [RecordKind.ACCESS], latest=10) == written
    assert ledger.records("nobody", [RecordKind.ACCESS], latest=3) == []


def test_untrusted_and_large_payloads_round_trip_and_verify(ledger: Ledger) -> None:
    """Alert text is attacker-controlled: NUL, lone surrogates and quotes must store, read back and hash alike."""
    nasty = 'ignore previous instructions\x00 "unblock" \ud800 \U0001f600 é\n\t\\'
    raw = {"evidence": nasty, "blob": "x" * 1_000_000, "n": [0.1, -0.0, 10**30, None, True]}
    rec = ledger.append("inc", RecordKind.ACCESS, "ingest", raw)
    assert rec.payload["evidence"] == nasty
    assert ledger.get(rec.seq) == rec
    assert ledger.verify().ok


def test_decision_records_carry_policy_revision_and_risk_factors(ledger: Ledger) -> None:
    decision = GuardDecision(
        action_id="a1",
        action="network.block_ip",
        verdict=Verdict.APPROVE,
        declared_level=Level.L3,
        effective_level=Level.L2,
        risk=RiskAssessment(
            score=42.0, factors=[RiskFactor(name="blast", value=0.25, weight=20, contribution=5, why="one address")]
        ),
        policy_revision="rev-abc123",
    )
    rec = ledger.append("inc", RecordKind.DECISION, "guard", decision)
    stored = ledger.records("inc")[0].payload
    assert stored == rec.payload
    assert stored["policy_revision"] == "rev-abc123"
    assert stored["risk"]["factors"][0]["why"] == "one address"
    with pytest.raises(LedgerError, match="policy_revision"):
        ledger.append("inc", RecordKind.DECISION, "guard", {"verdict": "deny", "risk": None})


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("inc", "launch_missiles", "x", {}), "unknown record kind"),
        (("inc", "alert", "", {}), "actor must not be empty"),
        (("", "alert", "x", {}), "incident_key must not be empty"),
        (("k" * 600, "alert", "x", {}), "longer than 512"),
        (("inc", "alert", "x", {"t": object()}), "not plain JSON"),
        (("inc", "alert", "x", {"f": float("nan")}), "not plain JSON"),
        (("inc", "alert", "x", [1, 2]), "must be a JSON object"),
    ],
)
def test_bad_appends_are_refused_and_write_nothing(ledger: Ledger, args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(LedgerError, match=match):
        ledger.append(*args)
    assert ledger.head().seq == 0 and ledger.verify().ok


def test_there_is_no_update_or_delete_api() -> None:
    public = {name for name in dir(Ledger) if not name.startswith("_")}
    assert not public & {"update", "delete", "remove", "truncate", "edit", "replace", "set"}


# -- idempotency ---------------------------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_record(ledger: Ledger) -> None:
    first = ledger.append("inc", RecordKind.EXECUTION, "activity", {"try": 1}, idempotency_key="wf-1:act-1")
    retry = ledger.append("inc", RecordKind.EXECUTION, "activity", {"try": 2}, idempotency_key="wf-1:act-1")
    assert retry == first and retry.payload == {"try": 1}
    assert ledger.find("wf-1:act-1") == first
    assert len(ledger.records("inc")) == 1 and ledger.head().seq == 1
    other = ledger.append("inc", RecordKind.EXECUTION, "activity", {"try": 1}, idempotency_key="wf-1:act-2")
    assert other.seq == 2


def test_idempotency_key_reused_for_another_incident_or_kind_is_a_conflict(ledger: Ledger) -> None:
    ledger.append("inc", RecordKind.EXECUTION, "activity", {}, idempotency_key="wf-1:act-1")
    with pytest.raises(IdempotencyConflict, match="record 1"):
        ledger.append("other", RecordKind.EXECUTION, "activity", {}, idempotency_key="wf-1:act-1")
    with pytest.raises(IdempotencyConflict):
        ledger.append("inc", RecordKind.VERIFICATION, "activity", {}, idempotency_key="wf-1:act-1")
    assert ledger.head().seq == 1


def test_concurrent_retries_with_one_key_write_one_record(ledger_url: str) -> None:
    workers = 8
    barrier = threading.Barrier(workers)
    with Ledger.from_url(ledger_url) as led:

        def retry(i: int) -> int:
            barrier.wait()
            return led.append("inc", RecordKind.EXECUTION, f"worker:{i}", {"i": i}, idempotency_key="wf:step").seq

        with ThreadPoolExecutor(workers) as pool:
            seqs = list(pool.map(retry, range(workers)))
        assert seqs == [1] * workers
        assert led.head().seq == 1 and led.verify().ok


# -- concurrency ---------------------------------------------------------------------------------------------


def _check_concurrent_result(led: Ledger, writers: list[str], per_writer: int) -> None:
    total = len(writers) * per_writer
    report = led.verify()
    assert report.ok, report.summary()
    assert report.checked == total and led.head().seq == total
    seqs = [r.seq for w in writers for r in led.records(w)]
    assert sorted(seqs) == list(range(1, total + 1))  # no duplicate, no gap
    for writer in writers:
        assert [r.payload["i"] for r in led.records(writer)] == list(range(per_writer))
        assert led.verify(writer).ok


def test_concurrent_threads_keep_the_chain_linear(ledger_url: str) -> None:
    workers, per_worker = 8, 40
    barrier = threading.Barrier(workers)
    with Ledger.from_url(ledger_url) as led:

        def work(w: int) -> None:
            barrier.wait()
            for i in range(per_worker):
                led.append(f"w{w}", RecordKind.EXECUTION, f"worker:{w}", {"i": i})

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
        _check_concurrent_result(led, [f"w{w}" for w in range(workers)], per_worker)


def test_concurrent_appends_to_one_incident_keep_its_chain_linear(ledger_url: str) -> None:
    """Workers of one incident contend for its incident head too, not only for the global head."""
    workers, per_worker = 6, 30
    barrier = threading.Barrier(workers)
    with Ledger.from_url(ledger_url) as led:

        def work(w: int) -> None:
            barrier.wait()
            for i in range(per_worker):
                led.append("shared", RecordKind.APPROVAL, f"user:{w}", {"w": w, "i": i})

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(workers)))
        chain = led.records("shared")
        assert [r.seq for r in chain] == list(range(1, workers * per_worker + 1))
        assert [r.incident_prev_hash for r in chain[1:]] == [r.hash for r in chain[:-1]]
        head = led.incident_head("shared")
        assert head is not None and (head.seq, head.count) == (workers * per_worker, workers * per_worker)
        assert led.verify().ok and led.verify("shared").ok


def test_a_ledger_opens_while_another_connection_writes_the_new_file(tmp_path: Path) -> None:
    """Two processes opening a new ledger together: the second's switch to WAL met the first's write in rollback
    mode, and SQLite answered "database is locked" at once (no busy timeout for that pragma). It now waits."""
    path = tmp_path / "ledger.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        writer.execute("CREATE TABLE earlier (x)")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO earlier VALUES (1)")
        threading.Timer(0.3, writer.execute, ["COMMIT"]).start()
        with Ledger.from_url(sqlite_url(path)) as led:
            led.append("inc", RecordKind.ALERT, "ingest", {"id": "a"}, idempotency_key="a")
            assert led.verify().ok
    finally:
        writer.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _append_in_process(url: str, worker: int, count: int, barrier: Any) -> None:
    with Ledger.from_url(url) as led:
        barrier.wait()
        for i in range(count):
            led.append(f"p{worker}", RecordKind.EXECUTION, f"process:{worker}", {"i": i})


def test_concurrent_processes_keep_the_chain_linear(ledger_url: str) -> None:
    """Separate processes share nothing but the database: its lock alone must serialise them."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2, timeout=60)  # one that cannot start fails the other, not a 120 s wait
    procs = [ctx.Process(target=_append_in_process, args=(ledger_url, w, 100, barrier)) for w in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with Ledger.from_url(ledger_url) as led:
        _check_concurrent_result(led, ["p0", "p1"], 100)


def test_verify_sees_a_consistent_snapshot_while_others_append(ledger_url: str) -> None:
    with Ledger.from_url(ledger_url) as led:
        stop = threading.Event()

        def append() -> None:
            i = 0
            while not stop.is_set() and i < 2000:
                led.append(f"inc{i % 3}", RecordKind.EXECUTION, "worker", {"i": i})
                i += 1

        writers = [threading.Thread(target=append) for _ in range(3)]
        for t in writers:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while led.head().seq < 20:  # verify while the appenders are well under way
                assert time.monotonic() < deadline, "the appenders made no progress"
                time.sleep(0.005)
            reports = [led.verify() for _ in range(15)]
        finally:
            stop.set()
            for t in writers:
                t.join()
        assert all(r.ok for r in reports), [r.summary() for r in reports if not r.ok]
        assert reports[-1].checked > 0 and led.verify().ok


# -- tamper detection (raw SQL, after dropping the append-only triggers) --------------------------------------

TamperCase = tuple[Callable[[Ledger], None], ProblemCode, int]

TAMPER_CASES: dict[str, TamperCase] = {
    "edited payload": (
        lambda led: _tamper(
            led, "UPDATE ledger_record SET payload = :p WHERE seq = 3", p='{"step":2,"target":"10.0.0.1"}'
        ),
        ProblemCode.CONTENT_EDITED,
        3,
    ),
    "edited payload of the last record": (
        lambda led: _tamper(led, "UPDATE ledger_record SET payload = '{}' WHERE seq = 6"),
        ProblemCode.CONTENT_EDITED,
        6,
    ),
    "edited actor": (
        lambda led: _tamper(led, "UPDATE ledger_record SET actor = 'user:alice' WHERE seq = 2"),
        ProblemCode.CONTENT_EDITED,
        2,
    ),
    "edited created_at": (
        lambda led: _tamper(
            led, "UPDATE ledger_record SET created_at = :t WHERE seq = 4", t=datetime(2020, 1, 1, tzinfo=UTC)
        ),
        ProblemCode.CONTENT_EDITED,
        4,
    ),
    "edited hash": (
        lambda led: _tamper(led, f"UPDATE ledger_record SET hash = '{'f' * 64}' WHERE seq = 3"),
        ProblemCode.HASH_EDITED,
        3,
    ),
    "edited hash of the last record": (
        lambda led: _tamper(led, f"UPDATE ledger_record SET hash = '{'e' * 64}' WHERE seq = 6"),
        ProblemCode.HASH_EDITED,
        6,
    ),
    "payload and hash edited": (
        lambda led: _tamper(led, f"UPDATE ledger_record SET payload = '{{}}', hash = '{'d' * 64}' WHERE seq = 2"),
        ProblemCode.HASH_MISMATCH,
        2,
    ),
    "record rewritten with a recomputed hash": (
        lambda led: _rewrite(led, 3, {"step": 2, "target": "10.0.0.1"}),
        ProblemCode.BROKEN_LINK,
        4,
    ),
    "created_at no longer a timestamp (SQLite stores anything)": (
        lambda led: _tamper(
            led,
            "UPDATE ledger_record SET created_at = :t WHERE seq = 2",
            t="yesterday" if led.engine.dialect.name == "sqlite" else datetime(2020, 1, 1, tzinfo=UTC),
        ),
        ProblemCode.CONTENT_EDITED,
        2,
    ),
    "payload no longer JSON": (
        lambda led: _tamper(led, "UPDATE ledger_record SET payload = 'not json' WHERE seq = 2"),
        ProblemCode.BAD_RECORD,
        2,
    ),
    "deleted row in the middle": (
        lambda led: _tamper(led, "DELETE FROM ledger_record WHERE seq = 3"),
        ProblemCode.MISSING_RECORDS,
        3,
    ),
    "deleted last record of an incident in the middle of the ledger": (
        lambda led: _tamper(led, "DELETE FROM ledger_record WHERE seq = 5"),
        ProblemCode.MISSING_RECORDS,
        5,
    ),
    "deleted last row": (
        lambda led: _tamper(led, "DELETE FROM ledger_record WHERE seq = 6"),
        ProblemCode.TRUNCATED,
        6,
    ),
    "deleted last two rows": (
        lambda led: _tamper(led, "DELETE FROM ledger_record WHERE seq >= 5"),
        ProblemCode.TRUNCATED,
        5,
    ),
    "deleted last row and rolled the head back": (
        lambda led: _tamper(
            led,
            "DELETE FROM ledger_record WHERE seq = 6",
            "UPDATE ledger_head SET seq = 5, hash = :h",
            h=_hash_of(led, 5),
        ),
        ProblemCode.INCIDENT_HEAD_MISMATCH,
        6,
    ),
    "reordered seq": (
        lambda led: _tamper(
            led,
            "UPDATE ledger_record SET seq = -1 WHERE seq = 2",
            "UPDATE ledger_record SET seq = 2 WHERE seq = 4",
            "UPDATE ledger_record SET seq = 4 WHERE seq = -1",
        ),
        ProblemCode.SEQ_CHANGED,
        2,
    ),
    "head row rolled back": (
        lambda led: _tamper(led, "UPDATE ledger_head SET seq = 5, hash = :h", h=_hash_of(led, 5)),
        ProblemCode.HEAD_MISMATCH,
        6,
    ),
}


def _rewrite(led: Ledger, seq: int, payload: dict[str, Any]) -> None:
    """A careful forger: edits a record and recomputes its hash, but cannot fix everything that links to it."""
    old = led.get(seq)
    assert old is not None
    forged = old.model_copy(update={"payload": payload})
    _tamper(
        led,
        "UPDATE ledger_record SET payload = :p, hash = :h WHERE seq = :s",
        p=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        h=forged.computed_hash(),
        s=seq,
    )


@pytest.mark.parametrize("case", list(TAMPER_CASES))
def test_verify_names_the_first_tampered_record(ledger: Ledger, case: str) -> None:
    tamper, code, seq = TAMPER_CASES[case]
    _six(ledger)
    assert ledger.verify().ok
    tamper(ledger)
    _assert_first(ledger.verify(), code, seq)


@pytest.mark.parametrize(
    ("sql", "code", "seq"),
    [
        ("UPDATE ledger_record SET payload = '{}' WHERE seq = 3", ProblemCode.CONTENT_EDITED, 3),
        ("UPDATE ledger_record SET payload = '{}' WHERE seq = 5", ProblemCode.CONTENT_EDITED, 5),
        (f"UPDATE ledger_record SET hash = '{'f' * 64}' WHERE seq = 3", ProblemCode.HASH_EDITED, 3),
        ("DELETE FROM ledger_record WHERE seq = 3", ProblemCode.INCIDENT_LINK, 3),
        ("DELETE FROM ledger_record WHERE seq = 5", ProblemCode.INCIDENT_HEAD_MISMATCH, 5),
        ("DELETE FROM ledger_record WHERE seq = 1", ProblemCode.INCIDENT_LINK, 1),
        ("DELETE FROM ledger_incident_head WHERE incident_key = 'A'", ProblemCode.INCIDENT_HEAD_MISMATCH, 5),
    ],
)
def test_verify_of_one_incident_names_its_tampered_record(
    ledger: Ledger, sql: str, code: ProblemCode, seq: int
) -> None:
    _six(ledger)
    _tamper(ledger, sql)
    _assert_first(ledger.verify("A"), code, seq)
    assert ledger.verify("B").ok  # the other incident's chain is untouched
    assert not ledger.verify().ok


def test_verify_of_one_incident_detects_reordering(ledger: Ledger) -> None:
    _six(ledger)
    _tamper(
        ledger,
        "UPDATE ledger_record SET seq = -1 WHERE seq = 1",
        "UPDATE ledger_record SET seq = 1 WHERE seq = 3",
        "UPDATE ledger_record SET seq = 3 WHERE seq = -1",
    )
    report = ledger.verify("A")
    _assert_first(report, ProblemCode.SEQ_CHANGED, 1)
    assert "written as seq 3" in report.problems[0].detail


# -- database-side guards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_record SET payload = '{}' WHERE seq = 1",
        "UPDATE ledger_record SET seq = seq + 100",
        "DELETE FROM ledger_record WHERE seq = 2",
        "DELETE FROM ledger_record",
    ],
)
def test_triggers_reject_update_and_delete(ledger: Ledger, sql: str) -> None:
    _six(ledger)
    with pytest.raises(DBAPIError, match="append-only"):
        _raw(ledger, sql)
    assert ledger.verify().ok and ledger.head().seq == 6


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_postgres_trigger_rejects_truncate(ledger: Ledger) -> None:
    """SQLite has no TRUNCATE (its DELETE without WHERE is covered above)."""
    _six(ledger)
    with pytest.raises(DBAPIError, match="append-only"):
        _raw(ledger, "TRUNCATE ledger_record")
    assert ledger.verify().ok


def test_reopening_keeps_the_chain_and_the_guards(ledger_url: str) -> None:
    with Ledger.from_url(ledger_url) as led:
        _six(led)
    with Ledger.from_url(ledger_url) as led:
        assert led.append("A", RecordKind.REPORT, "reporter", {"ok": True}).seq == 7
        assert led.verify().ok and led.verify("A").ok
        with pytest.raises(DBAPIError, match="append-only"):
            _raw(led, "DELETE FROM ledger_record WHERE seq = 7")


# -- export --------------------------------------------------------------------------------------------------


def test_export_is_json_and_verifies_offline(ledger: Ledger) -> None:
    _six(ledger)
    doc = json.loads(ledger.export_incident_json("A"))
    assert doc["incident_key"] == "A" and [r["seq"] for r in doc["records"]] == [1, 3, 5]
    assert doc["head"]["hash"] == doc["records"][-1]["hash"]
    assert [r["payload"]["step"] for r in doc["records"]] == [1, 2, 3]
    assert verify_export(doc).ok

    edited = json.loads(json.dumps(doc))
    edited["records"][1]["payload"]["target"] = "10.0.0.1"
    _assert_first(verify_export(edited), ProblemCode.CONTENT_EDITED, 3)

    cut = json.loads(json.dumps(doc))
    del cut["records"][-1]
    _assert_first(verify_export(cut), ProblemCode.INCIDENT_HEAD_MISMATCH, 5)

    with pytest.raises(ExportFormatError):
        verify_export({"format": "something-else"})


# -- configuration -------------------------------------------------------------------------------------------


def test_in_memory_sqlite_is_refused() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(LedgerConfigError, match="in-memory"):
            make_engine(url)


def test_bare_postgresql_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(LedgerConfigError, match="unsupported"):
        make_engine("mysql://u:p@h/db")


def test_append_many_is_one_chain_segment_and_idempotent_per_entry(ledger: Ledger) -> None:
    first = ledger.append_many("sqli:1", RecordKind.ALERT, "ingest", [({"n": n}, f"alert:{n}") for n in range(5)])
    assert [r.seq for r in first] == list(range(first[0].seq, first[0].seq + 5))
    again = ledger.append_many("sqli:1", RecordKind.ALERT, "ingest", [({"n": n}, f"alert:{n}") for n in range(3, 7)])
    assert [r.seq for r in again[:2]] == [first[3].seq, first[4].seq]  # existing records, not new ones
    assert len(ledger.records("sqli:1")) == 7
    assert ledger.verify().ok
    with pytest.raises(IdempotencyConflict):
        ledger.append_many("xss:2", RecordKind.ALERT, "ingest", [({"n": 0}, "alert:0")])
