"""Activities: every step of the loop that does I/O (planner, guard, ledger, adapters, reports).

One instance per worker holds what is expensive to build (the compiled policy, the ledger's connection pool,
the adapters). Every ledger write carries an idempotency key derived from the workflow id and run id, so a
retried activity returns the record its first attempt wrote instead of writing a second one.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio import activity

from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    Adapter,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.registry import get_spec, validate_params
from autonomy_controller.controller.approver_keys import (
    ApproverKeysError,
    Ballot,
    RefusalCode,
    TokenRefused,
    load_configured,
    verify_vote,
)
from autonomy_controller.controller.attackers.impact import case_impact
from autonomy_controller.controller.attackers.standing import source_standing
from autonomy_controller.controller.attackers.store import AttackerStore
from autonomy_controller.controller.case.rounds import split_in_hand
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.entities import connected_sources
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.levels import HealthCap, OnTimeout
from autonomy_controller.controller.decision.safety import SafetyStore
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.ledger.observations import CASE_LINES_MAX, case_observations
from autonomy_controller.controller.models import Alert, GuardDecision, Incident, Plan, ProposedAction, Verdict
from autonomy_controller.controller.oversight.reports import write_incident_report
from autonomy_controller.controller.planning import ClaudePlanner, ClaudeSettings, OfflinePlanner
from autonomy_controller.controller.planning.choice import make_plan
from autonomy_controller.controller.triage.ledger_view import history_and_feedback
from autonomy_controller.workflows import approvals
from autonomy_controller.workflows.case_reader import CaseReader, partial
from autonomy_controller.workflows.contracts import (
    ActionState,
    ApprovalCheck,
    ApprovalGroup,
    ApprovalSpec,
    ApprovalVerdict,
    ExecuteRequest,
    ExecutionResult,
    GuardedAction,
    GuardRequest,
    PlanRequest,
    PreflightRequest,
    PreflightResult,
    RecordRequest,
    ReportRef,
    VerificationResult,
    VerifyRequest,
)
from autonomy_controller.workflows.guard_provider import ConfigWatch, Fingerprint, GuardProvider

T = TypeVar("T")
CONTROLLER = "svc:controller"
BREAKER_INCIDENT = "_controller"
"""The ledger's incident key for records about the controller itself (circuit breaker trips)."""


def run_key() -> str:
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}"


async def heartbeating(work: Awaitable[T]) -> T:
    """Await `work` while telling Temporal this worker is alive, a third of the heartbeat timeout apart: a worker
    that dies mid-step (a Claude call takes tens of seconds) is then retried elsewhere after the heartbeat
    timeout, not after the step's whole start-to-close timeout. Without a heartbeat timeout (histories
    scheduled before it), it just awaits."""
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        return await work
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=timeout.total_seconds() / 3)
        if done:
            return task.result()
        activity.heartbeat()


class IncidentActivities:
    def __init__(
        self,
        settings: Settings,
        guards: GuardProvider,
        ledger: Ledger,
        adapters: dict[str, Adapter],
        claude: ClaudeSettings | None = None,
        claude_client: Any = None,
        threads: Executor | None = None,
    ) -> None:
        """`claude` (default: from ANTHROPIC_API_KEY and AUTONOMY_CLAUDE_*) turns the LLM planner on;
        `claude_client` is an `anthropic.Anthropic` to use instead of one built from the settings (tests);
        `threads` runs the async activities' blocking work (default: the event loop's default executor)."""
        self.settings = settings
        self.guards = guards
        self.ledger = ledger
        self.safety = SafetyStore(ledger.engine)
        self.adapters = adapters
        self._planner_lock = threading.Lock()
        self._playbooks = ConfigWatch(settings.playbooks_dir)
        self._planner_cache: tuple[tuple[int, Fingerprint], OfflinePlanner, ClaudePlanner | None] | None = None
        self.claude = claude if claude is not None else ClaudeSettings.from_env()  # a bad setting fails the start
        self.claude_client = claude_client
        self.threads = threads
        self.cases = CaseReader(ledger)
        self.attackers = AttackerStore(ledger)

    async def _blocking(self, work: Callable[..., T], *args: Any) -> T:
        """`asyncio.to_thread` on the worker's activity threads: the loop's default executor has min(32, cores + 4)
        threads, 6 on 2 cores, and bench.loop measured plans, executions and reports queueing for them (their
        ledger appends wait for a commit) while the worker's activity slots sat free. The activity's context
        (activity.info) goes along, as with to_thread."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.threads, context.run, work, *args)

    # -- decide -----------------------------------------------------------------------------------------

    @activity.defn(name="plan_incident")
    async def plan_incident(self, incident: Incident) -> Plan:
        """A case's only round, as workflows started before decision rounds (CASE_ROUNDS) plan it."""
        return await heartbeating(self._blocking(self._plan, PlanRequest(incident=incident), run_key()))

    @activity.defn(name="plan_round")
    async def plan_round(self, request: PlanRequest) -> Plan:
        """One round of a case (controller/case/rounds.py): what earlier rounds hold is not proposed again, and a later
        round's action ids carry the round (r2.a1), so votes, decisions and executions never mix rounds."""
        return await heartbeating(self._blocking(self._plan, request, run_key()))

    def _planners(self, guard: Guard | UnavailableGuard) -> tuple[OfflinePlanner, ClaudePlanner | None]:
        """The planners, rebuilt only when the guard (its asset groups) or the playbooks changed on disk.

        Claude's prompt prefix holds the playbook catalog, so it is rebuilt with the offline planner (and its
        cache stays warm between rebuilds).
        """
        fingerprint = (id(guard), self._playbooks.fingerprint())
        with self._planner_lock:
            if self._planner_cache is None or self._planner_cache[0] != fingerprint:
                offline = OfflinePlanner(self.settings.playbooks_dir, guard.asset_groups)
                claude = ClaudePlanner(self.claude, offline, self.claude_client) if self.claude else None
                self._planner_cache = (fingerprint, offline, claude)
            return self._planner_cache[1], self._planner_cache[2]

    def _plan(self, request: PlanRequest, key: str) -> Plan:
        guard = self.guards.current()
        # A case larger than the sample the workflow carries is read whole from the ledger (workflows/case_reader.py)
        incident = guard.enrich(self.cases.whole(request.incident, request.case))
        triage: dict[str, Any] = {}  # what the PLAN record adds about triage and impact
        summary, factors, impact, standing = None, [], None, []
        if isinstance(guard, Guard):  # triage before planning: playbooks match on it, the guard decides on it
            whole = self.cases.recorded(request.incident, request.case)
            recorded = self._as_recorded(incident) if whole is None else incident.model_copy(update={"alerts": whole})
            result = guard.triage(recorded, *history_and_feedback(self.ledger, incident))
            summary, factors = guard.triage_summary(result), result.factors
            triage = {"triage_detail": result.model_dump(mode="json")}
            answered = case_observations(self.ledger, incident.key)  # access-log lines: never in the case itself
            impact = case_impact(guard, [*recorded.alerts, *answered], self.settings)
            if len(answered) >= CASE_LINES_MAX:  # the PLAN record says impact read only the latest lines
                triage["access_lines_read"] = len(answered)
            standing = source_standing(self.attackers, connected_sources(recorded.alerts), incident.first_seen)
        choice = make_plan(guard, incident, *self._planners(guard), triage=summary, factors=factors, impact=impact)
        plan = choice.plan.model_copy(update={"triage": summary, "impact": impact, "standing": standing})
        extra = dict(triage)
        if partial(request.incident, request.case) and request.case is not None:
            extra["case"] = request.case.model_dump(mode="json")  # the ledger range this plan read: the audit's
        step = "" if request.round == 1 else f"/r{request.round}"
        if request.round > 1:
            fresh, held = split_in_hand(plan.actions, request.in_hand)
            fresh = [a.model_copy(update={"id": f"r{request.round}.{a.id}"}) for a in fresh]
            plan = plan.model_copy(update={"actions": fresh})
            extra |= {"round": request.round, "in_hand": held}
        if choice.claude is not None:
            transcript = self.ledger.append(
                incident.key,
                RecordKind.TRANSCRIPT,
                "planner:claude",
                choice.claude.transcript,
                idempotency_key=f"{key}/transcript{step}",
            )
            extra |= {
                "planner_outcome": choice.claude.outcome,
                "planner_reason": choice.claude.reason,
                "planner_error": choice.claude.error,
                "dropped": choice.claude.dropped,
                "transcript_seq": transcript.seq,
            }
        payload = {**plan.model_dump(mode="json"), **extra}
        self.ledger.append(
            incident.key, RecordKind.PLAN, f"planner:{plan.planner}", payload, idempotency_key=f"{key}/plan{step}"
        )
        return plan

    def _as_recorded(self, incident: Incident) -> Incident:
        """The incident with each alert as the ledger holds it: workflow history carries slim copies (no raw
        record), and triage reads the sensor's facts in the raw record (rule metadata, anomaly scores)."""
        recorded: dict[str, dict[str, Any]] = {}
        for record in self.ledger.records(incident.key, [RecordKind.ALERT]):
            recorded.setdefault(str(record.payload.get("id")), record.payload)
        alerts = [
            Alert.model_validate(recorded[a.id]) if a.id in recorded and not a.raw else a for a in incident.alerts
        ]
        return incident.model_copy(update={"alerts": alerts})

    # -- guard ------------------------------------------------------------------------------------------

    @activity.defn(name="guard_plan")
    def guard_plan(self, request: GuardRequest) -> list[GuardedAction]:
        guard = self.guards.current()
        health = self._health(guard)
        # plan.triage is the controller's, set by plan_incident (a planner's own is plan.planner_triage).
        decisions = guard.decide_plan(
            self.cases.whole(request.incident, request.case),
            request.plan,
            level=request.level,
            health=health,
            triage=request.plan.triage,
            retriage=False,
        )
        shadow = isinstance(guard, Guard) and guard.bundle.levels.scopes.shadow
        proposer = f"planner:{request.plan.planner}"
        guarded = [
            self._guarded(guard, action, decision, proposer, shadow)
            for action, decision in zip(request.plan.actions, decisions, strict=True)
        ]
        self.ledger.append_many(
            request.incident.key,
            RecordKind.DECISION,
            "guard",
            [
                (
                    {**item.decision.model_dump(mode="json"), "shadow": shadow, "proposer": proposer},
                    f"{request.workflow_id}/{request.run_id}/decision/{item.action.id}",
                )
                for item in guarded
            ],
        )
        return [_as_carried(item) for item in guarded]

    def _health(self, guard: Guard | UnavailableGuard) -> HealthCap | None:
        if not isinstance(guard, Guard):
            return None
        breaker = guard.bundle.levels.scopes.circuit_breaker
        cap = self.safety.health_cap(breaker)
        if cap is not None and breaker is not None:
            bucket = int(datetime.now(UTC).timestamp()) // breaker.window_seconds
            self.ledger.append(
                BREAKER_INCIDENT,
                RecordKind.LEVEL_CHANGE,
                CONTROLLER,
                {"lowered_to": cap.level.value, "why": cap.why},
                idempotency_key=f"breaker/{bucket}",
            )
        return cap

    def _guarded(
        self,
        guard: Guard | UnavailableGuard,
        action: ProposedAction,
        decision: GuardDecision,
        proposer: str,
        shadow: bool,
    ) -> GuardedAction:
        item = GuardedAction(action=action, decision=decision, proposer=proposer, shadow=shadow)
        if decision.verdict is Verdict.DENY:
            return item  # unknown action or invalid params may be why: nothing more to derive
        spec = get_spec(item.action.action)
        params = validate_params(spec, item.action.params).model_dump(mode="json")
        undo_params = {spec.target_param: params[spec.target_param]} if spec.target_param else None
        item = item.model_copy(
            update={
                "action_class": spec.action_class,
                "params": params,
                "reversible": spec.reversible,
                "undo_action": spec.undo_action,
                "undo_params": undo_params if spec.undo_action else None,
                "ttl_seconds": params.get("ttl_seconds"),
            }
        )
        if decision.verdict is Verdict.APPROVE and isinstance(guard, Guard):
            item = item.model_copy(update={"approval": self._approval_spec(guard, decision, proposer)})
        return item

    @staticmethod
    def _approval_spec(guard: Guard, decision: GuardDecision, proposer: str) -> ApprovalSpec:
        assert decision.policy is not None
        identities = guard.bundle.identities
        groups_data = identities.get("approver_groups", {}) or {}
        required = {r.group: r.quorum for r in decision.policy.approval_requirements}

        def group(name: str) -> ApprovalGroup:
            members = (groups_data.get(name) or {}).get("members", [])
            return ApprovalGroup(name=name, members=list(members), quorum=required.get(name, 0))

        rule = guard.bundle.levels.levels[decision.effective_level].approval
        # A veto window runs what nobody answered: only where the policy says the level alone asked for a person
        # (never a restore, a privileged account, a permanent or unrelated target: a guardrail's approval).
        on_timeout = rule.on_timeout
        if on_timeout is OnTimeout.EXECUTE_REVERSIBLE and not decision.policy.veto_window:
            on_timeout = OnTimeout.REJECT
        return ApprovalSpec(
            quorum=decision.policy.quorum,
            groups=[group(name) for name in decision.policy.approver_groups],
            proposer=proposer,
            service_identities=list(identities.get("service_identities", []) or []),
            timeout_seconds=rule.timeout_seconds,
            on_timeout=on_timeout,
            escalate_to=group(rule.escalate_to) if rule.escalate_to else None,
        )

    # -- who voted -------------------------------------------------------------------------------------

    @activity.defn(name="verify_approval")
    def verify_approval(self, check: ApprovalCheck) -> ApprovalVerdict:
        """Verify a vote's signed token against the approver keys config, read fresh for every vote so that a
        removed (revoked) key or a switched-on require_signed applies at once, without restarting workers.

        A refusal is an answer, not an error: it is recorded, and retrying would not change it. An unreadable or
        invalid config refuses every vote, signed or not (whether signatures are required is unknown then).
        """
        vote = check.vote
        left = self._left_the_groups(check)
        if left is not None:
            return left
        ballot = Ballot(check.incident_key, check.run_id, vote.action_id, vote.choice.value, vote.approver)
        try:
            keys = load_configured(self.settings.approver_keys_file)
            verified = verify_vote(keys, vote.token, ballot, datetime.now(UTC))
        except ApproverKeysError as exc:
            return ApprovalVerdict(accepted=False, code=RefusalCode.CONFIG.value, reason=f"approver keys config: {exc}")
        except TokenRefused as exc:
            reason = str(exc) if vote.token is None else f"signed token refused ({exc.code.value}): {exc}"
            return ApprovalVerdict(accepted=False, code=exc.code.value, reason=reason)
        if verified is None:
            return ApprovalVerdict(accepted=True)
        return ApprovalVerdict(accepted=True, signed=True, key_id=verified.key_id)

    def _left_the_groups(self, check: ApprovalCheck) -> ApprovalVerdict | None:
        """A refusal when the voter is in none of the action's approver groups as the identities data stands now:
        the workflow holds the groups as they were when the action was decided, and someone taken out since (moved
        on, or whose account is suspect) must no longer approve or veto. None when still a member."""
        if not check.groups:  # a workflow from before the groups were sent: its validator's check stands
            return None
        guard = self.guards.current()
        if not isinstance(guard, Guard):
            reason = f"the approver groups cannot be read now (guard unavailable: {guard.reason})"
            return ApprovalVerdict(accepted=False, code=RefusalCode.CONFIG.value, reason=reason)
        groups = guard.bundle.identities.get("approver_groups", {}) or {}
        members = {m for name in check.groups for m in ((groups.get(name) or {}).get("members") or [])}
        if check.vote.approver in members:
            return None
        return ApprovalVerdict(
            accepted=False,
            code=RefusalCode.NOT_ELIGIBLE.value,
            reason=f"{check.vote.approver} is not in an approver group of this action ({', '.join(check.groups)}) "
            "now: the identities data changed while the vote waited",
        )

    # -- the last check before acting -------------------------------------------------------------------

    @activity.defn(name="preflight")
    def preflight(self, request: PreflightRequest) -> PreflightResult:
        result = self._preflight(request).model_copy(update={"action_id": request.guarded.action.id})
        self.ledger.append(
            request.incident.key,
            RecordKind.PREFLIGHT,
            CONTROLLER,
            result.model_dump(mode="json"),
            idempotency_key=f"{request.idempotency_key}/preflight",
        )
        # The fresh decision is the record's; the workflow acts on go, shadow and the reasons, and each decision
        # kept in its history (~2 KB) is paid again by the server and every replay.
        return result.model_copy(update={"decision": None})

    def _preflight(self, request: PreflightRequest) -> PreflightResult:
        guard = self.guards.current()
        if not isinstance(guard, Guard):
            return PreflightResult(go=False, reasons=[f"guard unavailable: {guard.reason}"])
        scopes = guard.bundle.levels.scopes
        if scopes.shadow:
            return PreflightResult(go=False, shadow=True, reasons=["shadow mode on: decision recorded, nothing runs"])
        original = request.guarded
        # The impact and triage the decision was made on (the ledger's history included, the alerts' raw records
        # read), not ones made without them now.
        plan = Plan(
            incident_key=request.incident.key,
            planner=original.proposer.removeprefix("planner:"),
            impact=original.decision.impact,
            standing=original.decision.standing,
        )
        plan.actions.append(original.action)
        fresh = guard.decide_plan(
            self.cases.whole(request.incident, request.case),
            plan,
            level=request.level,
            health=self._health(guard),
            triage=original.decision.triage,
            retriage=False,
        )[0]
        if request.by_veto_window and not veto_still_applies(guard, fresh):
            return PreflightResult(
                go=False,
                decision=fresh,
                reasons=["re-evaluated just before running: nobody approved, and the veto window no longer applies"],
            )
        allowed = {Verdict.EXECUTE} | ({Verdict.APPROVE} if request.approval_satisfied else set())
        if fresh.verdict not in allowed:
            why = "; ".join(fresh.level_reasons + fresh.reasons) or fresh.verdict.value
            return PreflightResult(
                go=False, decision=fresh, reasons=[f"re-evaluated just before running: now {fresh.verdict}: {why}"]
            )
        short = self._votes_short(guard, fresh, request)
        if short:
            return PreflightResult(
                go=False,
                decision=fresh,
                reasons=[f"re-evaluated just before running: the votes no longer satisfy the policy: {short}"],
            )
        assert original.action_class is not None
        budget = guard.bundle.levels.levels[fresh.effective_level].budgets.get(original.action_class)
        # "per incident": the workflow's continue-as-new chain (older histories: the run that asked)
        run_scope = request.budget_scope or request.idempotency_key.rsplit("/", 1)[0]
        answer = self.safety.reserve(budget, original.action_class, run_scope, request.idempotency_key)
        if not answer.granted:
            return PreflightResult(go=False, decision=fresh, reasons=[answer.reason])
        return PreflightResult(
            go=True, decision=fresh, reasons=[f"{fresh.verdict} at {fresh.effective_level}", answer.reason]
        )

    def _votes_short(self, guard: Guard, fresh: GuardDecision, request: PreflightRequest) -> str:
        """What the counted votes lack under the fresh decision's approval rule (a quorum or group raised, an
        approver taken out of the group while the vote waited); empty when they still suffice. Only for an
        approval people gave: a veto window has its own re-check."""
        if fresh.verdict is not Verdict.APPROVE or request.by_veto_window or fresh.policy is None:
            return ""
        spec = self._approval_spec(guard, fresh, request.guarded.proposer)
        eligible = spec.eligible(request.escalated)
        counted = [v for v in request.votes if v.approver in eligible]
        state = ActionState(
            action_id=request.guarded.action.id, action=request.guarded.action.action, verdict="approve"
        )
        state.votes = counted
        return "; ".join(approvals.missing(state, spec))

    # -- act, verify ------------------------------------------------------------------------------------

    @activity.defn(name="execute_action")
    async def execute_action(self, request: ExecuteRequest) -> ExecutionResult:
        return await self._blocking(self._execute, request)

    def _execute(self, request: ExecuteRequest) -> ExecutionResult:
        kind = {"execute": RecordKind.EXECUTION, "compensate": RecordKind.COMPENSATION, "revert": RecordKind.REVERT}[
            request.purpose
        ]
        record_key = f"{request.idempotency_key}/{request.purpose}"
        done = self.ledger.find(record_key)
        if done is not None:  # the adapter ran and the result was recorded; only the completion was lost
            return ExecutionResult(outcome=ActionOutcome.model_validate(done.payload["outcome"]), ledger_seq=done.seq)
        adapter = self.adapters.get(request.action)
        if adapter is None:
            outcome = ActionOutcome(status=ActionStatus.FAILED, detail=f"no adapter configured for {request.action}")
        else:
            try:
                outcome = adapter.execute(_adapter_request(request))
            except AdapterError as exc:
                if _is_transient(exc) and not _last_attempt():
                    raise  # the retry policy of the action's class applies
                outcome = ActionOutcome(status=ActionStatus.FAILED, detail=f"{type(exc).__name__}: {exc}")
        record = self.ledger.append(
            request.incident_key,
            kind,
            CONTROLLER,
            {"request": request.model_dump(mode="json"), "outcome": outcome.model_dump(mode="json")},
            idempotency_key=record_key,
        )
        return ExecutionResult(outcome=outcome, ledger_seq=record.seq)

    @activity.defn(name="verify_action")
    async def verify_action(self, request: VerifyRequest) -> VerificationResult:
        return await self._blocking(self._verify, request)

    def _verify(self, request: VerifyRequest) -> VerificationResult:
        execution = request.execution
        adapter = self.adapters.get(execution.action)
        if adapter is None:
            outcome = VerifyOutcome(ok=False, detail=f"no adapter configured for {execution.action}")
        else:
            try:
                outcome = adapter.verify(_adapter_request(execution), request.outcome)
            except AdapterError as exc:
                if _is_transient(exc) and not _last_attempt():
                    raise
                outcome = VerifyOutcome(ok=False, detail=f"{type(exc).__name__}: {exc}")
        if not outcome.ok and execution.action_class is not None:
            self.safety.record_failure(
                execution.action_class, execution.incident_key, f"{execution.idempotency_key}/{execution.purpose}"
            )
        record = self.ledger.append(
            execution.incident_key,
            RecordKind.VERIFICATION,
            CONTROLLER,
            {
                "action_id": execution.action_id,
                "action": execution.action,
                "purpose": execution.purpose,
                **outcome.model_dump(mode="json"),
            },
            idempotency_key=f"{execution.idempotency_key}/{execution.purpose}/verify",
        )
        return VerificationResult(outcome=outcome, ledger_seq=record.seq)

    # -- ledger notes and the report --------------------------------------------------------------------

    @activity.defn(name="record")
    def record(self, request: RecordRequest) -> int:
        return self.ledger.append(
            request.incident_key,
            request.kind,
            request.actor,
            request.payload,
            idempotency_key=request.idempotency_key,
        ).seq

    @activity.defn(name="write_report")
    async def write_report(self, incident_key: str) -> ReportRef:
        return await self._blocking(self._report, incident_key, run_key())

    def _report(self, incident_key: str, key: str) -> ReportRef:
        paths = write_incident_report(self.ledger, incident_key, self.settings.reports_dir)
        record = self.ledger.append(
            incident_key,
            RecordKind.REPORT,
            CONTROLLER,
            {"markdown": str(paths.markdown), "json": str(paths.json), "sha256": paths.sha256},
            idempotency_key=f"{key}/report",
        )
        return ReportRef(markdown=str(paths.markdown), json_path=str(paths.json), ledger_seq=record.seq)

    def close(self) -> None:
        self._playbooks.close()

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.plan_incident,
            self.plan_round,
            self.guard_plan,
            self.verify_approval,
            self.preflight,
            self.execute_action,
            self.verify_action,
            self.record,
            self.write_report,
        ]


def _adapter_request(request: ExecuteRequest) -> ActionRequest:
    """The adapter's view of one step. Its key is `<workflow>/<run>/<action id>/<purpose>` (also the ledger's
    record key, so the format stays); an undo (compensate, revert) runs under the same action id as the
    execution it reverses, and says so explicitly (`purpose`, `undoes` = that execution's key) so adapters can
    tell the effect it created from one another owner holds without parsing keys."""
    return ActionRequest(
        incident_key=request.incident_key,
        action_id=request.action_id,
        action=request.action,
        params=request.params,
        idempotency_key=f"{request.idempotency_key}/{request.purpose}",
        purpose=request.purpose,
        undoes=None if request.purpose == "execute" else f"{request.idempotency_key}/execute",
    )


def _is_transient(exc: AdapterError) -> bool:
    return isinstance(exc, TransientAdapterError)


def _last_attempt() -> bool:
    """On the last attempt a transient error is recorded as a failure instead of raised into the void."""
    info = activity.info()
    maximum = info.retry_policy.maximum_attempts if info.retry_policy else 0
    return bool(maximum) and info.attempt >= maximum


def veto_still_applies(guard: Guard, fresh: GuardDecision) -> bool:
    """Silence runs an action only while the fresh decision still allows a veto window: the policy says the level
    alone asks (a guardrail added since, a breaker or kill switch lowering the level, end it)."""
    if fresh.verdict is not Verdict.EXECUTE and not (fresh.policy and fresh.policy.veto_window):
        return False
    if fresh.verdict is Verdict.EXECUTE:
        return True
    rule = guard.bundle.levels.levels[fresh.effective_level].approval
    return rule.on_timeout is OnTimeout.EXECUTE_REVERSIBLE


def _as_carried(item: GuardedAction) -> GuardedAction:
    """The guarded action as the workflow carries it (its history, each pre-flight's input, a continued run's
    pending reverts): the risk's score without its factors, no policy result. The DECISION record just written
    holds the whole decision; the workflow reads the verdict and reasons, and pre-flight the triage and impact.
    Three whole decisions were ~9 KB of every incident's history."""
    risk = item.decision.risk
    slim = item.decision.model_copy(
        update={"risk": risk.model_copy(update={"factors": []}) if risk else None, "policy": None}
    )
    return item.model_copy(update={"decision": slim})
