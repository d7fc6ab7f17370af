"""What crosses the Temporal boundary: workflow input, signals, updates, queries and activity payloads.

These end up in workflow histories, which are kept for years and replayed by auditors and by the replay
test, so they are small (raw alerts and transcripts stay in the ledger) and changed only by adding fields.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from autonomy_controller.actions.adapters.base import ActionOutcome, VerifyOutcome
from autonomy_controller.controller.case.digest import CaseDigest, CaseRef, LedgerTally
from autonomy_controller.controller.case.rounds import InHand
from autonomy_controller.controller.decision.levels import OnTimeout
from autonomy_controller.controller.models import (
    ActionClass,
    Alert,
    Category,
    GuardDecision,
    Incident,
    Level,
    Plan,
    ProposedAction,
)

TASK_QUEUE = "autonomy-incidents"
EVIDENCE_IN_HISTORY = 512
"""Characters of an alert's (untrusted) evidence kept in history; the whole alert is in the ledger."""
SIGNAL_ALERTS = 200
SIGNAL_BYTES = 256 * 1024
"""A signal carries at most this many alerts, of about this many bytes (AlertBatch): a batch of any size, from
any path (the outbox coalesces requests), goes out in as many signals as it takes, far below Temporal's 2 MB."""


def slim_alert(alert: Alert) -> Alert:
    """The alert as workflow history carries it: no raw record, evidence truncated."""
    return alert.model_copy(update={"raw": {}, "evidence": alert.evidence[:EVIDENCE_IN_HISTORY]})


class IncidentStart(BaseModel):
    """Workflow input. Timings are config, so tests and benchmarks can shorten them without code changes."""

    key: str
    level: Level | None = Field(default=None, description="declared level override (what-if, demo); None: scopes")
    settle_seconds: float = Field(default=5.0, ge=0, description="collect alerts this long before planning")
    quiet_seconds: float = Field(default=60.0, ge=0, description="close after this long without new alerts")
    history_limit: int = Field(
        default=4_096,
        ge=20,
        description="continue as new once the run's history holds this many events, or earlier when the server "
        "suggests it (its defaults: 4,096 events or 4 MB): a persistent attacker never grows one history without bound",
    )
    carried: CarriedCase | None = Field(default=None, description="the case so far, from the run that continued")


class PendingRevert(BaseModel):
    """An action done and verified whose TTL revert is still ahead, as the next run needs it to revert."""

    item: GuardedAction
    request: ExecuteRequest = Field(
        description="the original execution: its idempotency key names the run that executed it, so the revert's "
        "ledger record and adapter call are the ones that run would have made"
    )


class CarriedCase(BaseModel):
    """A case handed to its next run (continue-as-new). Taken only while nothing is in flight but TTL reverts
    waiting on their timers: no activity running, no vote being handled, no action waiting on a person.
    Bounded: the case's evidence as its digest (controller/case/digest.py), never every alert."""

    alerts: list[Alert] = Field(default_factory=list, description="runs continued before the digest: every alert")
    digest: CaseDigest | None = Field(default=None, description="the case's evidence; None in older histories")
    last_alert_at: datetime
    stage: int
    decided_stage: int
    decided_alerts: int
    decided_categories: list[Category]
    rounds: int
    plan: Plan | None
    states: list[ActionState]
    superseded: dict[str, str]
    reverts: list[PendingRevert]
    runs: int = Field(description="runs of this case so far, the one that continued included")


class AlertBatch(BaseModel):
    """Alerts for a case (the Submitter sends at most SIGNAL_ALERTS of them, SIGNAL_BYTES, per signal), or none:
    a late access-log line that raised the case's stage (controller/attackers/impact.py `late_stage`)."""

    alerts: list[Alert]
    stage: str | None = Field(
        default=None,
        description="the kill-chain stage the batch's alerts show (controller/attackers/impact.py case_stage, computed "
        "from the whole records before slimming): the workflow decides again when it rises; None in older histories",
    )
    tally: LedgerTally | None = Field(
        default=None, description="the ledger's count of the case's alerts as it was signalled; None in older histories"
    )


class ApprovalGroup(BaseModel):
    """A group's members as the policy data listed them when the decision was made."""

    name: str
    members: list[str]
    quorum: int = Field(default=0, description="minimum votes from this group (policy approval_requirements)")


class ApprovalSpec(BaseModel):
    """Everything the workflow needs to judge votes without I/O (an update validator cannot do I/O)."""

    quorum: int
    groups: list[ApprovalGroup]
    proposer: str
    service_identities: list[str]
    timeout_seconds: int
    on_timeout: OnTimeout
    escalate_to: ApprovalGroup | None = None

    def asked(self, escalated: bool) -> list[ApprovalGroup]:
        """The groups whose members may vote: the action's, and its escalation group once escalated."""
        return [*self.groups, self.escalate_to] if escalated and self.escalate_to is not None else list(self.groups)

    def eligible(self, escalated: bool) -> set[str]:
        members = {m for g in self.asked(escalated) for m in g.members}
        return members - {self.proposer} - set(self.service_identities)


class GuardedAction(BaseModel):
    """A proposed action with its verdict and what executing, undoing and approving it need."""

    action: ProposedAction
    decision: GuardDecision = Field(
        description="as the workflow carries it: the risk score without its factors, no policy result (the ledger's "
        "DECISION record holds the whole decision)"
    )
    proposer: str = Field(description="planner:<name>: never an approver of its own proposal")
    action_class: ActionClass | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="validated, canonical")
    reversible: bool = False
    undo_action: str | None = None
    undo_params: dict[str, Any] | None = None
    ttl_seconds: int | None = None
    approval: ApprovalSpec | None = None
    shadow: bool = False


def _case_field() -> Any:
    return Field(
        default=None,
        description="where the whole case is in the ledger when `incident` holds only its sample "
        "(CaseDigest.partial): the step reads it from there, so it decides on every alert",
    )


class PlanRequest(BaseModel):
    """One round of a case's planning (controller/case/rounds.py): its alerts so far and what earlier rounds hold."""

    incident: Incident
    round: int = Field(default=1, ge=1)
    in_hand: list[InHand] = Field(default_factory=list)
    case: CaseRef | None = _case_field()


class GuardRequest(BaseModel):
    incident: Incident
    plan: Plan
    level: Level | None = None
    workflow_id: str
    run_id: str
    case: CaseRef | None = _case_field()


class PreflightRequest(BaseModel):
    incident: Incident
    case: CaseRef | None = _case_field()
    guarded: GuardedAction
    level: Level | None = None
    idempotency_key: str
    approval_satisfied: bool = Field(default=False, description="quorum met, or an L4 veto window passed")
    by_veto_window: bool = Field(
        default=False, description="satisfied by silence: pre-flight checks the veto window still applies"
    )
    votes: list[ApprovalVote] = Field(
        default_factory=list, description="the votes counted: pre-flight checks they still satisfy the policy"
    )
    escalated: bool = False
    budget_scope: str | None = Field(
        default=None,
        description="what per-incident budgets count under: the workflow id and the first run of its continue-as-new "
        "chain, so a continued case keeps its spent budget; None in older histories (the idempotency key's run)",
    )


class PreflightResult(BaseModel):
    """The last check before an action runs: fresh config (kill switch, shadow), breaker, budget."""

    go: bool
    shadow: bool = False
    reasons: list[str]
    action_id: str | None = Field(default=None, description="the action checked (older histories: decision.action_id)")
    decision: GuardDecision | None = Field(
        default=None, description="the fresh decision, when one was made: in the ledger's preflight record only"
    )


class ExecuteRequest(BaseModel):
    incident_key: str
    action_id: str
    action: str
    params: dict[str, Any]
    idempotency_key: str
    action_class: ActionClass | None = None
    purpose: Literal["execute", "compensate", "revert"] = "execute"


class ExecutionResult(BaseModel):
    outcome: ActionOutcome
    ledger_seq: int


class VerifyRequest(BaseModel):
    execution: ExecuteRequest
    outcome: ActionOutcome


class VerificationResult(BaseModel):
    outcome: VerifyOutcome
    ledger_seq: int


class RecordRequest(BaseModel):
    """A ledger record the workflow itself writes (votes, timeouts, shadow and hold notes)."""

    incident_key: str
    kind: str
    actor: str
    payload: dict[str, Any]
    idempotency_key: str


class VoteChoice(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class ApprovalVote(BaseModel):
    """A vote as sent, and (with `signed` and `key_id` filled in by the worker) as counted.

    `signed` and `key_id` are the worker's findings, never the client's word: the update validator refuses a vote
    that arrives with them set, and the worker sets them only after it verified `token`.
    """

    model_config = ConfigDict(frozen=True)

    action_id: str
    approver: str
    choice: VoteChoice
    comment: str = Field(default="", max_length=2_000)
    signed: bool = Field(default=False, description="set by the worker: the token verified (issue 6)")
    key_id: str | None = Field(default=None, description="set by the worker: the key that signed the token")
    token: str | None = Field(
        default=None, max_length=4_096, description="signed approval token (controller/approver_keys.py); none: --as"
    )
    run_id: str | None = Field(
        default=None,
        max_length=128,
        description="the workflow run the voter was shown: the run's validator refuses a vote for another run (an "
        "incident's key outlives its run, and a later run's action ids start again at a1); None: bound to no run",
    )


class ApprovalCheck(BaseModel):
    """What the worker verifies a vote against: the incident and run it was cast in, and the vote itself."""

    incident_key: str
    run_id: str
    vote: ApprovalVote
    groups: list[str] = Field(
        default_factory=list,
        description="the action's approver groups (and its escalation group once escalated): the voter must be in "
        "one of them in the identities data as it is now, not only as it was when the action was decided",
    )


class ApprovalVerdict(BaseModel):
    accepted: bool
    signed: bool = False
    key_id: str | None = None
    code: str = Field(default="", description="controller.approver_keys.RefusalCode when refused")
    reason: str = ""


class ActionStatus(StrEnum):
    PLANNED = "planned"
    NOT_RUN = "not_run"
    """deny or recommend: the controller never runs it."""
    SHADOW = "shadow"
    AWAITING_APPROVAL = "awaiting_approval"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    HELD = "held"
    """The pre-flight check stopped it: level lowered, budget spent, shadow switched on."""
    EXECUTING = "executing"
    FAILED = "failed"
    VERIFIED = "verified"
    VERIFICATION_FAILED = "verification_failed"
    COMPENSATED = "compensated"
    AWAITING_REVERT = "awaiting_revert"
    REVERTED = "reverted"
    SUPERSEDED = "superseded"
    """It waited for approval when a later round decided the same effect again, on more evidence."""


class ActionState(BaseModel):
    action_id: str
    action: str
    verdict: str
    status: ActionStatus = ActionStatus.PLANNED
    detail: str = ""
    votes: list[ApprovalVote] = Field(default_factory=list)
    waiting_on: list[str] = Field(default_factory=list, description="who may still vote")
    missing: list[str] = Field(default_factory=list, description="what the approval still needs, in words")
    deadline: datetime | None = None
    escalated: bool = False
    revert_at: datetime | None = None
    effect_owned: bool = Field(
        default=True, description="False when the effect pre-existed (another incident's): never undone from here"
    )
    by_veto_window: bool = Field(default=False, description="nobody answered: the level's veto window let it run")
    target: str | None = Field(default=None, description="the target param's value (controller.case.rounds.effect_key)")
    ttl_seconds: int | None = None
    severity: str | None = Field(default=None, description="its severity param (a ticket's): a later one may raise it")
    round: int = Field(default=1, description="the case's decision round that proposed it")


class IncidentStatus(BaseModel):
    key: str
    run_id: str = Field(default="", description="a signed vote is bound to it: a token never carries to a later run")
    phase: str
    alert_count: int
    planner: str | None = None
    playbook: str | None = None
    held_for_person: str | None = Field(default=None, description="why the planner handed the incident to a person")
    rounds: int = Field(default=0, description="how often the case was decided (it grows: controller/case/rounds.py)")
    runs: int = Field(default=1, description="workflow runs the case spans (continued as new as its history grew)")
    actions: list[ActionState] = Field(default_factory=list)
    report: dict[str, str] | None = None


class ReportRef(BaseModel):
    markdown: str
    json_path: str
    ledger_seq: int


PreflightRequest.model_rebuild()  # its votes are ApprovalVote, defined below it
PendingRevert.model_rebuild()  # defined before the models they hold
CarriedCase.model_rebuild()
IncidentStart.model_rebuild()
