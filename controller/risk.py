"""Risk score 0-100 from declared weights (levels/risk.yaml) over facts about the action and its targets.

Every factor is shown with its value, weight, contribution and a one-line why, so a security lead can see why
an action needed approval and tune one weight instead of rewriting policy. Free text never enters a factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.levels import RiskModel
from autonomy_controller.controller.models import (
    ActionClass,
    ActionSpec,
    BlastRadius,
    ImpactSummary,
    RiskAssessment,
    TargetKind,
    TriageSummary,
)

CREDITS = frozenset({"impact"})
"""Factors that lower the score instead of taking a share of it: they add no weight to the total, so a case they
do not apply to scores exactly as it would without them."""
GOT_THROUGH = frozenset({"likely", "confirmed"})
CONTAINMENT = {
    ActionClass.CONTAIN_NETWORK,
    ActionClass.CONTAIN_HOST,
    ActionClass.CONTAIN_IDENTITY,
}


def _worst(scored: Iterable[tuple[float, str]]) -> tuple[float, str]:
    """The highest-valued (value, why) pair: an action is as risky as its riskiest target."""
    return max(scored, key=lambda pair: pair[0], default=(0.0, "no target"))


def evidence_confidence(alert_confidence: float, triage: TriageSummary | None) -> float:
    """How sure the evidence makes us that there is an attack to contain: the alerts' own confidence, lowered to
    what triage found. Triage's confidence grows with the evidence (one request caps it, a hundred do not), so
    one alert and a hundred no longer score the same risk; it only ever lowers the sensors' figure."""
    if triage is None:
        return alert_confidence
    if triage.verdict == "malicious":
        attack = triage.confidence
    elif triage.verdict == "noise":
        attack = 1.0 - triage.confidence
    else:
        attack = 0.5  # suspicious: triage cannot tell either way
    return min(alert_confidence, attack)


@dataclass(frozen=True)
class Targets:
    """What one action touches: canonical address facts, host names, user names."""

    ips: list[dict[str, Any]]
    hosts: list[str]
    users: list[str]

    @property
    def count(self) -> int:
        return sum(ip["num_addresses"] for ip in self.ips) + len(self.hosts) + len(self.users)


@dataclass(frozen=True)
class RiskContext:
    spec: ActionSpec
    params: dict[str, Any]
    targets: Targets
    action_confidence: float
    evidence_confidence: float
    environment: str
    sensor_blocked: bool
    impact: ImpactSummary | None = None
    """The case's impact verdict (controller/attackers/impact.py): sensor facts only, never request text."""
    source: str | None = None
    """The case's source address: the only target the impact credit applies to."""


class RiskScorer:
    def __init__(self, model: RiskModel, assets: AssetIndex, users: dict[str, Any]) -> None:
        self.model = model
        self.assets = assets
        self.users = users

    def assess(self, ctx: RiskContext) -> RiskAssessment:
        raw = [
            ("blast_radius", *self._blast_radius(ctx)),
            ("irreversibility", *self._irreversibility(ctx)),
            ("asset_criticality", *self._criticality(ctx)),
            ("target_count", *self._target_count(ctx)),
            ("uncertainty", *self._uncertainty(ctx)),
            ("production", *self._production(ctx)),
            ("sensor_blocked", *self._sensor_blocked(ctx)),
            ("impact", *self._impact(ctx)),
        ]
        weights: dict[str, float] = {str(k): v for k, v in self.model.weights.items()}
        total_weight = sum(w for name, w in weights.items() if name not in CREDITS)
        factors: list[dict[str, Any]] = []
        for name, value, why in raw:
            weight = weights.get(name, 0.0)
            sign = -1.0 if name in CREDITS else 1.0
            contribution = round(sign * 100.0 * weight * value / total_weight, 2)
            factors.append(
                {"name": name, "value": round(value, 4), "weight": weight, "contribution": contribution, "why": why}
            )
        score = round(min(100.0, max(0.0, sum(f["contribution"] for f in factors))), 1)
        # One validation for the whole assessment: the guard assesses every action, and one call into pydantic
        # costs far less than eight.
        return RiskAssessment.model_validate({"score": score, "factors": factors})

    @staticmethod
    def _blast_radius(ctx: RiskContext) -> tuple[float, str]:
        radius = ctx.spec.blast_radius
        if radius is BlastRadius.SINGLE_ADDRESS and any(ip["num_addresses"] > 1 for ip in ctx.targets.ips):
            radius = BlastRadius.NETWORK_RANGE
        return radius.weight, f"{ctx.spec.name} affects {radius.value.replace('_', ' ')}"

    @staticmethod
    def _irreversibility(ctx: RiskContext) -> tuple[float, str]:
        if ctx.spec.blast_radius is BlastRadius.NONE:
            return 0.0, "no state to undo"
        if not ctx.spec.reversible:
            return 1.0, "cannot be undone"
        if ctx.params.get("ttl_seconds"):
            return 0.0, f"reverts by itself after {ctx.params['ttl_seconds']}s"
        return 0.3, f"reversible by {ctx.spec.undo_action}, but only when someone runs it"

    def _criticality(self, ctx: RiskContext) -> tuple[float, str]:
        kind = ctx.spec.target_kind
        if kind is TargetKind.NONE or ctx.spec.blast_radius is BlastRadius.NONE:
            return 0.0, "touches no asset"
        if kind is TargetKind.USER:
            return _worst(self._user_criticality(user) for user in ctx.targets.users)
        names = list(ctx.targets.hosts) if kind is TargetKind.HOST else []
        if kind is TargetKind.IP:
            owners = [self.assets.owner_of(ip) for ip in ctx.targets.ips]
            if not any(owners):
                return self.model.external_address, "address belongs to no asset in the inventory (external)"
            names = [o for o in owners if o]
        return _worst(self._asset_criticality(name) for name in names)

    def _asset_criticality(self, name: str) -> tuple[float, str]:
        asset = self.assets.get(name)
        if asset is None:
            return self.model.unknown_asset, f"{name} is not in the inventory"
        if asset.get("crown_jewel"):
            return self.model.criticality["crown_jewel"], f"{name} is a crown-jewel asset"
        level = str(asset.get("criticality", "medium"))
        value = self.model.criticality.get(level, self.model.unknown_asset)  # type: ignore[call-overload]
        return value, f"{name} has {level} criticality"

    def _user_criticality(self, user: str) -> tuple[float, str]:
        entry = self.users.get(user)
        if entry is None:
            return self.model.unknown_user, f"user {user} is not in the directory"
        if entry.get("privileged"):
            return self.model.privileged_user, f"user {user} is privileged"
        return self.model.regular_user, f"user {user} is a regular account"

    @staticmethod
    def _target_count(ctx: RiskContext) -> tuple[float, str]:
        count = ctx.targets.count
        if count <= 1:
            return 0.0, f"{count} target"
        return min(1.0, math.log2(count) / 16), f"{count} targets in one action"

    @staticmethod
    def _uncertainty(ctx: RiskContext) -> tuple[float, str]:
        confidence = min(ctx.action_confidence, ctx.evidence_confidence)
        return 1.0 - confidence, (
            f"confidence {confidence:.2f} (proposal {ctx.action_confidence:.2f}, evidence "
            f"{ctx.evidence_confidence:.2f})"
        )

    @staticmethod
    def _production(ctx: RiskContext) -> tuple[float, str]:
        if ctx.environment == "production":
            return 1.0, "incident is on a production asset"
        if ctx.environment == "unknown":
            return 0.5, "environment unknown"
        return 0.0, f"environment {ctx.environment}"

    @staticmethod
    def _impact(ctx: RiskContext) -> tuple[float, str]:
        """An attack that got through lowers the bar for blocking its source (a credit, see CREDITS), and only
        that: the attacker chooses which requests get through, so the credit must never ease isolating our own
        host or disabling an account."""
        if ctx.spec.action_class is not ActionClass.CONTAIN_NETWORK:
            return 0.0, "not a block"
        if not ctx.targets.ips or any(ip["value"] != ctx.source for ip in ctx.targets.ips):
            return 0.0, "not a block of the case's source"
        if ctx.impact is None or ctx.impact.verdict not in GOT_THROUGH:
            verdict = ctx.impact.verdict if ctx.impact else "unknown"
            return 0.0, f"impact {verdict}: no attack got through"
        reached = ", ".join(ctx.impact.assets) or "an asset"
        return 1.0, f"impact {ctx.impact.verdict}: an attack reached {reached}, containing its source gains more"

    @staticmethod
    def _sensor_blocked(ctx: RiskContext) -> tuple[float, str]:
        if ctx.spec.action_class not in CONTAINMENT:
            return 0.0, "not a containment action"
        if ctx.sensor_blocked:
            return 1.0, "the sensor already blocked the attack: containment adds risk with less to gain"
        return 0.0, "the attack was not blocked by the sensor"
