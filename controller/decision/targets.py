"""What the policy is told about an action's targets and about the whole plan: canonical facts, never free text.

An IP target is its address facts (controller/addresses.py) in the input's key order; a host target is its
inventory spelling when it is ours; `unrelated_targets` names what no alert of the incident names; `PlanShape`
says how much of each action class the whole plan holds (the plan guardrails, policies/guardrails/plan.rego).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from autonomy_controller.actions.registry import InvalidParamsError, UnknownActionError, get_spec, validate_params
from autonomy_controller.controller.addresses import address_facts
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.risk import Targets
from autonomy_controller.controller.decision.scoping import IncidentFacts
from autonomy_controller.controller.models import ActionSpec, ProposedAction, TargetKind

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


def source_address(address: str) -> dict[str, Any]:
    """A connected source as the policy compares it with a block's target: by prefix bits, within one family."""
    return {key: fact for key, fact in _ip_target(address) if key in ("bits", "version", "value")}


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


def address_span(ip: dict[str, Any]) -> int:
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
class Checked:
    """One proposed action as the registry judged it: its spec and canonical params, or why it was refused.
    Checked once per plan: the plan's shape and the action's decision both read it."""

    action: ProposedAction
    spec: ActionSpec | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def check_action(action: ProposedAction) -> Checked:
    try:
        spec = get_spec(action.action)
        return Checked(action, spec, validate_params(spec, action.params).model_dump(mode="json"))
    except (UnknownActionError, InvalidParamsError) as exc:
        return Checked(action, error=str(exc))


@dataclass(frozen=True)
class PlanShape:
    """How much of each action class a plan holds: the plan-level caps are judged on it, since a cap per
    action alone lets a plan reach any size by splitting (14 blocks of one address each)."""

    actions: dict[str, int]
    addresses: dict[str, int]

    @classmethod
    def of(cls, checked: Iterable[Checked]) -> PlanShape:
        actions: dict[str, int] = {}
        addresses: dict[str, int] = {}
        for item in checked:
            spec, params = item.spec, item.params
            if spec is None:
                continue  # denied on its own; it never runs, so it adds nothing to what the plan does
            name = spec.action_class.value
            actions[name] = actions.get(name, 0) + 1
            value = params.get(spec.target_param) if spec.target_param else None
            if value is not None and spec.target_kind is TargetKind.IP:
                addresses[name] = min(addresses.get(name, 0) + address_span(ip_target(value)), 1 << 24)
        return cls(actions=actions, addresses=addresses)

    def of_class(self, spec: ActionSpec) -> dict[str, int]:
        name = spec.action_class.value
        return {"class_actions": self.actions.get(name, 0), "class_addresses": self.addresses.get(name, 0)}
