"""Inventory attributes policies match on (tags, owner, criticality, crown_jewel): validated at load, in the data."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError
from autonomy_controller.controller.decision.runtime import load_policy_bundle


def test_every_asset_has_a_tag_list_in_the_policy_data(settings: Settings) -> None:
    assets = load_policy_bundle(settings).data["inventory"]["assets"]
    assert all(isinstance(asset["tags"], list) for asset in assets.values())
    assert assets["dc-01"]["tags"] == ["active-directory", "domain-controller"]
    assert assets["web-02"]["tags"] == []  # none declared: an empty list, not a missing key


def _with_asset_change(config: Settings, **changes: Any) -> None:
    path = config.policies_dir / "inventory" / "data.yaml"
    document = yaml.safe_load(path.read_text())
    document["assets"]["web-02"].update(changes)
    path.write_text(yaml.safe_dump(document))


@pytest.mark.parametrize(
    "changes,problem",
    [
        ({"criticality": "critical"}, "assets.web-02: criticality"),
        ({"criticality": 3}, "assets.web-02: criticality"),
        ({"owner": ""}, "assets.web-02: owner"),
        ({"owner": ["web-team"]}, "assets.web-02: owner"),
        ({"crown_jewel": "yes"}, "assets.web-02: crown_jewel"),
        ({"tags": "domain-controller"}, "assets.web-02: tags"),
        ({"tags": ["Domain-Controller"]}, "assets.web-02: tags"),
        ({"tags": ["domain controller"]}, "assets.web-02: tags"),
        ({"tags": [7]}, "assets.web-02: tags"),
        ({"tags": ["pii", "pii"]}, "assets.web-02: tags"),
    ],
    ids=repr,
)
def test_a_malformed_attribute_is_refused_at_load_naming_asset_and_key(
    config_copy: Settings, changes: dict[str, Any], problem: str
) -> None:
    _with_asset_change(config_copy, **changes)
    with pytest.raises(PolicyBundleError) as refused:
        load_policy_bundle(config_copy)
    assert str(refused.value).startswith(f"inventory/data.yaml: {problem}")


def test_tags_are_sorted_and_change_the_revision(config_copy: Settings) -> None:
    before = load_policy_bundle(config_copy).revision
    _with_asset_change(config_copy, tags=["pii", "internet-facing"])
    bundle = load_policy_bundle(config_copy)
    assert bundle.data["inventory"]["assets"]["web-02"]["tags"] == ["internet-facing", "pii"]
    assert bundle.revision != before
