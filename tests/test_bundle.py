"""The policy bundle: compiled data and a revision that changes with any policy, data or level change."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from autonomy_controller.controller.addresses import address_facts
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.levels import load_level_config
from autonomy_controller.controller.decision.policy_bundle import LEVEL_ORDER, PolicyBundleError
from autonomy_controller.controller.decision.runtime import load_policy_bundle


def test_address_facts_are_prefix_bits() -> None:
    facts = address_facts("198.51.100.0/24")
    assert facts == {
        "value": "198.51.100.0/24",
        "version": 4,
        "prefix_len": 24,
        "bits": format(int(ipaddress.ip_address("198.51.100.0")), "032b")[:24],
        "embedded": [],
        "num_addresses": 256,
    }
    assert len(address_facts("2001:db8::1")["bits"]) == 128
    assert address_facts("198.51.100.66/32")["value"] == "198.51.100.66"


def test_allowlists_are_compiled_with_bits(settings: Settings) -> None:
    bundle = load_policy_bundle(settings)
    networks = bundle.data["allowlists"]["networks"]
    assert networks, "the shipped allowlist is not empty"
    for entry in networks.values():
        assert entry["bits"] == address_facts(entry["cidr"])["bits"]
    assert set(bundle.data["levels"]) == {"L1", "L2", "L3", "L4", "L5"}
    assert bundle.data["meta"]["revision"] == bundle.revision


def test_revision_changes_with_policy_data_and_levels(config_copy: Settings) -> None:
    before = load_policy_bundle(config_copy).revision
    assert load_policy_bundle(config_copy).revision == before, "the revision is deterministic"

    rego = config_copy.policies_dir / "autonomy" / "decision.rego"
    rego.write_text(rego.read_text() + "\n# a comment is a change too\n")
    after_policy = load_policy_bundle(config_copy).revision
    assert after_policy != before

    guardrails = config_copy.policies_dir / "guardrails" / "data.yaml"
    document = yaml.safe_load(guardrails.read_text())
    document["max_addresses_per_block"] = 1
    guardrails.write_text(yaml.safe_dump(document))
    after_data = load_policy_bundle(config_copy).revision
    assert after_data != after_policy

    scopes = config_copy.levels_dir / "L3.yaml"
    document = yaml.safe_load(scopes.read_text())
    document["risk"]["auto_max"] = 44
    scopes.write_text(yaml.safe_dump(document))
    assert load_policy_bundle(config_copy).revision != after_data


def test_levels_put_the_keys_the_policy_reads_first(settings: Settings) -> None:
    """regopy walks an object's keys in order to find one: enabled, classes, risk and approval come first."""
    bundle = load_policy_bundle(settings)
    policy_data = load_level_config(settings.levels_dir).policy_data()
    for name, level in bundle.data["levels"].items():
        assert tuple(level)[: len(LEVEL_ORDER)] == LEVEL_ORDER
        assert level == policy_data[name]  # the same level, only in another order


def test_promotion_criteria_do_not_change_the_policy_revision(config_copy: Settings) -> None:
    before = load_policy_bundle(config_copy).revision
    level = config_copy.levels_dir / "L4.yaml"
    document = yaml.safe_load(level.read_text())
    document["promotion"]["min_decisions"] = 7
    level.write_text(yaml.safe_dump(document))
    assert load_policy_bundle(config_copy).revision == before  # no decision depends on them


def test_an_escalation_to_a_group_nobody_defined_is_refused_at_load(config_copy: Settings) -> None:
    level = config_copy.levels_dir / "L2.yaml"
    document = yaml.safe_load(level.read_text())
    document["approval"].update(on_timeout="escalate", escalate_to="soc-leads")
    level.write_text(yaml.safe_dump(document))
    expected = r"L2\.yaml: approval\.escalate_to: 'soc-leads' is not an approver group"
    with pytest.raises(PolicyBundleError, match=expected):
        load_policy_bundle(config_copy)


@pytest.mark.parametrize("alias", ["dc-01", "DC-01.", "db-01"])
def test_a_host_name_two_assets_share_is_refused_at_load(config_copy: Settings, alias: str) -> None:
    # An alias equal to a crown jewel's name would move the crown-jewel rule onto another asset.
    path = config_copy.policies_dir / "inventory" / "data.yaml"
    document = yaml.safe_load(path.read_text())
    document["assets"]["ws-bob-01"]["aliases"] = [alias]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(PolicyBundleError, match=r"inventory/data\.yaml: assets\.ws-bob-01: host name .* is also"):
        load_policy_bundle(config_copy)
