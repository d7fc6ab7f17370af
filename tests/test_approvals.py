"""The approval rules without Temporal: who may vote, and when the votes are enough.

The workflow tests drive these through real updates; here the per-group requirement is pinned down exactly:
re-enabling a privileged account needs 2 iam-admins on top of the quorum, and soc-oncall votes never stand in.
"""

from __future__ import annotations

import pytest

from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.models import Category, Plan, ProposedAction, Verdict
from autonomy_controller.workflows.activities import IncidentActivities
from autonomy_controller.workflows.approvals import VoteRefused, check_vote, missing
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalSpec, ApprovalVote, VoteChoice
from tests.factories import make_incident


@pytest.fixture
def restore_admin(embedded_guard: Guard) -> tuple[ApprovalSpec, ActionState]:
    incident = make_incident(Category.BRUTE_FORCE, user="admin")
    action = ProposedAction(id="a1", action="identity.enable_user", params={"user": "admin"}, confidence=0.9)
    (decision,) = embedded_guard.decide_plan(
        incident, Plan(incident_key=incident.key, planner="offline", actions=[action])
    )
    assert decision.verdict is Verdict.APPROVE, decision.reasons
    assert decision.policy is not None
    # identity.rego: a privileged account needs 2 iam-admins; restore.rego: every restore needs a soc-oncall person
    assert [r.model_dump() for r in decision.policy.approval_requirements] == [
        {"group": "iam-admins", "quorum": 2},
        {"group": "soc-oncall", "quorum": 1},
    ]
    spec = IncidentActivities._approval_spec(embedded_guard, decision, "planner:offline")
    state = ActionState(action_id="a1", action=action.action, verdict="approve", status=ActionStatus.AWAITING_APPROVAL)
    return spec, state


def cast(state: ActionState, spec: ApprovalSpec, approver: str) -> None:
    vote = ApprovalVote(action_id=state.action_id, approver=approver, choice=VoteChoice.APPROVE)
    check_vote(state, spec, vote)
    state.votes.append(vote)


def test_two_soc_votes_do_not_meet_a_two_iam_admins_requirement(
    restore_admin: tuple[ApprovalSpec, ActionState],
) -> None:
    spec, state = restore_admin
    assert missing(state, spec) == ["2 more approval(s)", "2 more from iam-admins", "1 more from soc-oncall"]
    assert spec.quorum == 2 and {g.name for g in spec.groups} == {"soc-oncall", "iam-admins"}
    cast(state, spec, "bob")
    cast(state, spec, "carol")
    assert missing(state, spec) == ["2 more from iam-admins"]
    cast(state, spec, "dave")
    assert missing(state, spec) == ["1 more from iam-admins"]
    cast(state, spec, "erin")
    assert missing(state, spec) == []


@pytest.mark.parametrize(
    ("approver", "why"),
    [
        ("planner:offline", "separation of duties"),
        ("planner:claude", "separation of duties"),
        ("svc:controller", "separation of duties"),
        ("alice", "not in an approver group"),
        ("", "empty"),
    ],
)
def test_who_can_never_vote(restore_admin: tuple[ApprovalSpec, ActionState], approver: str, why: str) -> None:
    spec, state = restore_admin
    with pytest.raises(VoteRefused, match=why):
        cast(state, spec, approver)


def test_no_vote_once_the_action_is_no_longer_waiting(restore_admin: tuple[ApprovalSpec, ActionState]) -> None:
    spec, state = restore_admin
    cast(state, spec, "dave")
    with pytest.raises(VoteRefused, match="already voted"):
        cast(state, spec, "dave")
    state.status = ActionStatus.REJECTED
    with pytest.raises(VoteRefused, match="not awaiting approval"):
        cast(state, spec, "erin")
    with pytest.raises(VoteRefused, match="no action a9"):
        check_vote(None, None, ApprovalVote(action_id="a9", approver="dave", choice=VoteChoice.APPROVE))
