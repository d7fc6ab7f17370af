"""Risk: every factor explained, contributions add up, and the facts move the score the right way."""

from __future__ import annotations

import pytest

from autonomy_controller.actions.registry import get_spec, validate_params
from autonomy_controller.controller.addresses import address_facts
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.risk import RiskContext
from autonomy_controller.controller.decision.targets import targets_of
from autonomy_controller.controller.models import ImpactSummary, RiskAssessment


def assess(guard: Guard, action: str, params: dict[str, object], **overrides: object) -> RiskAssessment:
    spec = get_spec(action)
    clean = validate_params(spec, params).model_dump(mode="json")
    fields: dict[str, object] = {
        "spec": spec,
        "params": clean,
        "targets": targets_of(spec, clean, guard.assets),
        "action_confidence": 0.9,
        "evidence_confidence": 0.9,
        "environment": "production",
        "sensor_blocked": False,
    }
    fields.update(overrides)
    return guard.scorer.assess(RiskContext(**fields))  # type: ignore[arg-type]


def factor(risk: RiskAssessment, name: str) -> float:
    return next(f.value for f in risk.factors if f.name == name)


def test_factors_are_complete_and_add_up(embedded_guard: Guard) -> None:
    risk = assess(embedded_guard, "host.isolate", {"host": "web-01"})
    names = [f.name for f in risk.factors]
    assert names == [
        "blast_radius",
        "irreversibility",
        "asset_criticality",
        "target_count",
        "uncertainty",
        "production",
        "sensor_blocked",
        "impact",
    ]
    assert risk.score == pytest.approx(sum(f.contribution for f in risk.factors), abs=0.1)
    assert all(f.why for f in risk.factors)
    assert 0 < risk.score < 100


def test_ttl_makes_a_block_cheaper_than_a_permanent_one(embedded_guard: Guard) -> None:
    temporary = assess(embedded_guard, "network.block_ip", {"ip": "198.51.100.66", "ttl_seconds": 600})
    permanent = assess(embedded_guard, "network.block_ip", {"ip": "198.51.100.66"})
    assert factor(temporary, "irreversibility") == 0.0
    assert factor(permanent, "irreversibility") > 0.0
    assert temporary.score < permanent.score


def test_criticality_comes_from_the_inventory(embedded_guard: Guard) -> None:
    crown = assess(embedded_guard, "host.isolate", {"host": "dc-01"})
    web = assess(embedded_guard, "host.isolate", {"host": "web-01"})
    unknown = assess(embedded_guard, "host.isolate", {"host": "ghost-99"})
    assert factor(crown, "asset_criticality") == 1.0
    assert factor(web, "asset_criticality") < 1.0
    assert "not in the inventory" in next(f.why for f in unknown.factors if f.name == "asset_criticality")
    external = assess(embedded_guard, "network.block_ip", {"ip": "198.51.100.66"})
    own = assess(embedded_guard, "network.block_ip", {"ip": "198.51.100.1"})
    assert factor(external, "asset_criticality") < factor(own, "asset_criticality")


def test_privileged_users_weigh_more(embedded_guard: Guard) -> None:
    admin = assess(embedded_guard, "identity.disable_user", {"user": "admin"})
    alice = assess(embedded_guard, "identity.disable_user", {"user": "alice"})
    assert factor(admin, "asset_criticality") > factor(alice, "asset_criticality")


def test_wider_ranges_uncertainty_and_sensor_block_raise_risk(embedded_guard: Guard) -> None:
    single = assess(embedded_guard, "network.block_ip", {"ip": "192.0.2.1"})
    wide = assess(embedded_guard, "network.block_ip", {"ip": "192.0.2.0/24"})
    assert factor(wide, "target_count") > factor(single, "target_count") == 0.0
    assert factor(wide, "blast_radius") > factor(single, "blast_radius")
    unsure = assess(embedded_guard, "network.block_ip", {"ip": "192.0.2.1"}, action_confidence=0.2)
    assert factor(unsure, "uncertainty") == pytest.approx(0.8)
    blocked = assess(embedded_guard, "network.block_ip", {"ip": "192.0.2.1"}, sensor_blocked=True)
    assert blocked.score > single.score


def test_harmless_actions_score_low(embedded_guard: Guard) -> None:
    ticket = assess(embedded_guard, "ticket.create", {"title": "t", "severity": "low"}, environment="staging")
    assert ticket.score < 10


def test_asset_lookup_keeps_address_families_apart() -> None:
    index = AssetIndex({"v4-host": {"addresses": ["1.2.3.4"]}, "v6-host": {"addresses": ["2001:db8::1"]}})
    assert index.owner_of(address_facts("1.2.3.4")) == "v4-host"
    assert index.owner_of(address_facts("::102:304")) is None  # the same integer as 1.2.3.4
    assert index.owner_of(address_facts("2001:db8::/64")) == "v6-host"
    assert index.owner_of(address_facts("1.2.3.0/24")) == "v4-host"
    assert index.owner_of(address_facts("192.0.2.0/24")) is None


def test_an_attack_that_got_through_eases_only_blocking_its_source(embedded_guard: Guard) -> None:
    """The credit lowers a block of the case's own source; never isolating our host, disabling an account or
    blocking another address: the attacker chooses which of its requests get through."""
    likely = ImpactSummary(verdict="likely", assets=["web-01"])
    source = "198.51.100.66"

    def credit(action: str, params: dict[str, object]) -> float:
        return factor(assess(embedded_guard, action, params, impact=likely, source=source), "impact")

    assert credit("network.block_ip", {"ip": source, "ttl_seconds": 3600}) == 1.0
    assert credit("network.block_ip", {"ip": "203.0.113.9", "ttl_seconds": 3600}) == 0.0
    assert credit("host.isolate", {"host": "web-01"}) == 0.0
    assert credit("identity.disable_user", {"user": "alice"}) == 0.0
    without = assess(embedded_guard, "network.block_ip", {"ip": source, "ttl_seconds": 3600}, source=source)
    assert factor(without, "impact") == 0.0
