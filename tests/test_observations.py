"""Access-log lines through the real loop (dev Temporal server, worker, Submitter): ACCESS records, never a case.

The records are the lab's own nginx access log and Suricata EVE (tests/data), and the IDS alert and access-log
line of an attack that got through (tests/test_impact.py `got_through`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.service import RPCError

from autonomy_controller.controller.attackers import AttackerStore
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import LedgerRecord, RecordKind, observations
from autonomy_controller.controller.ledger.observations import CASE_LINES_MAX, case_records, observation_key
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.reports import write_incident_report
from autonomy_controller.workflows.client import Submitter, alert_record_key, incident_handle, incident_status
from tests.harness import Loop, running_loop
from tests.test_impact import eve_and_access, got_through

BENIGN, ATTACKER = "203.0.113.7", "198.51.100.66"
KEY = f"src:{ATTACKER}"


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


async def plan_of(loop: Loop, key: str, timeout: float = 30.0) -> LedgerRecord:
    """The case's first plan record, once the workflow wrote it (a wait, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (plans := loop.ledger.records(key, [RecordKind.PLAN])):
        assert asyncio.get_running_loop().time() < deadline, f"no plan for {key}"
        await asyncio.sleep(0.05)
    return plans[0]


async def test_a_benign_clients_answers_are_observations_and_open_no_case(loop: Loop) -> None:
    _, access = eve_and_access()
    benign = [a for a in access if a.src_ip == BENIGN]
    assert benign
    submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0.2, quiet_seconds=0.3)
    report = await submitter.add_all(benign)
    assert report.incidents == {} and report.signals == 0, "no case"
    assert report.observed == {observation_key(BENIGN): len(benign)}, "counted where they are kept"
    kept = loop.ledger.records(observation_key(BENIGN))
    assert [r.kind for r in kept] == [RecordKind.ACCESS] * len(benign)
    assert [r.payload["id"] for r in kept] == [a.id for a in benign] and kept[0].payload["raw"]["status"] == 200
    assert loop.ledger.records(f"src:{BENIGN}") == []
    with pytest.raises(RPCError):  # no workflow was started for it
        await incident_handle(loop.client, f"src:{BENIGN}").describe()
    # read twice (a re-read log): the same records, none added
    await loop.submit(benign, level=Level.L3)
    assert loop.ledger.records(observation_key(BENIGN)) == kept
    assert loop.ledger.find(alert_record_key(benign[0])) == kept[0], "the key the ingest API checks for duplicates"
    # the profile still sees what the application answered, at no stage
    profile = AttackerStore(loop.ledger).get(BENIGN)
    assert profile is not None and profile.stage == "none" and profile.incidents == {}
    assert profile.outcomes.app_status == {"nginx-access": {"2xx": len(benign)}}


async def test_an_attackers_answers_feed_its_cases_impact_without_joining_the_case(loop: Loop, tmp_path: Path) -> None:
    eve, access = eve_and_access()
    ids, answered = got_through(tmp_path)
    mine = [a for a in eve + access if a.src_ip == ATTACKER]
    lines = [a for a in mine + answered if a.source == "nginx-access"]
    assert await loop.submit(mine + ids + answered, level=Level.L3) == [KEY]
    plan = await plan_of(loop, KEY)
    cased = [a for a in mine + ids if a.source != "nginx-access"]
    assert lines and (await incident_status(loop.client, KEY)).alert_count == len(cased), "access lines not in it"
    case_kinds = {r.kind for r in loop.ledger.records(KEY)}
    assert RecordKind.ACCESS not in case_kinds
    assert {r.payload["source"] for r in loop.ledger.records(KEY, [RecordKind.ALERT])} == {"suricata"}
    # impact read the source's access-log records: the 200 that got through is its evidence
    impact = plan.payload["impact"]
    assert (impact["verdict"], impact["stage"]) == ("likely", "possible_success")
    (line,) = [e for e in impact["evidence"] if e["sensor"] == "nginx-access"]
    assert line["alert_id"] == answered[0].id and line["status"] == 200 and line["bytes_sent"] == 1234
    # the report cites the ACCESS record that holds it
    (record,) = [r for r in case_records(loop.ledger, KEY) if r.payload["id"] == answered[0].id]
    report = write_incident_report(loop.ledger, KEY, tmp_path / "reports")
    assert f"| {answered[0].id} | {record.seq} | nginx-access | web-01 | 200 | 1234 |" in report.markdown.read_text()


async def test_a_flooded_access_log_is_read_to_its_latest_lines_and_the_plan_says_so(
    loop: Loop, tmp_path: Path
) -> None:
    """A source makes as many access-log lines as it sends requests: its case's plan reads the latest
    CASE_LINES_MAX of them (not every line, on every plan), and its PLAN record says how many it read."""
    eve, access = eve_and_access()
    mine = [a for a in eve + access if a.src_ip == ATTACKER]
    line = next(a for a in mine if a.source == "nginx-access")
    flood = [line.model_copy(update={"id": f"flood-{n}"}) for n in range(CASE_LINES_MAX + 5)]
    observations.write(loop.ledger, flood)  # older than the case: requests before it
    ids, answered = got_through(tmp_path)
    assert await loop.submit(mine + ids + answered, level=Level.L3) == [KEY]
    plan = await plan_of(loop, KEY)
    assert plan.payload["access_lines_read"] == CASE_LINES_MAX
    assert plan.payload["impact"]["verdict"] == "likely"  # the newest line, the 200 that got through, was read
    read = case_records(loop.ledger, KEY)
    assert len(read) == CASE_LINES_MAX and read[-1].payload["id"] == answered[0].id
