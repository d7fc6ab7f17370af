"""Level config: validation that names file and key, J3016 rules, and which level applies where."""

from __future__ import annotations

import pytest
import yaml

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.levels import (
    IncidentScope,
    LevelConfig,
    LevelConfigError,
    load_level_config,
    resolve_level,
)
from autonomy_controller.controller.models import ActionClass, Category, Level, Verdict


def _edit(path, mutate) -> None:  # type: ignore[no-untyped-def]
    document = yaml.safe_load(path.read_text())
    mutate(document)
    path.write_text(yaml.safe_dump(document))


def test_shipped_levels_are_valid_and_complete(level_config: LevelConfig) -> None:
    assert set(level_config.levels) == set(Level)
    assert level_config.levels[Level.L5].enabled is False, "L5 must ship disabled"
    for level in (Level.L3, Level.L4, Level.L5):
        assert level_config.levels[level].operating_domain is not None
        assert level_config.levels[level].fallback is not None
    l1 = level_config.levels[Level.L1].classes
    assert all(l1[c] is Verdict.RECOMMEND for c in ActionClass if c is not ActionClass.INVESTIGATE)


def test_every_error_is_reported_with_file_and_key(config_copy: Settings) -> None:
    levels = config_copy.levels_dir
    _edit(levels / "L3.yaml", lambda d: d["risk"].update(auto_max="high"))
    _edit(levels / "L4.yaml", lambda d: d.pop("operating_domain"))
    _edit(levels / "scopes.yaml", lambda d: d["environments"].update(production="L9"))
    (levels / "risk.yaml").write_text("weights: [unclosed")
    with pytest.raises(LevelConfigError) as caught:
        load_level_config(levels)
    errors = caught.value.errors
    assert any(e.startswith("L3.yaml: risk.auto_max:") for e in errors), errors
    assert any(e.startswith("L4.yaml:") and "operating_domain" in e for e in errors), errors
    assert any(e.startswith("scopes.yaml: environments.production:") for e in errors), errors
    assert any(e.startswith("risk.yaml: not valid YAML") for e in errors), errors


def test_level_file_must_match_its_name_and_fallback_must_be_lower(config_copy: Settings) -> None:
    levels = config_copy.levels_dir
    _edit(levels / "L1.yaml", lambda d: d.update(level="L2"))
    _edit(levels / "L3.yaml", lambda d: d["fallback"].update(level="L4"))
    _edit(levels / "L2.yaml", lambda d: d["approval"].update(on_timeout="execute_reversible"))
    with pytest.raises(LevelConfigError) as caught:
        load_level_config(levels)
    text = "\n".join(caught.value.errors)
    assert "L3.yaml" in text and "fallback.level must be lower" in text
    assert "L2.yaml" in text and "veto window" in text
    assert "L1.yaml: level: says L2 but the file is L1.yaml" in text


def test_most_restrictive_override_wins(level_config: LevelConfig) -> None:
    scope = IncidentScope(Category.SQLI, environment="production", asset_group="domain-controllers", confidence=0.9)
    assert resolve_level(level_config, scope).declared is Level.L1
    scope = IncidentScope(Category.SQLI, environment="production", asset_group="web", confidence=0.9)
    assert resolve_level(level_config, scope).effective is Level.L3
    scope = IncidentScope(Category.SQLI, environment="nowhere", confidence=0.9)
    assert resolve_level(level_config, scope).declared is level_config.scopes.default


def test_out_of_domain_falls_back_and_says_why(level_config: LevelConfig) -> None:
    scope = IncidentScope(Category.OTHER, environment="production", confidence=0.9)
    resolution = resolve_level(level_config, scope, declared=Level.L3)
    assert resolution.effective is Level.L2
    assert "category other is outside L3's operating domain" in resolution.reasons[0]
    low_confidence = IncidentScope(Category.SQLI, environment="production", confidence=0.2)
    assert resolve_level(level_config, low_confidence, declared=Level.L4).effective is Level.L2


def test_disabled_l5_runs_as_l4(level_config: LevelConfig) -> None:
    scope = IncidentScope(Category.SQLI, environment="production", confidence=0.9)
    resolution = resolve_level(level_config, scope, declared=Level.L5)
    assert (resolution.declared, resolution.effective) == (Level.L5, Level.L4)
    assert "L5 is disabled" in resolution.reasons[0]


def test_kill_switch_lowers_every_scope(config_copy: Settings) -> None:
    _edit(config_copy.levels_dir / "scopes.yaml", lambda d: d.update(kill_switch=True))
    config = load_level_config(config_copy.levels_dir)
    scope = IncidentScope(Category.SQLI, environment="staging", confidence=0.9)
    resolution = resolve_level(config, scope, declared=Level.L4)
    assert resolution.effective is Level.L1
    assert resolution.reasons == ["kill switch on: level lowered to L1"]
