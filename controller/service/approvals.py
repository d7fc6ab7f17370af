"""What awaits approval and how a person's vote is cast: the one path the inbox and ChatOps share.

Both read the pending actions from the workflows' `status` query (the `ApprovalSpec`'s `waiting_on`), and both
vote through `workflows.operations.vote`, the function `autonomy approve|reject` calls: the workflow's update
and its validator decide (separation of duties, quorum, no self-approval, no planner identities), and a refused
vote is in the ledger with its reason. A front end only says *who* votes: the identity it authenticated.
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autonomy_controller.controller.approver_keys import ApproverKeysError, ApproverSecret, load_configured, load_secret
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.oversight.reports import build_report
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.controller.validation import error_lines
from autonomy_controller.workflows.approvals import VoteRefused, WrongRun
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalVote, IncidentStatus, VoteChoice
from autonomy_controller.workflows.operations import CONTROLLER_KEYS, LoopError, VoteResult, describe_and_read
from autonomy_controller.workflows.operations import vote as cast

STATUS_READS = 16
"""Workflow `status` queries in flight at once while scanning for pending actions."""
EVIDENCE_SHOWN = 5
"""Alerts shown per pending action: the latest ones (the report has all)."""


@dataclass
class Pending:
    """One action awaiting approval, with what a person needs to decide."""

    incident: str
    run_id: str
    state: ActionState
    decision: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    rationale: str | None = None
    alerts: Sequence[Mapping[str, Any]] = ()


class Refused(Exception):
    """A vote or request refused before or by the workflow: an HTTP status, a title and the reason. `recorded`:
    the ledger has it already (the workflow's refusals); a front end records the others (controller/service/
    refusals.py)."""

    def __init__(self, status: int, title: str, text: str, recorded: bool = False) -> None:
        super().__init__(text)
        self.status, self.title, self.text, self.recorded = status, title, text, recorded


async def pending_actions(service: Service, scanned: int, identity: str | None = None) -> list[Pending]:
    """Actions awaiting approval in the ledger's `scanned` most recent incidents, soonest deadline first; with
    `identity`, only those whose workflow says that person may still vote (`waiting_on`)."""
    client = await service.client()
    heads = [h for h in service.ledger.incidents() if not h.incident_key.startswith(CONTROLLER_KEYS)][-scanned:]
    limit = asyncio.Semaphore(STATUS_READS)

    async def read(key: str) -> IncidentStatus | None:
        async with limit:
            try:
                return (await describe_and_read(client, key))[1]
            except LoopError:
                return None

    statuses = await asyncio.gather(*(read(h.incident_key) for h in heads))
    items: list[Pending] = []
    for status in statuses:
        if status is None:
            continue
        waiting = [
            a
            for a in status.actions
            if a.status is ActionStatus.AWAITING_APPROVAL and (identity is None or identity in a.waiting_on)
        ]
        if waiting:
            items.extend(details(service, status.key, status.run_id, waiting))
    return sorted(items, key=lambda p: (p.state.deadline is None, p.state.deadline or 0, p.incident))


def details(service: Service, key: str, run_id: str, states: Sequence[ActionState]) -> list[Pending]:
    """Each action's decision, parameters and rationale from the incident's report, with its latest alerts."""
    report = build_report(key, service.ledger.records(key))
    by_id: dict[str, dict[str, Any]] = {a["action_id"]: a for a in report["actions"]}
    alerts = [r.payload for r in service.ledger.records(key, [RecordKind.ALERT])][-EVIDENCE_SHOWN:]
    return [
        Pending(
            incident=key,
            run_id=run_id,
            state=state,
            decision=by_id.get(state.action_id, {}).get("decision") or {},
            params=by_id.get(state.action_id, {}).get("params") or {},
            rationale=by_id.get(state.action_id, {}).get("rationale"),
            alerts=alerts,
        )
        for state in states
    ]


def describe_vote(vote: ApprovalVote) -> str:
    """A vote as the inbox and the chat message show it: who, which way, signed or not, the comment.

    The comment is quoted as a JSON string, line breaks, quotes and bidi controls escaped: shown beside the other
    votes, one approver's free text must not read as another person's vote."""
    signed = "signed" if vote.signed else "unsigned"
    return f"{vote.approver} {vote.choice.value} ({signed}){': ' + _quoted(vote.comment) if vote.comment else ''}"


def _quoted(text: str) -> str:
    """JSON-quoted, and every control, format or line-separator character escaped too (json leaves U+2028 and
    the bidi overrides, which can move or break what a reader sees, as they are)."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in json.dumps(text, ensure_ascii=False)
    )


@dataclass(frozen=True)
class Cast:
    result: VoteResult
    secret: ApproverSecret | None
    """The service-held key the vote was signed with, or None (unsigned)."""

    @property
    def how(self) -> str:
        return f"signed with the service-held key {self.secret.key_id}" if self.secret else "unsigned"


async def vote_as(
    service: Service,
    identity: str,
    incident: str,
    action_id: str,
    choice: VoteChoice,
    comment: str,
    run_id: str,
) -> Cast:
    """`identity`'s vote, signed with the key the service holds for them; Refused says why it was not counted.

    The vote is bound to `run_id` (the run the inbox page or the chat message showed) end to end: the run it
    reaches refuses it when it is another (409), since a later run's action ids repeat an earlier run's."""
    try:  # the vote as the workflow will see it: a field over its limit is the person's mistake, named
        ApprovalVote(action_id=action_id, approver=identity, choice=choice, comment=comment)
    except ValidationError as exc:
        raise Refused(400, "Refused", "; ".join(error_lines(exc))) from exc
    secret = service_key(service, identity)
    try:
        result = await cast(
            await service.client(), service.ledger, incident, action_id, identity, choice.value, comment, secret, run_id
        )
    except VoteRefused as exc:  # the workflow's refusal: cast_vote or the worker recorded it
        raise Refused(409 if isinstance(exc, WrongRun) else 403, "Vote refused", str(exc), recorded=True) from exc
    except (LoopError, Unavailable) as exc:
        raise Refused(503, "Unavailable", str(exc)) from exc
    return Cast(result, secret)


def keys_dir(state_dir: Path) -> Path:
    """Service-held approver keys, `<identity>.key` (approvers keygen files): votes signed on their behalf."""
    return state_dir / "inbox-approver-keys"


def service_key(service: Service, identity: str) -> ApproverSecret | None:
    """The key the service holds for `identity`, or None when it holds none and unsigned votes are allowed.

    Under `require_signed` a vote the service cannot sign is refused here, before it reaches the workflow
    (which would refuse it too): the service never turns a signed-vote deployment into an unsigned one."""
    path = keys_dir(service.settings.state_dir) / f"{identity}.key"
    if path.is_file():
        try:
            secret = load_secret(path)
        except ApproverKeysError as exc:
            raise Refused(503, "Unavailable", f"the service's key for {identity} is unusable: {exc}") from exc
        if secret.approver != identity:
            raise Refused(503, "Unavailable", f"{path} is {secret.approver}'s key, not {identity}'s")
        return secret
    try:
        required = load_configured(service.settings.approver_keys_file).require_signed
    except ApproverKeysError as exc:
        raise Refused(503, "Unavailable", f"the approver keys config is unusable: {exc}") from exc
    if required:
        raise Refused(
            403,
            "Vote refused",
            f"this deployment requires signed votes and the service holds no key for {identity}: "
            "vote with `autonomy approve --key` instead",
        )
    return None
