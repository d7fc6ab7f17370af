"""The guard: every proposed action passes registry, param validation, risk and policy before it may run.

The verdict itself is decided in one place, the Rego policy (policies/autonomy/decision.rego). This module's
job is to feed it canonical facts and to fail closed: an unknown action, invalid params, a broken config, an
engine that is down, an undefined or malformed answer, or an answer about another policy revision all become
`deny` with a reason that says which.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr, ValidationError

from actions.registry import InvalidParamsError, UnknownActionError, get_spec, validate_params
from controller.addresses import address_facts
from controller.engines.base import PolicyEngine, PolicyEngineError
from controller.inventory import AssetIndex
from controller.levels import (
    HealthCap,
    IncidentScope,
    LevelConfig,
    LevelResolution,
    cap_for_target,
    resolve_level,
    resolve_most_restrictive,
)
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
    TriageSummary,
    TrialDecision,
    Verdict,
)
from controller.policy_bundle import PolicyBundle
from controller.risk import RiskContext, RiskScorer, Targets
from controller.triage import RuleFeedback, SourceHistory, TriageResult, guard_summary, triage


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


def targets_of(spec: ActionSpec, params: dict[str, Any], assets: AssetIndex) -> Targets:
    """The action's targets as the policy compares them: a host in its inventory spelling when it is ours (so
    `DC-01.`, the FQDN or its address are the crown jewel `dc-01`), else as DNS compares names."""
    value = params.get(spec.target_param) if spec.target_param else None
    if value is None:
        return Targets(ips=[], hosts=[], users=[])
    return Targets(
        ips=[ip_target(value)] if spec.target_kind is TargetKind.IP else [],
        hosts=[assets.canonical_host(value)] if spec.target_kind is TargetKind.HOST else [],
        users=[value] if spec.target_kind is TargetKind.USER else [],
    )


def _span(ip: dict[str, Any]) -> int:
    """Addresses one IP target covers, counted to at most 2^24: far above any cap, and below what regopy's
    input conversion keeps exact (it wraps large integers: 2^32 arrives as 0)."""
    return 1 << min(24, (32 if ip["version"] == 4 else 128) - ip["prefix_len"])


def unrelated_targets(facts: IncidentFacts, targets: Targets) -> list[str]:
    """The targets that name nothing the incident's sensors reported: an address (or a range holding none) that
    no alert came from or went to, a host whose address no alert carried, a user no alert named."""
    unrelated = [
        ip["value"]
        for ip in targets.ips
        if ip["value"] not in facts.addresses
        and not (ip["num_addresses"] > 1 and any(_within(address, ip["value"]) for address in facts.addresses))
    ]
    unrelated += [host for host in targets.hosts if host not in facts.assets]
    unrelated += [user for user in targets.users if user not in facts.users]
    return unrelated


def _within(address: str, network: str) -> bool:
    ip, net = ipaddress.ip_address(address), ipaddress.ip_network(network)
    return ip.version == net.version and ip in net


@dataclass(frozen=True)
class PlanShape:
    """How much of each action class a plan holds: the plan-level caps are judged on it, since a cap per
    action alone lets a plan reach any size by splitting (14 blocks of one address each)."""

    actions: dict[str, int]
    addresses: dict[str, int]

    @classmethod
    def of(cls, plan: Plan) -> PlanShape:
        actions: dict[str, int] = {}
        addresses: dict[str, int] = {}
        for action in plan.actions:
            try:
                spec = get_spec(action.action)
                params = validate_params(spec, action.params).model_dump(mode="json")
            except (UnknownActionError, InvalidParamsError):
                continue  # denied on its own; it never runs, so it adds nothing to what the plan does
            name = spec.action_class.value
            actions[name] = actions.get(name, 0) + 1
            value = params.get(spec.target_param) if spec.target_param else None
            if value is not None and spec.target_kind is TargetKind.IP:
                addresses[name] = min(addresses.get(name, 0) + _span(ip_target(value)), 1 << 24)
        return cls(actions=actions, addresses=addresses)

    def of_class(self, spec: ActionSpec) -> dict[str, int]:
        name = spec.action_class.value
        return {"class_actions": self.actions.get(name, 0), "class_addresses": self.addresses.get(name, 0)}


@dataclass(frozen=True)
class IncidentFacts:
    """What the guard knows about an incident beyond its alerts: where it happened, per the inventory.

    `assets` are the inventory assets whose addresses the sensors reported (alert src_ip/dst_ip): facts.
    `scopes` holds one scope per asset the incident touches, those plus any an alert merely names (its `asset`
    field, which a sender controls): naming an asset can only add a scope, and more scopes only lower the level.
    `scope` and `asset` are the governing (most restrictive) ones, for the policy's context and the planner.
    """

    scope: IncidentScope
    asset: str | None
    scopes: tuple[IncidentScope, ...] = ()
    assets: tuple[str, ...] = ()
    environment: str = "unknown"
    addresses: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()


# How much the risk model's "production" factor weighs an environment: the incident is as exposed as its most
# exposed asset.
_EXPOSURE = {"production": 2, "unknown": 1}


class Guard:
    def __init__(self, bundle: PolicyBundle, engine: PolicyEngine, clock: Callable[[], float] = time.perf_counter):
        self.bundle = bundle
        self.engine = engine
        self.assets = AssetIndex(bundle.inventory, bundle.data.get("inventory", {}).get("domain"))
        self.users = bundle.identities.get("users", {}) or {}
        self.scorer = RiskScorer(bundle.levels.risk, self.assets, self.users)
        self._clock = clock

    @property
    def asset_groups(self) -> dict[str, str]:
        """Asset name -> inventory group, for planners whose playbooks match on groups."""
        return {name: str(a["group"]) for name, a in self.assets.assets.items() if a.get("group")}

    def sensed_assets(self, incident: Incident) -> list[str]:
        """The assets whose addresses the sensors reported in the incident's alerts, first seen first."""
        seen: list[str] = []
        for alert in incident.alerts:
            for address in (alert.dst_ip, alert.src_ip):
                owner = self.assets.owner_of_address(address) if address else None
                if owner and owner not in seen:
                    seen.append(owner)
        return seen

    def enrich(self, incident: Incident) -> Incident:
        """Name the attacked asset for the planner: one the sensors' addresses show, else the asset an alert
        names (in its inventory spelling when it is ours).

        WAFs log the server's own address (dst_ip) but no trustworthy host name (the Host header is the
        attacker's), so the inventory is what tells planner and policy which asset was hit.
        """
        sensed = self.sensed_assets(incident)
        if sensed:
            asset = sensed[0]
        elif incident.asset:
            asset = self.assets.canonical_host(incident.asset)
        else:
            return incident
        return incident if asset == incident.asset else incident.model_copy(update={"asset": asset})

    def _asset_scope(self, incident: Incident, name: str | None, subject: str) -> IncidentScope:
        asset = self.assets.get(name) or {}
        return IncidentScope(
            category=incident.category,
            environment=str(asset.get("environment", "unknown")),
            asset_group=asset.get("group"),
            confidence=incident.confidence,
            subject=subject,
        )

    def facts(self, incident: Incident) -> IncidentFacts:
        sensed = self.sensed_assets(incident)
        entries: list[tuple[str | None, IncidentScope]] = [
            (name, self._asset_scope(incident, name, f"asset {name}")) for name in sensed
        ]
        for claim in dict.fromkeys(a.asset for a in incident.alerts if a.asset):
            name = self.assets.resolve_host(claim)
            if name is None or name not in sensed:  # one the inventory lacks adds an "unknown" scope
                entries.append((name, self._asset_scope(incident, name, f"asset {name or claim} named by an alert")))
        if not entries:
            entries.append((None, self._asset_scope(incident, None, "the incident (no asset of ours)")))
        levels = self.bundle.levels
        asset, scope = min(entries, key=lambda entry: resolve_level(levels, entry[1]).effective.rank)
        scopes = tuple(entry[1] for entry in entries)
        return IncidentFacts(
            scope=scope,
            asset=asset,
            scopes=scopes,
            assets=tuple(sensed),
            environment=max((sc.environment for sc in scopes), key=lambda env: _EXPOSURE.get(env, 0)),
            addresses=frozenset(a for alert in incident.alerts for a in (alert.src_ip, alert.dst_ip) if a),
            users=frozenset(alert.user for alert in incident.alerts if alert.user),
        )

    def incident_resolution(
        self, facts: IncidentFacts, level: Level | None = None, health: HealthCap | None = None
    ) -> LevelResolution:
        """The incident's level: the most restrictive of its scopes (`level` replaces their assignment)."""
        return resolve_most_restrictive(self.bundle.levels, list(facts.scopes or (facts.scope,)), level, health)

    def target_scopes(self, incident: Incident, targets: Targets) -> list[IncidentScope]:
        """One scope per inventory asset or directory user an action touches: the host it isolates, the assets
        owning an address it blocks, the user it disables (with the user's groups)."""
        scopes: list[IncidentScope] = []
        for ip in targets.ips:
            scopes += [self._asset_scope(incident, name, f"target asset {name}") for name in self.assets.owners_in(ip)]
        for host in targets.hosts:
            name = self.assets.get(host) and host  # targets_of gave ours their inventory name
            if name:
                scopes.append(self._asset_scope(incident, name, f"target asset {name}"))
        for user in targets.users:
            groups = tuple((self.users.get(user) or {}).get("groups", []) or [])
            if groups:
                scopes.append(
                    IncidentScope(
                        category=incident.category,
                        user_groups=groups,
                        confidence=incident.confidence,
                        subject=f"target user {user}",
                    )
                )
        return scopes

    def action_resolution(
        self, incident: Incident, targets: Targets, resolution: LevelResolution, config: LevelConfig | None = None
    ) -> LevelResolution:
        """The action's effective level: the incident's, lowered by the scopes of every target it touches (the
        incident's resolution already carries the health cap, so a lower target cap stays below it)."""
        for scope in self.target_scopes(incident, targets):
            cap = cap_for_target(config or self.bundle.levels, scope)
            if cap is not None:
                resolution = resolution.capped_by(cap, scope.subject)
        return resolution

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
    ) -> list[GuardDecision]:
        """Decide every action of a plan. `level` overrides the scopes' assignment for the incident (what-if,
        tests; the scopes of the action's targets still apply); `health` is the circuit breaker's ceiling.

        `triage` is the controller's own (the workflow's, made with the ledger's history); without it the guard
        triages the alerts alone. Never a plan's: a planner's triage only lowers it (Plan.planner_triage).
        """
        facts = self.facts(incident)
        resolution = self.incident_resolution(facts, level, health)
        proposer = f"planner:{plan.planner}"
        shape = PlanShape.of(plan)
        own = triage if triage is not None else self.triage_summary(self.triage(incident))
        judged = own.lowered_to(plan.planner_triage, proposer)
        decisions = [
            self.decide(incident, action, facts, resolution, proposer, shape, judged) for action in plan.actions
        ]
        if level is None:  # a trial compares against the scopes' own assignment, not a what-if level
            for name, candidate in self.bundle.levels.scopes.trials_for(facts.scope):
                config = self._trial_config(name, candidate)
                trial_resolution = resolve_most_restrictive(config, list(facts.scopes), health=health)
                for action, decision in zip(plan.actions, decisions, strict=True):
                    shadow = self._decide(incident, action, facts, trial_resolution, proposer, shape, judged, config)
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
        shape: PlanShape,
        triage: TriageSummary,
    ) -> GuardDecision:
        started = self._clock()
        decision = self._decide(incident, action, facts, resolution, proposer, shape, triage)
        decision.latency_ms = round((self._clock() - started) * 1000.0, 3)
        return decision

    def _decide(
        self,
        incident: Incident,
        action: ProposedAction,
        facts: IncidentFacts,
        resolution: LevelResolution,
        proposer: str,
        shape: PlanShape,
        triage: TriageSummary,
        config: LevelConfig | None = None,
    ) -> GuardDecision:
        try:
            spec = get_spec(action.action)
            params = validate_params(spec, action.params).model_dump(mode="json")
        except (UnknownActionError, InvalidParamsError) as exc:
            return _deny(action, resolution, str(exc), triage=triage)
        targets = targets_of(spec, params, self.assets)
        resolution = self.action_resolution(incident, targets, resolution, config)
        risk = self.scorer.assess(
            RiskContext(
                spec=spec,
                params=params,
                targets=targets,
                action_confidence=action.confidence,
                evidence_confidence=incident.confidence,
                environment=facts.environment,
                sensor_blocked=incident.blocked,
            )
        )
        input_doc = self.policy_input(
            incident, action, spec, params, targets, risk, facts, resolution, proposer, shape.of_class(spec), triage
        )
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
            "plan": plan or {"class_actions": 1, "class_addresses": sum(_span(ip) for ip in targets.ips)},
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
        self,
        incident: Incident,
        plan: Plan,
        level: Level | None = None,
        health: HealthCap | None = None,
        triage: TriageSummary | None = None,
    ) -> list[GuardDecision]:
        lowest = Level.L1
        resolution = LevelResolution(declared=level or lowest, effective=lowest, reasons=[self.reason])
        return [_deny(action, resolution, f"guard unavailable: {self.reason}") for action in plan.actions]
