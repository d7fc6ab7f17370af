"""Adversarial review of the people path, the votes themselves.

- A vote that arrives once the approval is decided is refused, not counted and ignored. The workflow decides
  an approval in `_await_approval` and then awaits (the ledger note, the pre-flight check) before the action's
  status leaves `awaiting_approval`. Before this review a vote arriving in that window passed validation: a veto
  sent a moment after the veto window closed was recorded as a counted rejection and its sender told "Vote
  recorded", while the action ran anyway. The pure tests pin the rule down; the loop test opens the window for
  real (the ledger is busy for a few seconds, as under load) and sends the veto into it.
- Nobody votes on an action on their own account: dave, an iam-admin, was one of the two iam-admins that
  re-enabling his own (privileged) account needs, and could veto his own account's containment (whoever holds
  its credentials, perhaps the attacker, would).
- A person taken out of the approver group while the vote waits no longer votes (verify_approval reads the
  current identities).
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.testing import TimeSkipper

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Category, Level, Plan, ProposedAction, Verdict
from autonomy_controller.workflows.activities import IncidentActivities
from autonomy_controller.workflows.approvals import VoteRefused, check_vote
from autonomy_controller.workflows.client import cast_vote, incident_handle
from autonomy_controller.workflows.contracts import (
    ActionState,
    ActionStatus,
    ApprovalGroup,
    ApprovalSpec,
    ApprovalVote,
    VoteChoice,
)
from autonomy_controller.workflows.incident import IncidentWorkflow
from tests.factories import make_incident
from tests.harness import Loop, action_of, alert, awaiting, running_loop, vote
from tests.test_workflow import bounded_playbooks, guessed

SPEC = ApprovalSpec(
    quorum=1,
    groups=[ApprovalGroup(name="soc-oncall", quorum=0, members=["bob", "carol", "heidi"])],
    proposer="planner:offline",
    service_identities=["svc:controller"],
    timeout_seconds=3600,
    on_timeout="execute_reversible",
)


def waiting() -> ActionState:
    return ActionState(
        action_id="a1", action="network.block_ip", verdict="approve", status=ActionStatus.AWAITING_APPROVAL
    )


def ballot(approver: str, choice: VoteChoice = VoteChoice.REJECT) -> ApprovalVote:
    return ApprovalVote(action_id="a1", approver=approver, choice=choice)


@pytest.mark.parametrize("choice", list(VoteChoice))
def test_a_vote_on_an_approval_already_decided_is_refused(choice: VoteChoice) -> None:
    state = waiting()
    check_vote(state, SPEC, ballot("carol", choice))  # still open: carol may vote either way
    with pytest.raises(VoteRefused, match="already decided"):
        check_vote(state, SPEC, ballot("carol", choice), decided=True)


def test_a_rejection_cast_before_the_decision_still_counts() -> None:
    """Only a decided approval closes the vote: a reject cast while the approving vote is still being recorded
    (quorum met, not yet decided) is accepted, and the workflow's wait then settles on the rejection."""
    state = waiting()
    state.votes.append(ballot("bob", VoteChoice.APPROVE))
    check_vote(state, SPEC, ballot("carol"))


@pytest.fixture
def restore_dave(embedded_guard: Guard) -> tuple[ApprovalSpec, ActionState]:
    """Re-enabling dave's account, which containment disabled: dave is privileged (2 iam-admins needed) and one of
    the three iam-admins. The spec is the one the worker derives from the guard's decision."""
    incident = make_incident(Category.BRUTE_FORCE, user="dave")
    action = ProposedAction(id="a1", action="identity.enable_user", params={"user": "dave"}, confidence=0.9)
    (decision,) = embedded_guard.decide_plan(
        incident, Plan(incident_key=incident.key, planner="offline", actions=[action])
    )
    assert decision.verdict is Verdict.APPROVE, decision.reasons
    spec = IncidentActivities._approval_spec(embedded_guard, decision, "planner:offline")
    assert "dave" in spec.eligible(escalated=False)
    state = ActionState(
        action_id="a1", action=action.action, verdict="approve", status=ActionStatus.AWAITING_APPROVAL, target="dave"
    )
    return spec, state


def test_nobody_approves_an_action_on_their_own_account(restore_dave: tuple[ApprovalSpec, ActionState]) -> None:
    """Separation of duties covers the subject as well as the proposer: whoever holds dave's credentials (the
    reason his account was disabled) must not be one of the two iam-admins who lift it."""
    spec, state = restore_dave
    with pytest.raises(VoteRefused, match="own account"):
        check_vote(state, spec, ballot("dave", VoteChoice.APPROVE))
    check_vote(state, spec, ballot("erin", VoteChoice.APPROVE))  # another iam-admin may


def test_nobody_vetoes_the_containment_of_their_own_account(embedded_guard: Guard) -> None:
    """A rejection only lowers autonomy, but for identity containment the subject is who an attacker with the
    account's credentials would be: dave gets no say on disabling dave, the other approvers decide."""
    incident = make_incident(Category.BRUTE_FORCE, user="dave")
    action = ProposedAction(id="a1", action="identity.disable_user", params={"user": "dave"}, confidence=0.9)
    (decision,) = embedded_guard.decide_plan(
        incident, Plan(incident_key=incident.key, planner="offline", actions=[action]), level=Level.L3
    )
    assert decision.verdict is Verdict.APPROVE, decision.reasons
    spec = IncidentActivities._approval_spec(embedded_guard, decision, "planner:offline")
    state = ActionState(
        action_id="a1", action=action.action, verdict="approve", status=ActionStatus.AWAITING_APPROVAL, target="dave"
    )
    with pytest.raises(VoteRefused, match="own account"):
        check_vote(state, spec, ballot("dave", VoteChoice.REJECT))
    other = next(name for name in sorted(spec.eligible(escalated=False)) if name != "dave")
    check_vote(state, spec, ballot(other, VoteChoice.REJECT))  # another approver may veto


def _lock(ledger_file: Path) -> sqlite3.Connection:
    """Hold the ledger's write lock, as a long write by another process would: the workflow's next ledger
    note waits (SQLite's busy timeout) while nothing else about the workflow changes."""
    connection = sqlite3.connect(ledger_file, timeout=5, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


async def _ran_past_timer(handle: WorkflowHandle[Any, Any], duration: timedelta) -> bool:
    """The workflow's timer of `duration` fired and a workflow task after it completed: the workflow ran past
    it (a vote sent before that could be handled in the same task, before the timer)."""
    events = (await handle.fetch_history()).events
    timers = {
        e.timer_started_event_attributes.timer_id
        for e in events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == duration
    }
    fired = next(
        (
            n
            for n, e in enumerate(events)
            if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED and e.timer_fired_event_attributes.timer_id in timers
        ),
        None,
    )
    done = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    return fired is not None and any(e.event_type == done for e in events[fired:])


async def _note_pending(loop: Loop, key: str, event: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(r.payload.get("event") == event for r in loop.ledger.records(key, [RecordKind.APPROVAL])):
        assert asyncio.get_running_loop().time() < deadline, f"no {event} note for {key}"
        await asyncio.sleep(0.1)


async def test_a_veto_after_the_veto_window_passed_is_refused_not_counted_while_the_action_runs(
    config_copy: Settings, tmp_path: Path
) -> None:
    # L4: iam-admins are asked about disabling alice's account for an hour; silence runs it (the veto window)
    async with running_loop(bounded_playbooks(tmp_path, config_copy)) as loop:
        # the login service saw alice guessed (the entity guardrail's fact for disabling alone)
        (key,) = await loop.submit(guessed("198.51.100.140", "alice"), level=Level.L4)
        disable = action_of(await awaiting(loop, key, "identity.disable_user"), "identity.disable_user")
        assert "dave" in disable.waiting_on
        # the case's other actions (block, ticket) run meanwhile and write the ledger: let them settle first
        await loop.wait_for(
            key,
            lambda s: all(
                a.status not in (ActionStatus.PLANNED, ActionStatus.EXECUTING)
                for a in s.actions
                if a.action != "identity.disable_user"
            ),
        )

        handle = incident_handle(loop.client, key)
        lock = _lock(config_copy.state_dir / "ledger.db")  # the window passes while the ledger is busy
        skip = asyncio.create_task(TimeSkipper(loop.client).fast_forward(handle, timedelta(minutes=31)))
        try:
            # the workflow decided (silence: it runs) and waits on the ledger to note it; its status still says
            # awaiting approval. A veto now:
            while not await _ran_past_timer(handle, timedelta(minutes=30)):  # L4's approval timeout
                await asyncio.sleep(0.1)
            status = await loop.wait_for(key, lambda s: True)
            assert action_of(status, "identity.disable_user").status is ActionStatus.AWAITING_APPROVAL
            veto = await handle.start_update(  # returns once the validator ruled on it (accepted or not)
                IncidentWorkflow.vote,
                vote("dave", VoteChoice.REJECT, disable.action_id),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        finally:
            lock.rollback()
            lock.close()
            skip.cancel()
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # accepted, it would be counted now
            await asyncio.wait_for(veto.result(), timeout=60)
        assert "already decided" in str(refused.value.cause)

        await _note_pending(loop, key, "veto_window_passed")
        final = await loop.wait_for(
            key, lambda s: action_of(s, "identity.disable_user").status is ActionStatus.AWAITING_REVERT
        )
        assert ("disabled", "alice") in loop.enforcement.state  # what the veto window promised: silence ran it
        assert action_of(final, "identity.disable_user").votes == [], "a refused veto must not show as counted"
        counted = [r.payload for r in loop.ledger.records(key, [RecordKind.APPROVAL]) if r.payload["event"] == "vote"]
        assert counted == [], "the ledger must not show a veto that changed nothing as a counted vote"


async def test_a_person_taken_out_of_the_approver_group_while_the_vote_waits_no_longer_votes(
    config_copy: Settings,
) -> None:
    identities = config_copy.policies_dir / "identities" / "data.yaml"
    async with running_loop(config_copy) as loop:
        (key,) = await loop.submit([alert(1, "198.51.100.141")], level=Level.L2)
        block = action_of(await awaiting(loop, key), "network.block_ip")
        assert "bob" in block.waiting_on
        document = yaml.safe_load(identities.read_text())
        document["approver_groups"]["soc-oncall"]["members"].remove("bob")  # bob moved on; his account did not
        identities.write_text(yaml.safe_dump(document))
        with pytest.raises(VoteRefused, match="not in an approver group"):
            await cast_vote(loop.client, loop.ledger, key, vote("bob", VoteChoice.REJECT, block.action_id))
        assert action_of(await awaiting(loop, key), "network.block_ip").votes == []
