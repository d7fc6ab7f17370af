"""Which scopes an incident and an action touch, and so at which level each action is decided.

An incident touches every inventory asset whose address the sensors reported (facts) and any asset an alert
merely names (a claim: it can only add a scope, and more scopes only lower the level). An action touches the
assets and users it targets, and a case (one attacker) each attack category its alerts show. The level is the
lowest of all of them (README, "How a verdict is made").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from autonomy_controller.controller.case.grouping import SUPPORTING, categories_by_weight
from autonomy_controller.controller.decision.entities import connected_sources, guessed_users, source_assets
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.levels import (
    HealthCap,
    IncidentScope,
    LevelConfig,
    LevelResolution,
    cap_for_target,
    resolve_level,
    resolve_most_restrictive,
)
from autonomy_controller.controller.decision.risk import Targets
from autonomy_controller.controller.models import Incident, Level


@dataclass(frozen=True)
class IncidentFacts:
    """What the guard knows about an incident beyond its alerts: where it happened, per the inventory.

    `assets` are the inventory assets whose addresses the sensors reported (alert src_ip/dst_ip): facts.
    `scopes` holds one scope per asset the incident touches, those plus any an alert merely names (its `asset`
    field, which a sender controls): naming an asset can only add a scope, and more scopes only lower the level.
    `scope` and `asset` are the governing (most restrictive) ones, for the policy's context and the planner.
    `connected_sources`, `source_assets` and `guessed_users` are the addresses, hosts and accounts the sensors'
    facts put in the attacker's hands (controller/decision/entities.py): the only ones containment may hit without
    a person.
    """

    scope: IncidentScope
    asset: str | None
    scopes: tuple[IncidentScope, ...] = ()
    assets: tuple[str, ...] = ()
    environment: str = "unknown"
    addresses: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    connected_sources: tuple[str, ...] = ()
    source_assets: tuple[str, ...] = ()
    guessed_users: frozenset[str] = frozenset()


# How much the risk model's "production" factor weighs an environment: the incident is as exposed as its most
# exposed asset.
_EXPOSURE = {"production": 2, "unknown": 1}


class Scoping:
    """The scope and level rules over one bundle's inventory, directory and levels."""

    def __init__(self, assets: AssetIndex, users: dict[str, Any], levels: LevelConfig) -> None:
        self.assets = assets
        self.users = users
        self.levels = levels

    def sensed_assets(self, incident: Incident) -> list[str]:
        """The assets whose addresses the sensors reported in the incident's alerts, first seen first."""
        seen: list[str] = []
        for alert in incident.alerts:
            for address in (alert.dst_ip, alert.src_ip):
                for owner in self.assets.owners_of_address(address) if address else ():
                    if owner not in seen:
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
            asset = None
        # The origin, for playbooks that contain where an attack comes from (lateral movement's first hop).
        source = next(iter(source_assets(incident.alerts, self.assets)), None)
        if (asset, source) == (incident.asset, incident.source_asset):
            return incident
        return incident.model_copy(update={"asset": asset, "source_asset": source})

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
        # A case's other attack categories are scopes too (more scopes only lower): malware from the same source
        # keeps the case at malware's level, and an attack class outside a level's operating domain takes the
        # case out of it. Supporting categories (protocol violations, unclassified sensor events, access
        # records) ride along with nearly every attack: they count only where scopes.yaml assigns them a level.
        for category in categories_by_weight(incident.alerts):
            if category is incident.category or (
                category in SUPPORTING and category not in self.levels.scopes.categories
            ):
                continue
            entries += [
                (name, replace(scope, category=category, subject=f"{scope.subject}, category {category.value}"))
                for name, scope in entries
                if scope.category is incident.category
            ]
        levels = self.levels
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
            connected_sources=connected_sources(incident.alerts),
            source_assets=source_assets(incident.alerts, self.assets),
            guessed_users=guessed_users(incident.alerts, frozenset(levels.triage.waf_sources)),
        )

    def incident_resolution(
        self, facts: IncidentFacts, level: Level | None = None, health: HealthCap | None = None
    ) -> LevelResolution:
        """The incident's level: the most restrictive of its scopes (`level` replaces their assignment)."""
        return resolve_most_restrictive(self.levels, list(facts.scopes or (facts.scope,)), level, health)

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
            cap = cap_for_target(config or self.levels, scope)
            if cap is not None:
                resolution = resolution.capped_by(cap, scope.subject)
        return resolution
