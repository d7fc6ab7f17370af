"""A case's decision follows its evidence, whatever its size and arrival order (issue 13).

- A case carries a bounded digest (controller/case/digest.py): exact counts from the ledger, a sample that a
  flood cannot empty of its decisive alerts, and the ledger range its steps read the whole case from.
- 10,000 alerts from one source through the real workflow: it decides as a small case of the same shape does,
  continues as new carrying the digest, and no history event comes near Temporal's 2 MB payload limit.
- An access-log line that arrives after the case was decided wakes it and it is decided again, ending where the
  line-first order ends; a benign client's lines wake nothing.

Workflows on the real Temporal test server, the real ledger (SQLite) and the shipped config.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import TimeSkipper

from autonomy_controller.controller.case.digest import SAMPLE_MAX, CaseDigest, CaseRef, LedgerTally, select
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, LedgerError, RecordKind
from autonomy_controller.controller.ledger.cases import case_alerts, tally
from autonomy_controller.controller.models import Alert, Category, Level, Severity
from autonomy_controller.workflows.client import Submitter, incident_handle, incident_status
from autonomy_controller.workflows.contracts import SIGNAL_ALERTS, ActionStatus, AlertBatch, IncidentStatus, slim_alert
from autonomy_controller.workflows.incident import IncidentWorkflow
from tests.harness import ATTACKER, Loop, action_of, alert, burst, running_loop
from tests.test_impact import eve_and_access, got_through

# -- the digest -------------------------------------------------------------------------------------------


def _noise(n: int, start: int = 100) -> list[Alert]:
    return [alert(i, category=Category.SCANNER, severity=Severity.LOW) for i in range(start, start + n)]


def test_a_flood_of_noise_cannot_push_the_decisive_alerts_out_of_the_sample() -> None:
    decisive = [alert(1, blocked=False), alert(2, category=Category.RCE, severity=Severity.HIGH)]
    digest = CaseDigest()
    digest.add(decisive)
    for start in range(100, 5_100, 200):  # 5,000 low-severity scanner hits after them
        digest.add(_noise(200, start))
    kept = {a.id for a in digest.sample}
    assert len(digest.sample) == SAMPLE_MAX and {a.id for a in decisive} <= kept
    assert digest.count == 5_002 and digest.categories == sorted({Category.SQLI, Category.RCE, Category.SCANNER})
    # equally decisive alerts later keep the first in place (a tie keeps the earlier); each category keeps two
    flood = [alert(i, blocked=False) for i in range(10_000, 10_100)]
    assert alert(1, blocked=False).id in {a.id for a in select([decisive[0], *flood, *decisive[1:]])}
    chosen = select([*decisive, *_noise(500)])
    assert sum(a.category is Category.SCANNER for a in chosen) >= 2 and decisive[1] in chosen


def test_the_count_is_the_ledgers_in_any_signal_order_and_on_resubmission() -> None:
    first = LedgerTally(floor_seq=10, below=0, through_seq=19, alerts=10)
    second = LedgerTally(floor_seq=30, below=10, through_seq=39, alerts=20)
    for order in ([first, second], [second, first], [first, second, first, second]):
        digest = CaseDigest()
        for n, t in enumerate(order):
            digest.add([alert(n % 2 * 10 + i) for i in range(10)], t)
        assert digest.count == 20, order
        assert digest.ref("k") == CaseRef(key="k", floor_seq=10, through_seq=39, alerts=20)
    # an earlier case of the same source (records below the first floor) is not this case's
    later = CaseDigest()
    later.add([alert(1)], LedgerTally(floor_seq=50, below=20, through_seq=50, alerts=21))
    assert later.count == 1 and not later.partial


def test_the_ledger_tallies_a_case_and_reads_it_whole(tmp_path: Path) -> None:
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    key = f"src:{ATTACKER}"
    old = ledger.append_many(
        key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), f"k{a.id}") for a in burst(n=3)]
    )
    ledger.append(key, RecordKind.PLAN, "planner:offline", {"actions": []})
    new = burst(n=5, start=10)
    records = ledger.append_many(
        key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), f"k{a.id}") for a in new]
    )
    counted = tally(ledger, key, [r.seq for r in records])
    assert counted == LedgerTally(floor_seq=records[0].seq, below=3, through_seq=records[-1].seq, alerts=8)
    again = ledger.append_many(key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), f"k{a.id}") for a in new])
    assert tally(ledger, key, [r.seq for r in again]) == counted  # a resubmission: the same tally
    ref = CaseRef(key=key, floor_seq=records[0].seq, through_seq=records[-1].seq, alerts=5)
    assert [a.id for a in case_alerts(ledger, ref)] == [a.id for a in new] and old[0].seq < ref.floor_seq
    with pytest.raises(LedgerError, match="the workflow counted 6"):  # fewer than counted: the step fails
        case_alerts(ledger, ref.model_copy(update={"alerts": 6}))


# -- through the workflow -----------------------------------------------------------------------------------


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


LARGE = 10_000
PAYLOAD_BOUND = 512 * 1024
"""Bytes any one history event (its payloads included) may take: a quarter of Temporal's 2 MB limit."""


async def _histories(loop: Loop, key: str) -> list[WorkflowHistory]:
    """Every run of the case, newest first (a case that continued as new has several)."""
    histories, run_id = [], (await incident_handle(loop.client, key).describe()).run_id
    while run_id:
        history = await loop.client.get_workflow_handle(key, run_id=run_id).fetch_history()
        histories.append(history)
        started = history.events[0].workflow_execution_started_event_attributes
        run_id = started.continued_execution_run_id
    return histories


def _decisions(loop: Loop, key: str) -> list[tuple[str, str, object, object]]:
    plans = loop.ledger.records(key, [RecordKind.PLAN])
    verdicts = {r.payload["action_id"]: r.payload["verdict"] for r in loop.ledger.records(key, [RecordKind.DECISION])}
    first = plans[0].payload
    return [
        (a["action"], verdicts[a["id"]], a["params"].get("ttl_seconds"), a["params"].get("severity"))
        for a in first["actions"]
    ]


async def test_ten_thousand_alerts_decide_as_a_small_case_and_stay_far_below_the_payload_limit(loop: Loop) -> None:
    small_source, large_source = "198.51.100.70", "198.51.100.71"
    (small,) = await loop.submit(burst(small_source), level=Level.L3, quiet=0.3)
    submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0.2, quiet_seconds=600)
    submitter.batch_size = 2 * LARGE  # one write, then as many signals as the bound takes
    submitter.start_template = submitter.start_template.model_copy(update={"history_limit": 40})
    began = time.monotonic()
    (large,) = (await submitter.add_all(burst(large_source, n=LARGE))).incidents
    submitted = time.monotonic() - began
    status = await loop.wait_for(
        large,
        lambda s: s.runs >= 2 and action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT,
        timeout=240,
    )
    decided = time.monotonic() - began
    assert status.alert_count == LARGE
    await loop.wait_for(small, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)

    # the same decision as the small case: playbook, actions, verdicts (every alert counted: triage saw them all)
    assert _decisions(loop, large) == _decisions(loop, small)
    plan = loop.ledger.records(large, [RecordKind.PLAN])[0].payload
    assert plan["case"]["alerts"] == LARGE and plan["triage_detail"]["evidence"]["alerts"] == LARGE
    assert (
        f"sqli {LARGE} alerts" in next(a for a in plan["actions"] if a["action"] == "ticket.create")["params"]["body"]
    )

    # continued as new carrying the digest; the revert is taken over and the case closes whole
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, large), timedelta(hours=1, seconds=5))
    final = await loop.result(large)
    assert final.phase == "closed" and final.alert_count == LARGE
    assert action_of(final, "network.block_ip").status is ActionStatus.REVERTED
    histories = await _histories(loop, large)
    sizes = [event.ByteSize() for history in histories for event in history.events]
    signalled = [
        e for h in histories for e in h.events if e.event_type is EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    assert len(signalled) >= LARGE // SIGNAL_ALERTS, "one write, as many signals as the bound takes"
    query = len(final.model_dump_json())
    print(
        f"\n{LARGE} alerts: submitted in {submitted:.1f} s, decided and continued in {decided:.1f} s; "
        f"{len(histories)} runs, {len(sizes)} events, largest event {max(sizes):,} bytes, status {query:,} bytes"
    )
    assert len(histories) >= 2 and max(sizes) < PAYLOAD_BOUND and query < PAYLOAD_BOUND


async def test_a_case_the_ledger_cannot_give_whole_fails_closed_with_the_reason(loop: Loop) -> None:
    """A signal claiming more alerts than the ledger holds (a forged or corrupted tally): the plan step cannot
    read the case whole, so nothing is planned and nothing runs, and the planner failure is recorded."""
    alerts = burst("198.51.100.72", n=SAMPLE_MAX + 1)
    submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0.2, quiet_seconds=0.3)
    written = submitter.write({"src:198.51.100.72": alerts})["src:198.51.100.72"]
    forged = LedgerTally(floor_seq=written[0].seq, below=0, through_seq=written[-1].seq, alerts=5 * len(alerts))
    handle = await loop.client.start_workflow(
        IncidentWorkflow.run,
        submitter.start_template.model_copy(update={"key": "src:198.51.100.72"}),
        id="src:198.51.100.72",
        task_queue=submitter.task_queue,
        start_signal="add_alerts",
        start_signal_args=[AlertBatch(alerts=[slim_alert(a) for a in alerts], tally=forged)],
    )
    final = await loop.result(handle.id)
    assert final.alert_count == 5 * len(alerts) and final.actions == []
    (failure,) = [r.payload for r in loop.ledger.records(handle.id, [RecordKind.PLAN])]
    assert "planner failed" in failure["error"] and "the workflow counted" in failure["error"]
    assert loop.enforcement.effects.get("network.block_ip", 0) == 0


# -- late evidence ------------------------------------------------------------------------------------------

TWIN = "198.51.100.77"


def _as_source(alerts: list[Alert], source: str) -> list[Alert]:
    return [a.model_copy(update={"src_ip": source, "id": f"{a.id}-{source}"}) for a in alerts]


def _in_force(status: IncidentStatus) -> dict[tuple[str, str | None], tuple[int, int, str]]:
    """Per effect (action, target other than the source), the strongest decided: the longest TTL, the highest
    severity, and its verdict, among the actions that ran or wait for a person (not those a later round replaced)."""
    standing = (ActionStatus.VERIFIED, ActionStatus.AWAITING_REVERT, ActionStatus.AWAITING_APPROVAL)
    ranks = {s.value: s.rank for s in Severity}
    effects: dict[tuple[str, str | None], tuple[int, int, str]] = {}
    for a in status.actions:
        if a.status in standing:
            key = (a.action, None if a.target in (ATTACKER, TWIN) else a.target)
            strength = (a.ttl_seconds or 0, ranks.get(a.severity or "", -1), a.verdict)
            effects[key] = max(effects.get(key, strength), strength)
    return effects


async def _decided(loop: Loop, key: str, rounds: int) -> IncidentStatus:
    """The case once its round `rounds` proposed actions and none of them is still being planned or executed."""
    return await loop.wait_for(
        key,
        lambda s: (
            s.rounds == rounds
            and any(a.round == rounds for a in s.actions)
            and all(a.status not in (ActionStatus.PLANNED, ActionStatus.EXECUTING) for a in s.actions)
        ),
        timeout=60,
    )


async def test_a_late_access_line_decides_the_case_again_as_if_it_had_come_first(loop: Loop, tmp_path: Path) -> None:
    eve, access = eve_and_access()
    ids, answered = got_through(tmp_path)
    http = {k: v for k, v in ids[0].raw["http"].items() if k != "status"}  # the IDS did not see the answer: only
    unanswered = ids[0].model_copy(update={"raw": {**ids[0].raw, "http": http}})  # the access log tells it
    alerts = [a for a in eve if a.src_ip == ATTACKER] + [unanswered]
    submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0.2, quiet_seconds=30)

    # line first (the twin source): one round, likely at once
    await submitter.add_all(_as_source(answered, TWIN))
    assert submitter.report.incidents == {} and submitter.report.late == {}, "a line alone opens and wakes nothing"
    await submitter.add_all(_as_source(alerts, TWIN))
    first = await _decided(loop, f"src:{TWIN}", 1)

    # line after: decided on the alerts, then again when the line comes
    await submitter.add_all(alerts)
    key = f"src:{ATTACKER}"
    before = await _decided(loop, key, 1)
    plans = loop.ledger.records(key, [RecordKind.PLAN])
    assert plans[0].payload["impact"]["verdict"] == "attempted"
    await submitter.add_all([a for a in access if a.src_ip == ATTACKER])  # its refused answers: no success, no wake
    benign = [a for a in access if a.src_ip != ATTACKER]
    await submitter.add_all(benign)  # a benign client's 200s: no case, nothing woken
    assert submitter.report.late == {} and (await incident_status(loop.client, key)).rounds == 1
    await submitter.add_all(answered)
    assert submitter.report.late == {key: "possible_success"}
    after = await _decided(loop, key, 2)

    last = {k: loop.ledger.records(k, [RecordKind.PLAN])[-1].payload for k in (key, f"src:{TWIN}")}
    assert [p["impact"]["verdict"] for p in last.values()] == ["likely", "likely"]
    assert last[key]["playbook"] == last[f"src:{TWIN}"]["playbook"]
    assert any(e["alert_id"] == answered[0].id for e in last[key]["impact"]["evidence"])
    assert _in_force(after) == _in_force(first), "the same final decision in either order"
    assert _in_force(after) != _in_force(before), "and a stronger one than before the line"
    assert after.alert_count == before.alert_count == first.alert_count  # the line joined no case
    for source in [a.src_ip for a in benign]:
        assert loop.ledger.records(f"src:{source}") == []
