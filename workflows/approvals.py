"""The approval rules, as pure functions the workflow calls from its update validator and its wait loop.

Kept free of Temporal and I/O so that the rules an auditor asks about (who may approve, what counts, when it
is enough) are in one small place and tested directly, and so the validator stays deterministic.
"""

from __future__ import annotations

from collections.abc import Collection

from autonomy_controller.actions.registry import UnknownActionError, get_spec
from autonomy_controller.controller.models import TargetKind
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalSpec, ApprovalVote, VoteChoice

REFUSED_AND_RECORDED = "VoteRefusedRecorded"
"""The error type of a vote the worker refused after accepting it for checking (its token did not verify): the
worker wrote the refusal to the ledger itself, so the client must not write it a second time."""


class VoteRefused(ValueError):
    """The vote is not accepted; the message says why (shown to the approver, recorded by the CLI)."""


class WrongRun(VoteRefused):
    """The vote names a run of the incident other than the one it reached: what the voter saw is not what waits."""


WRONG_RUN = WrongRun.__name__
"""The error type a refusal by the validator carries through Temporal (the exception's class name)."""


def check_ballot(vote: ApprovalVote) -> None:
    """Refuse what only the worker may say about a vote: that its signature was verified, and with which key."""
    if vote.signed or vote.key_id is not None:
        raise VoteRefused("signed and key_id are set by the worker after it verifies a token; send the token instead")


def check_vote(
    state: ActionState | None,
    spec: ApprovalSpec | None,
    vote: ApprovalVote,
    verifying: Collection[str] = (),
    decided: bool = False,
    run_id: str | None = None,
) -> None:
    """Raise VoteRefused unless this person may cast this vote on this action now.

    `run_id`: the run the vote reached; a vote naming another run is refused (WrongRun) before anything else,
    since its action id may name another action here.

    `verifying`: approvers whose vote on this action is accepted but still being verified (not yet counted): a
    second vote from them is as much a double vote as one already counted. `decided`: the workflow settled the
    approval (approved, or the veto window passed) and is on its way to run the action, while its status still
    says awaiting approval: a vote now would be recorded as counted and change nothing.
    """
    if vote.run_id is not None and run_id is not None and vote.run_id != run_id:
        raise WrongRun(
            f"this vote is for run {vote.run_id}, not the incident's current run {run_id} (an earlier run's "
            "action ids repeat in a later run): not counted; look at the incident again and vote on what waits now"
        )
    if state is None or spec is None:
        raise VoteRefused(f"no action {vote.action_id} awaits approval in this incident")
    if state.status is not ActionStatus.AWAITING_APPROVAL:
        raise VoteRefused(f"action {vote.action_id} is {state.status.value}, not awaiting approval")
    if decided:
        raise VoteRefused(f"the approval of action {vote.action_id} is already decided and it runs: too late to vote")
    approver = vote.approver.strip()
    if not approver:
        raise VoteRefused("the approver is empty")
    if approver != vote.approver:  # " bob" counted beside "bob" would be one person voting twice
        raise VoteRefused(f"the approver {vote.approver!r} has leading or trailing spaces")
    if approver == spec.proposer or approver.startswith(("planner:", "svc:", "service:")):
        raise VoteRefused(f"{approver} proposed or runs the action and can never approve it (separation of duties)")
    if approver in spec.service_identities:
        raise VoteRefused(f"{approver} is a service identity and can never approve")
    if state.target == approver and _on_an_account(state.action):
        # The subject, like the proposer, has no say: whoever holds the account's credentials (perhaps the
        # attacker) must neither lift its containment nor veto it. A rejection only lowers autonomy, but here it
        # is the suspect's: the other approvers decide.
        raise VoteRefused(f"{approver} can never vote on {state.action} of their own account (separation of duties)")
    if any(v.approver == approver for v in state.votes) or approver in verifying:
        raise VoteRefused(f"{approver} has already voted on action {vote.action_id}")
    if approver not in spec.eligible(state.escalated):
        groups = [g.name for g in spec.groups]
        if state.escalated and spec.escalate_to is not None:
            groups.append(spec.escalate_to.name)
        raise VoteRefused(f"{approver} is not in an approver group for this action ({', '.join(groups)})")


def _on_an_account(action: str) -> bool:
    try:
        return get_spec(action).target_kind is TargetKind.USER
    except UnknownActionError:  # the guard denies an unknown action; nothing of it waits for votes
        return False


def approvers(state: ActionState) -> list[str]:
    return [v.approver for v in state.votes if v.choice is VoteChoice.APPROVE]


def rejected_by(state: ActionState) -> str | None:
    return next((v.approver for v in state.votes if v.choice is VoteChoice.REJECT), None)


def missing(state: ActionState, spec: ApprovalSpec) -> list[str]:
    """What is still needed, in words; empty when the approval is complete."""
    given = set(approvers(state))
    needs: list[str] = []
    if len(given) < spec.quorum:
        needs.append(f"{spec.quorum - len(given)} more approval(s)")
    for group in spec.groups:
        have = len(given & set(group.members))
        if group.quorum and have < group.quorum:
            needs.append(f"{group.quorum - have} more from {group.name}")
    return needs


def waiting_on(state: ActionState, spec: ApprovalSpec) -> list[str]:
    voted = {v.approver for v in state.votes}
    return sorted(spec.eligible(state.escalated) - voted)
