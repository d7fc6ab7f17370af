"""IncidentWorkflow: one durable run per incident, decide -> guard -> approve -> act -> verify -> revert -> report.

The workflow only orchestrates; every fact comes from an activity (planner, guard, ledger, adapters), so its
history is the audit's skeleton and the ledger holds the flesh. It fails closed at each step: a planner that
fails plans nothing, a guard that fails denies everything, a pre-flight check that fails holds the action.

Started by signal-with-start (workflows/client.py) under the incident key, so an alert storm from one source
is one run with every alert attached. Approvals arrive as updates, checked by a validator (workflows/approvals.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from autonomy_controller.actions.adapters.base import ActionOutcome
    from autonomy_controller.controller.case import rounds as cases
    from autonomy_controller.controller.case.digest import CaseDigest, CaseRef
    from autonomy_controller.controller.decision.levels import OnTimeout
    from autonomy_controller.controller.models import STAGES, Category, Incident, Plan, Verdict, stage_rank
    from autonomy_controller.workflows import approvals
    from autonomy_controller.workflows.activities import IncidentActivities
    from autonomy_controller.workflows.contracts import (
        ActionState,
        ActionStatus,
        AlertBatch,
        ApprovalCheck,
        ApprovalSpec,
        ApprovalVerdict,
        ApprovalVote,
        CarriedCase,
        ExecuteRequest,
        GuardedAction,
        GuardRequest,
        IncidentStart,
        IncidentStatus,
        PendingRevert,
        PlanRequest,
        PreflightRequest,
        PreflightResult,
        RecordRequest,
        ReportRef,
        VerifyRequest,
        VoteChoice,
    )
    from autonomy_controller.workflows.retries import PLAN_RETRY, PLAN_TIMEOUT, STEP_RETRY, retry_for

STEP_TIMEOUT = timedelta(seconds=60)
ACTION_TIMEOUT = timedelta(seconds=30)
LOCAL_TIMEOUT = timedelta(seconds=20)
PLAN_HEARTBEAT = timedelta(seconds=10)
"""The planning step heartbeats while it works (workflows/activities.py `heartbeating`): a worker lost mid-plan
is noticed after this, and the step retried on another worker, instead of after PLAN_TIMEOUT (3 min)."""
VERIFY_TIMEOUT = timedelta(seconds=30)
"""The approver's client waits on the verification: a few quick attempts, then the vote is refused."""
VERIFY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)
CASE_ROUNDS = "case-decision-rounds"
"""Patch: a case is decided again as its evidence grows (controller/case/rounds.py). Histories recorded before it
replay the single round: plan once, act, wait for quiet."""
CONTINUE_AS_NEW = "case-continues-as-new"
"""Patch: a case whose history grew past IncidentStart.history_limit continues as new, carrying its state
(CarriedCase). Histories recorded before it replay without ever continuing."""
CASE_EVIDENCE = "case-evidence-bounded"
"""Patch: a case carries a bounded digest of its evidence (controller/case/digest.py) and is decided again when
late evidence (an access-log line) raises its stage without a new alert. Histories recorded before it replay
deciding again only on new alerts."""
LATE_VOTES = "votes-refused-once-decided"
"""Patch: a vote whose verification ends after its action's approval was decided is refused (too late), not
counted. Histories recorded before it replay counting such a vote."""
REJECTIONS_FIRST = "rejections-verified-before-approval"
"""Patch: the approval wait does not settle on approval (nor let a veto window pass) while a reject for the action
is being verified; counted, it rejects, refused, the approval stands. Histories recorded before it replay
settling on the first complete approval."""
VERIFIED_VOTES = "votes-verified-by-worker"
"""Patch: votes are verified (signed token, require_signed) before they count. Histories recorded before it
replay the old handler, which counted the vote at once."""


def _error_text(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return f"{type(cause).__name__}: {cause}"


def _undo_detail(outcome: ActionOutcome, done: str) -> str:
    """What an undo (TTL revert or compensation) did, for the action's final detail. An undo leaves the effect
    in place when another owner holds it now (actions/adapters/nftables: a block handed over to the incident
    whose need ends later, an isolation another execution set); saying "reverted" would claim a lift that did
    not happen. Only reads the activity's result: the workflow's commands are the same (replay-safe)."""
    if outcome.evidence.get("left_in_place") is True:
        owner = outcome.evidence.get("owner")
        holder = f"incident/key {owner!r}" if owner else "something set outside the controller"
        return f"{done}: left in place, {holder} holds it now and lifts it itself"
    return done


@workflow.defn
class IncidentWorkflow:
    @workflow.init
    def __init__(self, start: IncidentStart) -> None:
        """The case so far: empty, or carried from the run that continued as new (restored here, before any
        signal of this run is handled, so an alert signalled meanwhile joins the carried ones)."""
        self.case = CaseDigest()
        """The case's evidence: exact counts, a bounded sample, its place in the ledger (never every alert)."""
        self.last_alert_at = workflow.now()
        self.phase = "collecting"
        self.key = ""
        self.plan: Plan | None = None
        self.states: dict[str, ActionState] = {}
        self.specs: dict[str, ApprovalSpec] = {}
        self.report: ReportRef | None = None
        self.recorded_votes: dict[str, int] = {}
        self.verifying: dict[str, dict[str, VoteChoice]] = {}
        """Per action, approvers whose vote is being verified, and which way: not counted yet, but a second vote is
        a double, and a reject being verified holds the approval wait (REJECTIONS_FIRST)."""
        self.approved: set[str] = set()
        """Actions whose approval is decided (approved, or the veto window passed) while their status still says
        awaiting_approval (the ledger note and the pre-flight check come first): a vote now is refused."""
        self.rounds = 0
        self.superseded: dict[str, str] = {}
        """Per action waiting for approval, the later round's action that decided the same effect again."""
        self.stage = self.decided_stage = 0
        """The highest kill-chain stage rank the batches showed (AlertBatch.stage; 0 in older histories)."""
        self.decided: tuple[int, frozenset[Category]] = (0, frozenset())
        """Alerts and categories at the last decision: the case is due again when they grew
        (controller/case/rounds.py)."""
        self.reverts: dict[str, PendingRevert] = {}
        """Per action, the TTL revert its handler is sleeping on: what a continued run takes over."""
        self.runs = 1
        self.may_continue = False
        self.stage_alone = False
        """CASE_EVIDENCE: a stage risen by late evidence alone decides the case again."""
        if start.carried is not None:
            self._restore(start.carried)

    def _restore(self, carried: CarriedCase) -> None:
        if carried.digest is not None:
            self.case = carried.digest.model_copy(deep=True)
        else:  # carried by a run that held every alert
            self.case.add(carried.alerts)
        self.last_alert_at = carried.last_alert_at
        self.stage, self.decided_stage = carried.stage, carried.decided_stage
        self.decided = (carried.decided_alerts, frozenset(carried.decided_categories))
        self.rounds, self.plan, self.runs = carried.rounds, carried.plan, carried.runs + 1
        self.states = {s.action_id: s for s in carried.states}
        self.superseded = dict(carried.superseded)

    # -- inputs from outside ---------------------------------------------------------------------------

    @workflow.signal
    def add_alerts(self, batch: AlertBatch) -> None:
        """Attach alerts; an alert already attached (a resubmission) is not counted twice (the batch's ledger
        tally counts; controller/case/digest.py). A batch without alerts brings late evidence: its stage."""
        if self.case.add(batch.alerts, batch.tally):
            self.last_alert_at = workflow.now()
        if batch.stage in STAGES:  # from the signal's payload: deterministic on replay
            self.stage = max(self.stage, stage_rank(batch.stage))

    @workflow.update
    async def vote(self, vote: ApprovalVote) -> ActionState:
        """Count a vote once the worker verified it (its signed token, or that unsigned votes are allowed).

        While it is verified the vote does not count (the wait loop must never settle on a vote that may yet be
        refused), but it holds the approver's place so that a concurrent second vote fails validation. A vote
        the worker refuses is recorded here, by the worker, with the reason, and the update fails.
        """
        if not workflow.patched(VERIFIED_VOTES):
            return await self._count_unverified(vote)
        state = self.states[vote.action_id]
        verifying = self.verifying.setdefault(vote.action_id, {})
        verifying[vote.approver] = vote.choice  # before any await: a concurrent duplicate vote now fails validation
        try:
            verdict = await self._verify(vote)
            if verdict.accepted:  # the action may have moved on (timed out, rejected) while the vote was verified
                decided = vote.action_id in self.approved and workflow.patched(LATE_VOTES)
                try:
                    approvals.check_vote(state, self.specs.get(vote.action_id), vote, decided=decided)
                except approvals.VoteRefused as exc:
                    verdict = ApprovalVerdict(accepted=False, code="too_late", reason=str(exc))
        finally:
            verifying.pop(vote.approver, None)
        if not verdict.accepted:
            recorded = await self._record_refusal(vote, verdict)
            raise ApplicationError(
                verdict.reason, type=approvals.REFUSED_AND_RECORDED if recorded else "VoteRefused", non_retryable=True
            )
        counted = vote.model_copy(update={"token": None, "signed": verdict.signed, "key_id": verdict.key_id})
        state.votes.append(counted)  # no await since the check above: nothing changed in between
        how = f"signed with key {verdict.key_id}" if verdict.signed else "unsigned: --as, identity not verified"
        await self._record_vote(
            vote,
            {
                "signed": verdict.signed,
                **({"key_id": verdict.key_id, "token": vote.token} if verdict.signed else {}),
                "detail": how,
            },
        )
        return self._after_vote(state, vote)

    async def _verify(self, vote: ApprovalVote) -> ApprovalVerdict:
        info = workflow.info()
        spec, state = self.specs[vote.action_id], self.states[vote.action_id]  # the validator checked both exist
        groups = [g.name for g in spec.asked(state.escalated)]
        try:
            return await workflow.execute_local_activity_method(
                IncidentActivities.verify_approval,
                ApprovalCheck(incident_key=info.workflow_id, run_id=info.run_id, vote=vote, groups=groups),
                start_to_close_timeout=LOCAL_TIMEOUT,
                schedule_to_close_timeout=VERIFY_TIMEOUT,
                retry_policy=VERIFY_RETRY,
            )
        except ActivityError as exc:  # fail closed: a vote nobody could verify is not counted
            return ApprovalVerdict(accepted=False, code="error", reason=f"vote verification failed: {_error_text(exc)}")

    async def _record_refusal(self, vote: ApprovalVote, verdict: ApprovalVerdict) -> bool:
        """The worker's own record of a refused vote (the client's word is not needed, nor trusted, for it).

        Written by svc:controller: the claimed approver may be exactly what was forged. False when the ledger
        could not be written: the client then records the refusal, as it does for validation failures.
        """
        update = workflow.current_update_info()
        try:
            await self._record(
                vote.action_id,
                "approval",
                "svc:controller",
                {
                    "action_id": vote.action_id,
                    "event": "vote_refused",
                    "approver": vote.approver,
                    "choice": vote.choice.value,
                    "detail": verdict.reason,
                    "code": verdict.code,
                    "with_token": vote.token is not None,
                },
                f"vote-refused/{vote.approver}/{update.id if update else '-'}",
            )
        except ActivityError:
            return False
        return True

    async def _count_unverified(self, vote: ApprovalVote) -> ActionState:
        """The handler as it was before VERIFIED_VOTES: only histories recorded before that replay through it."""
        state = self.states[vote.action_id]
        state.votes.append(vote)  # before any await: a concurrent duplicate vote now fails validation
        await self._record_vote(vote, {"signed": vote.signed})
        return self._after_vote(state, vote)

    async def _record_vote(self, vote: ApprovalVote, signature: dict[str, object]) -> None:
        await self._record(
            vote.action_id,
            "approval",
            f"user:{vote.approver}",
            {
                "action_id": vote.action_id,
                "event": "vote",
                "approver": vote.approver,
                "choice": vote.choice.value,
                "comment": vote.comment,
                **signature,
            },
            f"vote/{vote.approver}",
        )

    def _after_vote(self, state: ActionState, vote: ApprovalVote) -> ActionState:
        self.recorded_votes[vote.action_id] = self.recorded_votes.get(vote.action_id, 0) + 1
        if state.status is ActionStatus.AWAITING_APPROVAL:  # the vote may have settled it while we recorded
            spec = self.specs[vote.action_id]
            state.waiting_on, state.missing = approvals.waiting_on(state, spec), approvals.missing(state, spec)
        return state

    @vote.validator
    def _check_vote(self, vote: ApprovalVote) -> None:
        approvals.check_ballot(vote)
        approvals.check_vote(
            self.states.get(vote.action_id),
            self.specs.get(vote.action_id),
            vote,
            self.verifying.get(vote.action_id, ()),
            decided=vote.action_id in self.approved,
            run_id=workflow.info().run_id,
        )

    @workflow.query
    def status(self) -> IncidentStatus:
        return IncidentStatus(
            key=self.key,
            run_id=workflow.info().run_id,
            phase=self.phase,
            alert_count=self.case.count,
            planner=self.plan.planner if self.plan else None,
            playbook=self.plan.playbook if self.plan else None,
            held_for_person=self.plan.hold_reason if self.plan else None,
            rounds=self.rounds,
            runs=self.runs,
            actions=list(self.states.values()),
            report={"markdown": self.report.markdown, "json": self.report.json_path} if self.report else None,
        )

    # -- the loop --------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: IncidentStart) -> IncidentStatus:
        self.key = start.key
        await workflow.wait_condition(lambda: self.case.count > 0)
        if workflow.patched(CASE_ROUNDS):
            await self._decide_in_rounds(start)
        else:
            await self._decide_once(start)
        self.phase = "reporting"
        self.report = await workflow.execute_activity_method(
            IncidentActivities.write_report, self.key, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )
        self.phase = "closed"
        return self.status()

    async def _decide_in_rounds(self, start: IncidentStart) -> None:
        """Decide the case, then again each time its evidence has grown enough (controller/case/rounds.py), while the
        actions of earlier rounds go their own way; close once it is quiet and every action has finished.

        A run that continued an earlier one (start.carried) first takes over its pending TTL reverts and waits,
        as that run did, for the case to be due again."""
        self.may_continue = workflow.patched(CONTINUE_AS_NEW)
        self.stage_alone = workflow.patched(CASE_EVIDENCE)
        carried = start.carried.reverts if start.carried is not None else []
        handlers = [asyncio.create_task(self._revert_when_due(p, self.states[p.request.action_id])) for p in carried]
        resumed = start.carried is not None
        while True:
            if not resumed:
                if start.settle_seconds:
                    await workflow.sleep(start.settle_seconds)
                self.decided = (self.case.count, frozenset(self.case.categories))
                self.decided_stage = self.stage
                incident, ref = self.case.incident(start.key), self.case.ref(start.key)
                self.rounds += 1
                self.phase = "planning"
                plan = await self._plan_round(incident, ref)
                if plan is not None and plan.actions:
                    self.phase = "guarding"
                    guarded = await self._guard(incident, plan, start, ref)
                    self._supersede(guarded)
                    handlers += [asyncio.create_task(self._handle(incident, item, start, ref)) for item in guarded]
            resumed = False
            self.phase = "acting"
            if not await self._next_round(start, handlers):
                await asyncio.gather(*handlers)  # all done: an action's error surfaces here, as it did before rounds
                return

    async def _next_round(self, start: IncidentStart, handlers: list[asyncio.Task[None]]) -> bool:
        """True when the case is due another decision; False once it is quiet and all its actions are done.
        Continues as new (never returns) once the history is long and nothing in flight would be lost."""

        def due() -> bool:
            stage = (self.decided_stage, self.stage)
            return cases.due(
                self.case.count, self.case.categories, self.decided, self.rounds, stage, stage_alone=self.stage_alone
            )

        def finished() -> bool:
            return all(task.done() for task in handlers)

        def full() -> bool:
            return self.may_continue and self._history_full(start) and self._carriable(handlers)

        while True:
            if due():
                return True
            if full():
                self._continue_as_new(start)
            quiet_left = start.quiet_seconds - (workflow.now() - self.last_alert_at).total_seconds()
            if quiet_left <= 0 and finished():
                return False
            try:
                if quiet_left > 0:
                    await workflow.wait_condition(lambda: due() or full(), timeout=timedelta(seconds=quiet_left))
                else:
                    await workflow.wait_condition(lambda: due() or finished() or full())
            except TimeoutError:
                pass

    # -- continue-as-new -------------------------------------------------------------------------------

    @staticmethod
    def _history_full(start: IncidentStart) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= start.history_limit

    def _carriable(self, handlers: list[asyncio.Task[None]]) -> bool:
        """Nothing in flight but TTL reverts sleeping on their timers: every other action handler has finished
        (an approval still waiting keeps the run: a signed vote names its run), and no vote is being handled."""
        sleeping = sum(not task.done() for task in handlers)
        return sleeping == len(self.reverts) and workflow.all_handlers_finished()

    def _continue_as_new(self, start: IncidentStart) -> NoReturn:
        carried = CarriedCase(
            digest=self.case,
            last_alert_at=self.last_alert_at,
            stage=self.stage,
            decided_stage=self.decided_stage,
            decided_alerts=self.decided[0],
            decided_categories=sorted(self.decided[1]),
            rounds=self.rounds,
            plan=self.plan,
            states=list(self.states.values()),
            superseded=self.superseded,
            reverts=list(self.reverts.values()),
            runs=self.runs,
        )
        workflow.continue_as_new(start.model_copy(update={"carried": carried}))

    def _supersede(self, guarded: list[GuardedAction]) -> None:
        """A new round's decision on an effect an earlier action still waits on ends that wait (more evidence)."""
        for item in guarded:
            key = cases.effect_key(item.action.action, item.action.params)
            for state in self.states.values():
                if (
                    state.status is ActionStatus.AWAITING_APPROVAL
                    and state.round < self.rounds
                    and (state.action, state.target) == key
                ):
                    self.superseded[state.action_id] = item.action.id

    async def _decide_once(self, start: IncidentStart) -> None:
        """The single round of workflows started before CASE_ROUNDS (their histories replay through it)."""
        if start.settle_seconds:
            await workflow.sleep(start.settle_seconds)
        incident = self.case.incident(start.key)
        self.phase = "planning"
        plan = await self._plan(incident)
        if plan is not None and plan.actions:
            self.phase = "guarding"
            guarded = await self._guard(incident, plan, start)
            self.phase = "acting"
            await asyncio.gather(*(self._handle(incident, item, start) for item in guarded))
        self.phase = "closing"
        await self._quiet(start.quiet_seconds)

    async def _plan_round(self, incident: Incident, ref: CaseRef | None) -> Plan | None:
        in_hand = [
            cases.InHand(
                action_id=s.action_id,
                action=s.action,
                target=s.target,
                ttl_seconds=s.ttl_seconds,
                status=s.status,
                severity=s.severity,
            )
            for s in self.states.values()
        ]
        request = PlanRequest(incident=incident, round=self.rounds, in_hand=in_hand, case=ref)
        step = "plan-error" if self.rounds == 1 else f"plan-error/r{self.rounds}"
        try:
            self.plan = await workflow.execute_activity_method(
                IncidentActivities.plan_round,
                request,
                start_to_close_timeout=PLAN_TIMEOUT,
                heartbeat_timeout=PLAN_HEARTBEAT,
                retry_policy=PLAN_RETRY,
            )
        except ActivityError as exc:
            await self._record(None, "plan", "svc:controller", {"error": f"planner failed: {_error_text(exc)}"}, step)
            return None
        self._track(self.plan)
        return self.plan

    async def _plan(self, incident: Incident) -> Plan | None:
        try:
            self.plan = await workflow.execute_activity_method(
                IncidentActivities.plan_incident,
                incident,
                start_to_close_timeout=PLAN_TIMEOUT,
                heartbeat_timeout=PLAN_HEARTBEAT,
                retry_policy=PLAN_RETRY,
            )
        except ActivityError as exc:
            await self._record(
                None, "plan", "svc:controller", {"error": f"planner failed: {_error_text(exc)}"}, "plan-error"
            )
            return None
        self._track(self.plan)
        return self.plan

    def _track(self, plan: Plan) -> None:
        for action in plan.actions:
            _, target = cases.effect_key(action.action, action.params)
            self.states[action.id] = ActionState(
                action_id=action.id,
                action=action.action,
                verdict="undecided",
                target=target,
                ttl_seconds=cases.ttl_of(action.params),
                severity=cases.severity_of(action.params),
                round=max(1, self.rounds),
            )

    async def _guard(
        self, incident: Incident, plan: Plan, start: IncidentStart, ref: CaseRef | None = None
    ) -> list[GuardedAction]:
        info = workflow.info()
        request = GuardRequest(
            incident=incident, plan=plan, level=start.level, workflow_id=info.workflow_id, run_id=info.run_id, case=ref
        )
        try:
            return await workflow.execute_local_activity_method(
                IncidentActivities.guard_plan,
                request,
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=STEP_RETRY,
                schedule_to_close_timeout=timedelta(minutes=5),
            )
        except ActivityError as exc:  # fail closed: no decision, nothing runs
            reason = f"guard failed: {_error_text(exc)}"
            for state in self.states.values():
                state.verdict, state.status, state.detail = Verdict.DENY.value, ActionStatus.NOT_RUN, reason
            await self._record(
                None,
                "decision",
                "guard",
                {"error": reason, "verdict": "deny", "policy_revision": "", "risk": None},
                "guard-error",
            )
            return []

    async def _handle(
        self, incident: Incident, item: GuardedAction, start: IncidentStart, ref: CaseRef | None = None
    ) -> None:
        state = self.states[item.action.id]
        decision = item.decision
        state.verdict = decision.verdict.value
        if decision.verdict in (Verdict.DENY, Verdict.RECOMMEND):
            state.status, state.detail = ActionStatus.NOT_RUN, "; ".join(decision.reasons)
            return
        if item.shadow:
            state.status, state.detail = ActionStatus.SHADOW, f"shadow mode: would {decision.verdict.value}"
            return
        satisfied = False
        if decision.verdict is Verdict.APPROVE:
            satisfied = await self._await_approval(item, state)
            if not satisfied:
                return
        await self._run(incident, item, state, start, satisfied, ref)

    async def _await_approval(self, item: GuardedAction, state: ActionState) -> bool:
        spec = item.approval
        if spec is None:
            state.status, state.detail = ActionStatus.NOT_RUN, "approval needed but no approvers were derived"
            return False
        self.specs[state.action_id] = spec
        state.status = ActionStatus.AWAITING_APPROVAL
        state.waiting_on, state.missing = approvals.waiting_on(state, spec), approvals.missing(state, spec)
        rejections_first = workflow.patched(REJECTIONS_FIRST)

        def vetoes_pending() -> bool:
            """A reject is being verified: the approval must not settle on approval before its outcome."""
            return rejections_first and VoteChoice.REJECT in self.verifying.get(state.action_id, {}).values()

        def settled() -> bool:
            superseded = state.action_id in self.superseded  # never set in a single-round history
            if superseded or approvals.rejected_by(state) is not None:
                return True
            return not approvals.missing(state, spec) and not vetoes_pending()

        while True:
            state.deadline = workflow.now() + timedelta(seconds=spec.timeout_seconds)
            try:
                await workflow.wait_condition(settled, timeout=timedelta(seconds=spec.timeout_seconds))
            except TimeoutError:
                if spec.on_timeout is OnTimeout.ESCALATE and not state.escalated and spec.escalate_to is not None:
                    state.escalated = True
                    state.waiting_on = approvals.waiting_on(state, spec)
                    await self._note_approval(
                        state, "escalated", f"no decision in time: escalated to {spec.escalate_to.name}"
                    )
                    continue
                if spec.on_timeout is not OnTimeout.EXECUTE_REVERSIBLE or not item.reversible:
                    state.status, state.detail = ActionStatus.TIMED_OUT, f"no approval within {spec.timeout_seconds} s"
                    await self._note_approval(state, "timed_out", state.detail)
                    state.waiting_on, state.deadline = [], None
                    return False
                if vetoes_pending():  # the window closed on a veto still in verification: its outcome decides
                    await workflow.wait_condition(lambda: not vetoes_pending())  # bounded by VERIFY_TIMEOUT
                vetoed = approvals.rejected_by(state) is not None or state.action_id in self.superseded
                if not (rejections_first and vetoed):  # vetoed: settled below, as a rejection (or superseded)
                    # decided before any await: the state says so, and a veto from now on is too late
                    state.waiting_on, state.deadline, state.by_veto_window = [], None, True
                    self.approved.add(state.action_id)
                    await self._note_approval(
                        state, "veto_window_passed", "nobody rejected in time: a reversible action runs"
                    )
                    return True
            if state.action_id in self.superseded:
                state.status, state.waiting_on, state.deadline, state.missing = ActionStatus.SUPERSEDED, [], None, []
                state.detail = f"superseded by {self.superseded[state.action_id]}: decided again on more evidence"
                await self._note_approval(state, "superseded", state.detail)
                return False
            if workflow.patched("votes-recorded-before-settlement"):  # the ledger shows the vote, then its effect
                await workflow.wait_condition(  # and a reject in verification meanwhile is waited for too
                    lambda: self.recorded_votes.get(state.action_id, 0) >= len(state.votes) and not vetoes_pending()
                )
            state.waiting_on, state.deadline, state.missing = [], None, []
            rejecter = approvals.rejected_by(state)
            if rejecter is not None:
                state.status, state.detail = ActionStatus.REJECTED, f"rejected by {rejecter}"
                if workflow.patched("record-rejection"):  # histories recorded before this replay without it
                    await self._note_approval(state, "rejected", state.detail)
                return False
            self.approved.add(state.action_id)  # before any await: a rejection from now on is too late
            await self._note_approval(state, "approved", "by " + ", ".join(approvals.approvers(state)))
            return True

    async def _run(
        self,
        incident: Incident,
        item: GuardedAction,
        state: ActionState,
        start: IncidentStart,
        satisfied: bool,
        ref: CaseRef | None = None,
    ) -> None:
        key = self._action_key(item.action.id)
        try:
            pre = await workflow.execute_local_activity_method(
                IncidentActivities.preflight,
                PreflightRequest(
                    incident=incident,
                    case=ref,
                    guarded=item,
                    level=start.level,
                    idempotency_key=key,
                    approval_satisfied=satisfied,
                    by_veto_window=state.by_veto_window,
                    votes=list(state.votes),
                    escalated=state.escalated,
                    budget_scope=self._budget_scope(),
                ),
                start_to_close_timeout=LOCAL_TIMEOUT,
                retry_policy=STEP_RETRY,
                schedule_to_close_timeout=timedelta(minutes=2),
            )
        except ActivityError as exc:
            pre = PreflightResult(go=False, reasons=[f"pre-flight check failed: {_error_text(exc)}"])
        if not pre.go:
            state.status = ActionStatus.SHADOW if pre.shadow else ActionStatus.HELD
            state.detail = "; ".join(pre.reasons)
            return
        state.status = ActionStatus.EXECUTING
        request = ExecuteRequest(
            incident_key=self.key,
            action_id=item.action.id,
            action=item.action.action,
            params=item.params,
            idempotency_key=key,
            action_class=item.action_class,
        )
        undoable = item.reversible and item.undo_action is not None
        if await self._act_and_verify(request, state) is None:
            if state.status is ActionStatus.VERIFICATION_FAILED and undoable and state.effect_owned:
                await self._undo(item, request, state, "compensate")
            return
        state.status, state.detail = ActionStatus.VERIFIED, "done and verified"
        if not state.effect_owned:
            state.detail = "verified; the effect was already in place (another incident's), so this one never undoes it"
        elif item.ttl_seconds and undoable:
            state.status = ActionStatus.AWAITING_REVERT
            state.revert_at = workflow.now() + timedelta(seconds=item.ttl_seconds)
            await self._revert_when_due(PendingRevert(item=item, request=request), state, item.ttl_seconds)

    async def _revert_when_due(self, pending: PendingRevert, state: ActionState, seconds: float | None = None) -> None:
        """Sleep until the action's revert_at (`seconds`, or what is left of it in a continued run), then revert.
        While it sleeps, the run may continue as new and the next run takes the revert over (CarriedCase)."""
        if seconds is None:
            assert state.revert_at is not None
            seconds = (state.revert_at - workflow.now()).total_seconds()
        self.reverts[state.action_id] = pending
        if seconds > 0:
            await workflow.sleep(seconds)
        del self.reverts[state.action_id]
        await self._undo(pending.item, pending.request, state, "revert")

    async def _act_and_verify(self, request: ExecuteRequest, state: ActionState) -> ActionOutcome | None:
        """The executed outcome when the action ran and its verification held; None (state says why) otherwise."""
        try:
            executed = await workflow.execute_activity_method(
                IncidentActivities.execute_action,
                request,
                start_to_close_timeout=ACTION_TIMEOUT,
                retry_policy=retry_for(request.action_class),
            )
        except ActivityError as exc:
            state.status, state.detail = ActionStatus.FAILED, f"{request.purpose} failed: {_error_text(exc)}"
            await self._record(
                request.action_id,
                "execution",
                "svc:controller",
                {"action_id": request.action_id, "error": state.detail},
                f"{request.purpose}-error",
            )
            return None
        if executed.outcome.status.value == "failed":
            state.status, state.detail = ActionStatus.FAILED, executed.outcome.detail
            return None
        if request.purpose == "execute" and executed.outcome.evidence.get("mine") is False:
            state.effect_owned = False  # e.g. another incident's block already covers the address
        try:
            verified = await workflow.execute_activity_method(
                IncidentActivities.verify_action,
                VerifyRequest(execution=request, outcome=executed.outcome),
                start_to_close_timeout=ACTION_TIMEOUT,
                retry_policy=retry_for(request.action_class),
            )
            ok, detail = verified.outcome.ok, verified.outcome.detail
        except ActivityError as exc:
            ok, detail = False, f"verification could not run: {_error_text(exc)}"
        if not ok:
            state.status, state.detail = ActionStatus.VERIFICATION_FAILED, detail
            return None
        return executed.outcome

    async def _undo(self, item: GuardedAction, original: ExecuteRequest, state: ActionState, purpose: str) -> None:
        """Compensation (verification failed) or TTL revert: the registry's undo action, through its adapter."""
        assert item.undo_action is not None
        request = original.model_copy(
            update={"action": item.undo_action, "params": item.undo_params or {}, "purpose": purpose}
        )
        before = state.status
        undone = await self._act_and_verify(request, state)
        if undone is not None:
            if purpose == "revert":
                state.status = ActionStatus.REVERTED
                state.detail = _undo_detail(undone, f"reverted after {item.ttl_seconds} s")
            else:
                state.status = ActionStatus.COMPENSATED
                state.detail = _undo_detail(undone, f"verification failed; undone ({before.value})")

    async def _quiet(self, quiet_seconds: float) -> None:
        """Stay open while alerts keep coming, so a storm's tail joins this incident instead of a new one."""
        while True:
            remaining = quiet_seconds - (workflow.now() - self.last_alert_at).total_seconds()
            if remaining <= 0:
                return
            await workflow.sleep(remaining)

    # -- ledger notes ----------------------------------------------------------------------------------

    @staticmethod
    def _budget_scope() -> str:
        """The case across continue-as-new: per-incident budgets are not renewed by a continued run."""
        info = workflow.info()
        return f"{info.workflow_id}/{info.first_execution_run_id}"

    def _action_key(self, action_id: str) -> str:
        info = workflow.info()
        return f"{info.workflow_id}/{info.run_id}/{action_id}"

    async def _note_approval(self, state: ActionState, event: str, detail: str) -> None:
        await self._record(
            state.action_id,
            "approval",
            "svc:controller",
            {"action_id": state.action_id, "event": event, "detail": detail},
            event,
        )

    async def _record(
        self, action_id: str | None, kind: str, actor: str, payload: dict[str, object], step: str
    ) -> None:
        info = workflow.info()
        key = f"{info.workflow_id}/{info.run_id}/{action_id or '-'}/{step}"
        await workflow.execute_local_activity_method(
            IncidentActivities.record,
            RecordRequest(incident_key=self.key, kind=kind, actor=actor, payload=payload, idempotency_key=key),
            start_to_close_timeout=LOCAL_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
