"""A persistent attacker does not grow one workflow history without bound: the case continues as new.

The attacker's burst gets its source blocked for an hour; then it keeps sending alerts, one signal each, until
the run's history passes the bound (IncidentStart.history_limit, set low here). The run continues as new while
the block waits for its TTL revert, carrying the case; the revert then happens once, in the new run, with the
same idempotency key the first run would have used, and the case closes with everything it had.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkipper
from temporalio.worker import Replayer

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.client import Submitter, cast_vote, incident_handle
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStatus
from autonomy_controller.workflows.incident import IncidentWorkflow
from tests.harness import ATTACKER, BURST, action_of, alert, awaiting, burst, edit_yaml, running_loop, vote

HISTORY_LIMIT = 80
SIGNALS = 60
"""Each signal is at least three events (signalled, workflow task scheduled/started/completed)."""


async def test_a_persistent_attackers_case_continues_as_new_and_reverts_its_block_once(config_copy: Settings) -> None:
    async with running_loop(config_copy) as loop:
        submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0, quiet_seconds=600)
        submitter.start_template = submitter.start_template.model_copy(update={"history_limit": HISTORY_LIMIT})
        (key,) = (await submitter.add_all(burst())).incidents
        first = await loop.wait_for(
            key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
        )
        for n in range(SIGNALS):  # the attacker keeps going: one alert, one signal at a time
            await submitter.add_all(burst(n=1, start=BURST + 1 + n))
        continued = await loop.wait_for(key, lambda s: s.runs >= 2)
        assert continued.run_id != first.run_id
        block = action_of(continued, "network.block_ip")
        assert (
            block.status is ActionStatus.AWAITING_REVERT
            and block.revert_at == action_of(first, "network.block_ip").revert_at
        )
        assert continued.alert_count == BURST + SIGNALS  # nothing lost on the way
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
        final = await loop.result(key)
        first_history = await loop.client.get_workflow_handle(key, run_id=first.run_id).fetch_history()
        last_history = await loop.client.get_workflow_handle(key, run_id=final.run_id).fetch_history()
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    for history in (first_history, last_history):  # the continuing run and a carried one replay on today's code
        await replayer.replay_workflow(history)

    assert first_history.events[-1].event_type is EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first_history.events) >= HISTORY_LIMIT  # it continued because of the bound, not before
    assert final.phase == "closed" and final.report and final.runs >= 2
    assert final.alert_count == BURST + SIGNALS
    block = action_of(final, "network.block_ip")
    assert block.status is ActionStatus.REVERTED and block.action_id == action_of(first, "network.block_ip").action_id
    assert loop.enforcement.effects == Counter({"network.block_ip": 1, "network.unblock_ip": 1})  # once each
    assert ("blocked", ATTACKER) not in loop.enforcement.state
    reverts = loop.ledger.records(key, [RecordKind.REVERT])
    executions = [
        r
        for r in loop.ledger.records(key, [RecordKind.EXECUTION])
        if r.payload["request"]["action"] == "network.block_ip"
    ]
    assert len(reverts) == 1 and len(executions) == 1
    # the revert is the one the first run would have made: its idempotency key names the run that executed
    assert reverts[0].payload["request"]["idempotency_key"] == executions[0].payload["request"]["idempotency_key"]
    assert first.run_id in reverts[0].payload["request"]["idempotency_key"]
    assert len(loop.ledger.records(key, [RecordKind.REPORT])) == 1
    assert loop.ledger.verify().ok


async def test_a_case_waiting_on_a_person_continues_only_after_the_approval_settles(config_copy: Settings) -> None:
    """A signed vote names its run, so a run never continues while an action waits on a person: the history may
    pass the bound meanwhile; once the approval settles (here: approved, executed, waiting for its revert) the
    run continues, with the votes in the carried action state."""
    async with running_loop(config_copy) as loop:
        submitter = Submitter(loop.client, loop.ledger, level=Level.L2, settle_seconds=0, quiet_seconds=600)
        submitter.start_template = submitter.start_template.model_copy(update={"history_limit": HISTORY_LIMIT})
        (key,) = (await submitter.add_all([alert(1)])).incidents
        asking = await awaiting(loop, key)
        block = action_of(asking, "network.block_ip")
        for _ in range(SIGNALS):  # the same alert again and again: history grows, the evidence does not
            await submitter.add_all([alert(1)])
        first_run = loop.client.get_workflow_handle(key, run_id=asking.run_id)
        for _ in range(300):  # the signals handled: the first run's history is well past the bound
            if len((await first_run.fetch_history()).events) >= HISTORY_LIMIT + SIGNALS:
                break
            await asyncio.sleep(0.1)
        waiting = await loop.wait_for(key, lambda s: True)
        assert waiting.runs == 1 and action_of(waiting, "network.block_ip").status is ActionStatus.AWAITING_APPROVAL
        await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
        continued = await loop.wait_for(key, lambda s: s.runs >= 2)
        assert [v.approver for v in action_of(continued, "network.block_ip").votes] == ["bob"]
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
        final = await loop.result(key)

    assert final.phase == "closed" and final.alert_count == 1
    assert action_of(final, "network.block_ip").status is ActionStatus.REVERTED
    assert loop.enforcement.effects == Counter({"network.block_ip": 1, "network.unblock_ip": 1})
    assert len(loop.ledger.records(key, [RecordKind.REVERT])) == 1
    assert loop.ledger.verify().ok


async def test_a_continued_case_keeps_the_per_incident_budget_it_spent(config_copy: Settings) -> None:
    """Per-incident budgets count the case, not one run of it: the hour's block spends L3's one contain_network unit
    in the first run; after the case continued as new, the attack gets through the WAF and the next round asks a
    24 h block, which pre-flight holds (the budget is spent) instead of running on a renewed one."""
    edit_yaml(config_copy.levels_dir / "L3.yaml", budgets={"contain_network": {"per_incident": 1}})
    async with running_loop(config_copy) as loop:
        submitter = Submitter(loop.client, loop.ledger, level=Level.L3, settle_seconds=0, quiet_seconds=600)
        submitter.start_template = submitter.start_template.model_copy(update={"history_limit": HISTORY_LIMIT})
        (key,) = (await submitter.add_all(burst())).incidents
        first = await loop.wait_for(
            key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
        )
        for n in range(SIGNALS):
            await submitter.add_all(burst(n=1, start=BURST + 1 + n))
        await loop.wait_for(key, lambda s: s.runs >= 2)
        # Got through: a longer block is asked. As many alerts again as the case holds, so the round is due whatever
        # counts the earlier rounds were decided at (signals that piled up under load decided them later, and twice
        # the last decided count was more than 20 alerts more: the case waited out its quiet period instead).
        await submitter.add_all(burst(start=1000, n=BURST + SIGNALS + BURST, blocked=False))

        def second_block_settled(status: IncidentStatus) -> bool:
            blocks = [a for a in status.actions if a.action == "network.block_ip"]
            return len(blocks) == 2 and blocks[-1].status not in (ActionStatus.PLANNED, ActionStatus.EXECUTING)

        status = await loop.wait_for(key, second_block_settled)
    owner, asked = sorted((a for a in status.actions if a.action == "network.block_ip"), key=lambda a: a.round)
    assert owner.action_id == action_of(first, "network.block_ip").action_id and status.run_id != first.run_id
    assert asked.status is ActionStatus.HELD, asked
    assert "budget spent: 1 of 1 per incident" in asked.detail
    assert loop.enforcement.effects["network.block_ip"] == 1
