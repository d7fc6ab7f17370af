"""The guard: every proposed action passes registry, param validation, risk and policy before it may run.

The verdict itself is decided in one place, the Rego policy (policies/autonomy/decision.rego). This module's
job is to feed it canonical facts and to fail closed: an unknown action, invalid params, a broken config, an
engine that is down, an undefined or malformed answer, or an answer about another policy revision all become
`deny` with a reason that says which.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from actions.registry import InvalidParamsError, UnknownActionError, get_spec, validate_params
from controller.addresses import address_facts
from controller.engines.base import PolicyEngine, PolicyEngineError
from controller.levels import HealthCap, IncidentScope, LevelConfig, LevelResolution, resolve_level
from controller.models import (
    ActionSpec,
    ApprovalRequirement,
    GuardDecision,
    Incident,
    Level,
    Plan,
    PolicyResult,
    ProposedAction,
    RiskAssessment,
    TargetKind,
    TrialDecision,
    Verdict,
)
from controller.policy_bundle import PolicyBundle
from controller.risk import AssetIndex, RiskContext, RiskScorer, Targets


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


# The order of an IP target's keys in the input: the policy reads bits most, then prefix_len, version, value and
# embedded (regopy finds a key by walking an object's keys in insertion order, input included: policies/README.md).
IP_TARGET_KEYS = ("bits", "prefix_len", "version", "value", "embedded", "num_addresses")


@lru_cache(maxsize=4096)
def _ip_target(value: str) -> tuple[tuple[str, Any], ...]:
    facts = address_facts(value)
    return tuple((key, facts[key]) for key in IP_TARGET_KEYS)


def ip_target(value: str) -> dict[str, Any]:
    """address_facts(value) in the input's key order, cached: the same address is decided on again and again."""
    return dict(_ip_target(value))


def targets_of(spec: ActionSpec, params: dict[str, Any]) -> Targets:
    value = params.get(spec.target_param) if spec.target_param else None
    if value is None:
        return Targets(ips=[], hosts=[], users=[])
    return Targets(
        ips=[ip_target(value)] if spec.target_kind is TargetKind.IP else [],
        hosts=[value] if spec.target_kind is TargetKind.HOST else [],
        users=[value] if spec.target_kind is TargetKind.USER else [],
    )


@dataclass(frozen=True)
class IncidentFacts:
    """What the guard knows about an incident beyond its alerts: where it happened, per the inventory."""

    scope: IncidentScope
    asset: str | None


class Guard:
    def __init__(self, bundle: PolicyBundle, engine: PolicyEngine, clock: Callable[[], float] = time.perf_counter):
        self.bundle = bundle
        self.engine = engine
        self.assets = AssetIndex(bundle.inventory)
        self.scorer = RiskScorer(bundle.levels.risk, self.assets, bundle.identities.get("users", {}) or {})
        self._clock = clock

    @property
    def asset_groups(self) -> dict[str, str]:
        """Asset name -> inventory group, for planners whose playbooks match on groups."""
        return {name: str(a["group"]) for name, a in self.assets.assets.items() if a.get("group")}

    def enrich(self, incident: Incident) -> Incident:
        """Name the attacked asset from the inventory when the sensor only gave its address.

        WAFs log the server's own address (dst_ip) but no trustworthy host name (the Host header is the
        attacker's), so the inventory is what tells planner and policy which asset was hit.
        """
        if incident.asset and self.assets.get(incident.asset):
            return incident
        for alert in incident.alerts:
            owner = self.assets.owner_of(address_facts(alert.dst_ip)) if alert.dst_ip else None
            if owner:
                return incident.model_copy(update={"asset": owner})
        return incident

    def facts(self, incident: Incident) -> IncidentFacts:
        asset_name = self.enrich(incident).asset
        asset = self.assets.get(asset_name) or {}
        scope = IncidentScope(
            category=incident.category,
            environment=str(asset.get("environment", "unknown")),
            asset_group=asset.get("group"),
            confidence=incident.confidence,
        )
        return IncidentFacts(scope=scope, asset=asset_name if asset else None)

    def decide_plan(
        self, incident: Incident, plan: Plan, level: Level | None = None, health: HealthCap | None = None
    ) -> list[GuardDecision]:
        """Decide every action of a plan. `level` overrides the scopes' assignment (what-if, tests); `health`
        is the circuit breaker's ceiling."""
        facts = self.facts(incident)
        resolution = resolve_level(self.bundle.levels, facts.scope, declared=level, health=health)
        proposer = f"planner:{plan.planner}"
        decisions = [self.decide(incident, action, facts, resolution, proposer) for action in plan.actions]
        if level is None:  # a trial compares against the scopes' own assignment, not a what-if level
            for name, candidate in self.bundle.levels.scopes.trials_for(facts.scope):
                trial_resolution = resolve_level(self._trial_config(name, candidate), facts.scope, health=health)
                for action, decision in zip(plan.actions, decisions, strict=True):
                    shadow = self._decide(incident, action, facts, trial_resolution, proposer)
                    decision.trials.append(trial_of(name, candidate, shadow))
        return decisions

    def _trial_config(self, scope: str, level: Level) -> LevelConfig:
        """The level config with the trial's scope at its candidate level (built per call: trials are rare)."""
        config = self.bundle.levels
        return replace(config, scopes=config.scopes.with_level(scope, level))

    def decide(
        self,
        incident: Incident,
        action: ProposedAction,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
    ) -> GuardDecision:
        started = self._clock()
        decision = self._decide(incident, action, facts, resolution, proposer)
        decision.latency_ms = round((self._clock() - started) * 1000.0, 3)
        return decision

    def _decide(
        self,
        incident: Incident,
        action: ProposedAction,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
    ) -> GuardDecision:
        try:
            spec = get_spec(action.action)
            params = validate_params(spec, action.params).model_dump(mode="json")
        except (UnknownActionError, InvalidParamsError) as exc:
            return _deny(action, resolution, str(exc))
        targets = targets_of(spec, params)
        risk = self.scorer.assess(
            RiskContext(
                spec=spec,
                params=params,
                targets=targets,
                action_confidence=action.confidence,
                evidence_confidence=incident.confidence,
                environment=facts.scope.environment,
                sensor_blocked=incident.blocked,
            )
        )
        input_doc = self.policy_input(incident, action, spec, params, targets, risk, facts, resolution, proposer)
        try:
            raw = self.engine.evaluate(input_doc)
        except PolicyEngineError as exc:
            return _deny(action, resolution, f"policy engine ({self.engine.name}) gave no decision: {exc}", risk=risk)
        try:
            result = _RawPolicyResult.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'result'}: {e['msg']}" for e in exc.errors())
            return _deny(action, resolution, f"policy result malformed: {problems}", risk=risk)
        if result.policy_revision != self.bundle.revision:
            return _deny(
                action,
                resolution,
                f"policy revision mismatch: engine evaluated {result.policy_revision}, "
                f"controller expects {self.bundle.revision}",
                risk=risk,
            )
        if result.verdict is Verdict.APPROVE and (result.quorum < 1 or not result.approver_groups):
            return _deny(action, resolution, "policy asked for approval without approvers or quorum", risk=risk)
        policy = PolicyResult(engine=self.engine.name, decision_id=decision_id(), **result.model_dump())
        return _decision(
            action,
            resolution,
            result.verdict,
            result.reasons,
            risk=risk,
            policy=policy,
            policy_revision=result.policy_revision,
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
    ) -> dict[str, Any]:
        """The input document (policies/README.md). Only validated, canonical values; never alert free text.

        Keys the policy reads come first in each object: regopy walks an object's keys in insertion order to
        find one (policies/README.md, "Cost model"). The risk factors stay out: no rule reads them, and every
        value costs regopy to load (they are in the decision record).
        """
        return {
            "action": {
                "class": spec.action_class.value,
                "name": spec.name,
                "blast_radius": spec.blast_radius.value,
                "id": action.id,
                "reversible": spec.reversible,
                "undo_action": spec.undo_action,
                "params": params,
            },
            "targets": {"ips": targets.ips, "hosts": targets.hosts, "users": targets.users},
            "level": {
                "effective": resolution.effective.value,
                "declared": resolution.declared.value,
                "downgrades": resolution.reasons,
            },
            "risk": {"score": risk.score},
            "context": {
                "proposer": proposer,
                "category": incident.category.value,
                "severity": incident.severity.value,
                "confidence": incident.confidence,
                "sensor_blocked": incident.blocked,
                "environment": facts.scope.environment,
                "asset": facts.asset,
                "asset_group": facts.scope.asset_group,
                "src_ip": incident.src_ip,
                "alert_count": len(incident.alerts),
            },
        }


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
        self, incident: Incident, plan: Plan, level: Level | None = None, health: HealthCap | None = None
    ) -> list[GuardDecision]:
        lowest = Level.L1
        resolution = LevelResolution(declared=level or lowest, effective=lowest, reasons=[self.reason])
        return [_deny(action, resolution, f"guard unavailable: {self.reason}") for action in plan.actions]
