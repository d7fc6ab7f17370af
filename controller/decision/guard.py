"""The guard: every proposed action passes registry, param validation, risk and policy before it may run.

The verdict itself is decided in one place, the Rego policy (policies/autonomy/decision.rego). This module's
job is to feed it canonical facts and to fail closed: an unknown action, invalid params, a broken config, an
engine that is down, an undefined or malformed answer, or an answer about another policy revision all become
`deny` with a reason that says which.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from autonomy_controller.actions.registry import FREE_TEXT_PARAMS
from autonomy_controller.controller.decision.engines.base import PolicyEngine, PolicyEngineError
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.levels import (
    HealthCap,
    LevelConfig,
    LevelResolution,
    resolve_most_restrictive,
)
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle
from autonomy_controller.controller.decision.risk import RiskContext, RiskScorer, Targets, evidence_confidence
from autonomy_controller.controller.decision.scoping import IncidentFacts, Scoping
from autonomy_controller.controller.decision.targets import (
    Checked,
    PlanShape,
    address_span,
    check_action,
    source_address,
    targets_of,
    unrelated_targets,
)
from autonomy_controller.controller.models import (
    ActionSpec,
    ApprovalRequirement,
    GuardDecision,
    ImpactSummary,
    Incident,
    Level,
    Plan,
    PolicyResult,
    ProposedAction,
    RiskAssessment,
    SourceStanding,
    TriageSummary,
    TrialDecision,
    Verdict,
    utcnow,
)
from autonomy_controller.controller.triage import RuleFeedback, SourceHistory, TriageResult, guard_summary, triage


class _RawPolicyResult(BaseModel):
    """The shape the policy must answer with; anything else is malformed and denied."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    reasons: list[StrictStr]
    deny_reasons: list[StrictStr]
    approval_reasons: list[StrictStr]
    approver_groups: list[StrictStr]
    quorum: StrictInt
    approval_requirements: list[ApprovalRequirement]
    veto_window: StrictBool
    policy_revision: StrictStr


def _decision(
    action: ProposedAction, resolution: LevelResolution, verdict: Verdict, reasons: list[str], **extra: Any
) -> GuardDecision:
    return GuardDecision(
        action_id=action.id,
        action=action.action,
        verdict=verdict,
        declared_level=resolution.declared,
        effective_level=resolution.effective,
        level_reasons=resolution.reasons,
        reasons=reasons,
        scope=resolution.scope,
        **extra,
    )


def _deny(action: ProposedAction, resolution: LevelResolution, reason: str, **extra: Any) -> GuardDecision:
    return _decision(action, resolution, Verdict.DENY, [reason], **extra)


def trial_of(scope: str, level: Level, decision: GuardDecision) -> TrialDecision:
    policy = decision.policy
    return TrialDecision(
        scope=scope,
        level=level,
        effective_level=decision.effective_level,
        level_reasons=decision.level_reasons,
        verdict=decision.verdict,
        reasons=decision.reasons,
        approver_groups=policy.approver_groups if policy else [],
        quorum=policy.quorum if policy else 0,
    )


def decision_id() -> str:
    """A random (version 4) UUID as text, like str(uuid.uuid4()) at about a third of its cost."""
    digits = (int.from_bytes(os.urandom(16)) & ~(0xF000 << 64 | 0xC << 60) | (0x4000 << 64 | 0x8 << 60)).to_bytes(16)
    text = digits.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _contradiction(result: _RawPolicyResult) -> str | None:
    """What a well-formed answer says against its own verdict (decision.rego's order: deny beats recommend beats
    approve beats execute), or None. An edited policy can lose a branch and still answer every key."""
    if result.deny_reasons and result.verdict is not Verdict.DENY:
        return f"{result.verdict.value} beside deny reasons ({'; '.join(result.deny_reasons)[:300]})"
    if result.approval_reasons and result.verdict is Verdict.EXECUTE:
        return f"execute beside approval reasons ({'; '.join(result.approval_reasons)[:300]})"
    if result.veto_window and result.verdict is not Verdict.APPROVE:
        return f"a veto window on {result.verdict.value}, which asks nobody"
    return None


class Guard:
    def __init__(self, bundle: PolicyBundle, engine: PolicyEngine, clock: Callable[[], float] = time.perf_counter):
        self.bundle = bundle
        self.engine = engine
        self.assets = AssetIndex(bundle.inventory, bundle.data.get("inventory", {}).get("domain"))
        self.users = bundle.identities.get("users", {}) or {}
        self.scorer = RiskScorer(bundle.levels.risk, self.assets, self.users)
        self.scoping = Scoping(self.assets, self.users, bundle.levels)
        self._clock = clock

    @property
    def asset_groups(self) -> dict[str, str]:
        """Asset name -> inventory group, for planners whose playbooks match on groups."""
        return {name: str(a["group"]) for name, a in self.assets.assets.items() if a.get("group")}

    def enrich(self, incident: Incident) -> Incident:
        return self.scoping.enrich(incident)

    def facts(self, incident: Incident) -> IncidentFacts:
        return self.scoping.facts(incident)

    def incident_resolution(
        self, facts: IncidentFacts, level: Level | None = None, health: HealthCap | None = None
    ) -> LevelResolution:
        return self.scoping.incident_resolution(facts, level, health)

    def triage(
        self, incident: Incident, history: SourceHistory | None = None, feedback: RuleFeedback | None = None
    ) -> TriageResult:
        """The incident's triage from the sensors' facts (levels/triage.yaml), with the source's past and people's
        feedback when the caller has them (the workflow reads both from the ledger)."""
        return triage(incident, self.bundle.levels.triage, history, feedback)

    def triage_summary(self, result: TriageResult) -> TriageSummary:
        return guard_summary(result, self.bundle.levels.triage)

    def decide_plan(
        self,
        incident: Incident,
        plan: Plan,
        level: Level | None = None,
        health: HealthCap | None = None,
        triage: TriageSummary | None = None,
        retriage: bool = True,
        now: datetime | None = None,
    ) -> list[GuardDecision]:
        """Decide every action of a plan. `level` overrides the scopes' assignment for the incident (what-if,
        tests; the scopes of the action's targets still apply); `health` is the circuit breaker's ceiling.

        `triage` is the controller's own (the workflow's, made with the ledger's history); without it the guard
        triages the alerts alone, or with `retriage=False` (the workflow: its plan step made none) gives the policy
        none, which meets no level's bar. Never a plan's: a planner's triage only lowers it (Plan.planner_triage).

        `now` is the decision time the policy sees (input.time): the clock when None (the live loop, evaluate);
        simulate passes the incident's last alert time, so a time rule judges a past alert by its own time.
        """
        at = now or utcnow()
        facts = self.facts(incident)
        resolution = self.incident_resolution(facts, level, health)
        proposer = f"planner:{plan.planner}"
        checked = [check_action(action) for action in plan.actions]
        shape = PlanShape.of(checked)
        own = triage if triage is not None or not retriage else self.triage_summary(self.triage(incident))
        judged = own.lowered_to(plan.planner_triage, proposer) if own is not None else None
        impact, standing = plan.impact, plan.standing
        decisions = [
            self.decide(incident, item, facts, resolution, proposer, shape, judged, at, impact, own, standing)
            for item in checked
        ]
        if level is None:  # a trial compares against the scopes' own assignment, not a what-if level
            for name, candidate in self.bundle.levels.scopes.trials_for(facts.scope):
                config = self._trial_config(name, candidate)
                trial_resolution = resolve_most_restrictive(config, list(facts.scopes), health=health)
                for item, decision in zip(checked, decisions, strict=True):
                    shadow = self._decide(
                        incident,
                        item,
                        facts,
                        trial_resolution,
                        proposer,
                        shape,
                        judged,
                        at,
                        config,
                        impact,
                        own,
                        standing,
                    )
                    decision.trials.append(trial_of(name, candidate, shadow))
        return decisions

    def _trial_config(self, scope: str, level: Level) -> LevelConfig:
        """The level config with the trial's scope at its candidate level (built per call: trials are rare)."""
        config = self.bundle.levels
        return replace(config, scopes=config.scopes.with_level(scope, level))

    def decide(
        self,
        incident: Incident,
        checked: Checked,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
        shape: PlanShape,
        triage: TriageSummary | None,
        now: datetime | None = None,
        impact: ImpactSummary | None = None,
        controller_triage: TriageSummary | None = None,
        standing: Sequence[SourceStanding] = (),
    ) -> GuardDecision:
        """One action's decision. `triage` is what the policy judges (the controller's, perhaps lowered by the
        planner); `controller_triage` the controller's own, which bounds the risk's evidence (risk.py)."""
        started = self._clock()
        at = now or utcnow()
        decision = self._decide(
            incident,
            checked,
            facts,
            resolution,
            proposer,
            shape,
            triage,
            at,
            impact=impact,
            own=controller_triage,
            standing=standing,
        )
        decision.decision_time = at
        decision.impact = impact.model_copy(update={"evidence": []}) if impact else None
        decision.standing = list(standing)
        decision.latency_ms = round((self._clock() - started) * 1000.0, 3)
        return decision

    def _decide(
        self,
        incident: Incident,
        checked: Checked,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
        shape: PlanShape,
        triage: TriageSummary | None,
        now: datetime,
        config: LevelConfig | None = None,
        impact: ImpactSummary | None = None,
        own: TriageSummary | None = None,
        standing: Sequence[SourceStanding] = (),
    ) -> GuardDecision:
        action, spec, params = checked.action, checked.spec, checked.params
        if spec is None:
            return _deny(action, resolution, checked.error or "action refused by the registry", triage=triage)
        targets = targets_of(spec, params, self.assets)
        resolution = self.scoping.action_resolution(incident, targets, resolution, config)
        risk = self.scorer.assess(
            RiskContext(
                spec=spec,
                params=params,
                targets=targets,
                action_confidence=action.confidence,
                evidence_confidence=evidence_confidence(incident.confidence, triage, own),
                environment=facts.environment,
                sensor_blocked=incident.blocked,
                impact=impact,
                source=incident.src_ip,
            )
        )
        try:
            input_doc = self.policy_input(
                incident,
                action,
                spec,
                params,
                targets,
                risk,
                facts,
                resolution,
                proposer,
                shape.of_class(spec),
                triage,
                now,
                impact,
                standing,
            )
        except DecisionTimeError as exc:
            return _deny(action, resolution, str(exc), risk=risk, triage=triage)
        try:
            raw = self.engine.evaluate(input_doc)
        except PolicyEngineError as exc:
            reason = f"policy engine ({self.engine.name}) gave no decision: {exc}"
            return _deny(action, resolution, reason, risk=risk, triage=triage)
        try:
            result = _RawPolicyResult.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'result'}: {e['msg']}" for e in exc.errors())
            return _deny(action, resolution, f"policy result malformed: {problems}", risk=risk, triage=triage)
        if result.policy_revision != self.bundle.revision:
            return _deny(
                action,
                resolution,
                f"policy revision mismatch: engine evaluated {result.policy_revision}, "
                f"controller expects {self.bundle.revision}",
                risk=risk,
                triage=triage,
            )
        if result.verdict is Verdict.APPROVE and (result.quorum < 1 or not result.approver_groups):
            reason = "policy asked for approval without approvers or quorum"
            return _deny(action, resolution, reason, risk=risk, triage=triage)
        contradiction = _contradiction(result)
        if contradiction:
            reason = f"policy result contradicts itself: {contradiction}"
            return _deny(action, resolution, reason, risk=risk, triage=triage)
        policy = PolicyResult(engine=self.engine.name, decision_id=decision_id(), **result.model_dump())
        return _decision(
            action,
            resolution,
            result.verdict,
            result.reasons,
            risk=risk,
            policy=policy,
            policy_revision=result.policy_revision,
            triage=triage,
        )

    @staticmethod
    def policy_input(
        incident: Incident,
        action: ProposedAction,
        spec: ActionSpec,
        params: dict[str, Any],
        targets: Targets,
        risk: RiskAssessment,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
        plan: dict[str, int] | None = None,
        triage: TriageSummary | None = None,
        now: datetime | None = None,
        impact: ImpactSummary | None = None,
        standing: Sequence[SourceStanding] = (),
    ) -> dict[str, Any]:
        """The input document (policies/README.md, schema/input.schema.json). Only validated, canonical values;
        never alert free text.

        Keys the policy reads come first in each object: regopy walks an object's keys in insertion order to
        find one (policies/README.md, "Cost model"); `time` is last, as no shipped rule reads it. The risk factors
        stay out: no rule reads them, and every value costs regopy to load (they are in the decision record).
        """
        return {
            "action": {
                "class": spec.action_class.value,
                "name": spec.name,
                "blast_radius": spec.blast_radius.value,
                "id": action.id,
                "reversible": spec.reversible,
                "undo_action": spec.undo_action,
                "params": facts_only(spec, params),
                "ttl_seconds": params.get("ttl_seconds"),
            },
            "targets": {
                "ips": targets.ips,
                "hosts": targets.hosts,
                "users": targets.users,
                "unrelated": unrelated_targets(facts, targets),
            },
            "level": {
                "effective": resolution.effective.value,
                "declared": resolution.declared.value,
                "downgrades": resolution.reasons,
            },
            "risk": {"score": risk.score},
            # Missing triage never meets a level's bar (policies/autonomy/decision.rego): a person looks.
            "triage": {"verdict": triage.verdict, "confidence": triage.confidence} if triage else None,
            "context": {
                "proposer": proposer,
                # Sensor facts only (controller/decision/entities.py): an address only a forgeable packet carried,
                # a host or an account an alert merely names, is contained alone never
                # (policies/guardrails/entities.rego).
                "connected_sources": [source_address(address) for address in facts.connected_sources],
                # How long the sensors knew each connected source before the case (controller/attackers/standing.py):
                # a long, steady history is a shared address's; it may only ask a person.
                "source_standing": [
                    {**source_address(s.address), "known_days": s.known_days, "answered": s.answered} for s in standing
                ],
                "source_assets": list(facts.source_assets),
                "guessed_users": sorted(facts.guessed_users),
                "category": incident.category.value,
                "severity": incident.severity.value,
                "confidence": incident.confidence,
                "sensor_blocked": incident.blocked,
                "environment": facts.scope.environment,
                "asset": facts.asset,
                "asset_group": facts.scope.asset_group,
                "src_ip": incident.src_ip,
                "alert_count": len(incident.alerts),
                "assets": list(facts.assets),
            },
            "plan": plan or {"class_actions": 1, "class_addresses": sum(address_span(ip) for ip in targets.ips)},
            "time": time_input(now or utcnow()),
            # Last: only impact rules read it (regopy's key walk, policies/README.md). Sensor facts only; missing
            # (an older plan, no triage) is "none", which no rule treats as an attack that got through.
            "impact": {"verdict": impact.verdict if impact else "none", "assets": impact.assets if impact else []},
        }


def facts_only(spec: ActionSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The params without those written for people (a ticket's title and body, a message): no rule decides on
    them, and they may quote the attacker or hold what an LLM wrote (actions/registry.py, FREE_TEXT_PARAMS)."""
    free = FREE_TEXT_PARAMS.get(spec.name)
    return {k: v for k, v in params.items() if k not in free} if free else params


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DecisionTimeError(ValueError):
    """A decision time a policy cannot read as a time: OPA's time built-ins take 64-bit nanoseconds since 1970."""


def time_input(at: datetime) -> dict[str, Any]:
    """input.time: the decision time as nanoseconds since the epoch (what OPA's time.* built-ins take) and as
    RFC 3339 text in UTC. A naive time is read as UTC. Exact to the microsecond (datetime's own precision).

    Raises DecisionTimeError outside the 64-bit range (1677-09-21 to 2262-04-11): the engines would disagree
    there (OPA and regopy fail the built-in, the wasm engine's do not), and a replayed alert's time is a claim."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    delta = at - _EPOCH
    now_ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000
    rfc3339 = at.isoformat().replace("+00:00", "Z")
    if not -(2**63) <= now_ns < 2**63:
        raise DecisionTimeError(
            f"decision time {rfc3339} is outside what a policy can read as a time (nanoseconds since 1970 in 64 "
            "bits: 1677-09-21 to 2262-04-11)"
        )
    return {"now_ns": now_ns, "rfc3339": rfc3339}


class UnavailableGuard:
    """Stands in when the config or policy cannot be loaded: every action is denied with the load error.

    The controller keeps answering (and recording why) instead of crashing or, worse, acting unguarded.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.asset_groups: dict[str, str] = {}

    def enrich(self, incident: Incident) -> Incident:
        return incident

    def decide_plan(
        self,
        incident: Incident,
        plan: Plan,
        level: Level | None = None,
        health: HealthCap | None = None,
        triage: TriageSummary | None = None,
        retriage: bool = True,
        now: datetime | None = None,
    ) -> list[GuardDecision]:
        lowest = Level.L1
        resolution = LevelResolution(declared=level or lowest, effective=lowest, reasons=[self.reason])
        reason = f"guard unavailable: {self.reason}"
        return [_deny(action, resolution, reason, decision_time=now or utcnow()) for action in plan.actions]
