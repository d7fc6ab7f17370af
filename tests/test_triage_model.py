"""levels/triage.yaml: validated whole with every error named, a revision per model, ATT&CK mapping as data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from autonomy_controller.controller.case.grouping import category_views
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.models import Category
from autonomy_controller.controller.triage import TRIAGE_FILE, load_triage_model, triage
from tests.test_triage import ATTACKER, EVE, NETNS, NGINX, REPO, incidents_of, model


@pytest.fixture
def levels_copy(tmp_path: Path) -> Path:
    target = tmp_path / "levels"
    shutil.copytree(REPO / "levels", target)
    return target


def edit(levels: Path, change: dict[str, object]) -> None:
    """Apply `a.b.c: value` edits (value None deletes the key) to the copy's triage.yaml."""
    path = levels / TRIAGE_FILE
    document = yaml.safe_load(path.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = document
        for key in parents:
            node = node[int(key) if isinstance(node, list) else key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    path.write_text(yaml.safe_dump(document))


def errors(levels: Path) -> list[str]:
    with pytest.raises(LevelConfigError) as caught:
        load_triage_model(levels)
    return caught.value.errors


def test_the_shipped_model_loads_and_its_revision_follows_the_weights(levels_copy: Path) -> None:
    shipped = load_triage_model(REPO / "levels")
    assert shipped.revision.startswith("triage-") and load_triage_model(levels_copy).revision == shipped.revision
    edit(levels_copy, {"weights.scanner": 11})
    assert load_triage_model(levels_copy).revision != shipped.revision


def test_every_error_is_reported_at_once_with_file_and_key(levels_copy: Path) -> None:
    edit(
        levels_copy,
        {
            "weights.scanner": None,
            "thresholds.noise": 80,
            "feedback.max_discount": 0.8,
            "crs.paranoia": {1: 1.0, 2: 0.7},
            "surprise": True,
            "attack.crs_families.942": ["T1190", "T9999"],
            "attack.categories.not_a_category": ["T1190"],
            "scanner_user_agents": ["SQLMap"],
        },
    )
    found = errors(levels_copy)
    expected = (
        "triage.yaml: weights.scanner: Field required",
        "triage.yaml: thresholds: Value error, noise must be below malicious",
        "triage.yaml: feedback.max_discount: Input should be less than or equal to 0.5",
        "triage.yaml: crs.paranoia: Value error, needs exactly paranoia levels 1, 2, 3, 4",
        "triage.yaml: surprise: Extra inputs are not permitted",
        "triage.yaml: attack.crs_families: Value error, techniques without a name in attack.techniques: ['942: T9999']",
        "triage.yaml: attack.categories.not_a_category.[key]",
        "triage.yaml: scanner_user_agents: Value error, user-agent fingerprints are non-empty lower-case",
    )
    for line in expected:
        assert any(e.startswith(line) for e in found), (line, found)


def test_technique_ids_are_checked(levels_copy: Path) -> None:
    edit(levels_copy, {"attack.techniques.Exploit": "not an id"})
    assert errors(levels_copy) == [
        "triage.yaml: attack.techniques: Value error, not ATT&CK technique ids (T1234 or T1234.001): ['Exploit']"
    ]


def test_strict_types_and_bounds(levels_copy: Path) -> None:
    edit(levels_copy, {"weights.rule_strength": "25", "crs.family_strength.942": 1.5, "confidence.max": 0.3})
    found = errors(levels_copy)
    assert any(e.startswith("triage.yaml: weights.rule_strength: Input should be a valid number") for e in found)
    assert any(e.startswith("triage.yaml: crs.family_strength: Value error, values must be in 0..1") for e in found)
    assert any(e.startswith("triage.yaml: confidence.max: Input should be greater than or equal to 0.5") for e in found)


def test_missing_and_broken_files_name_the_file(levels_copy: Path) -> None:
    (levels_copy / TRIAGE_FILE).unlink()
    assert errors(levels_copy) == [f"triage.yaml: file missing in {levels_copy}"]
    (levels_copy / TRIAGE_FILE).write_text("weights: [unclosed\n")
    assert errors(levels_copy)[0].startswith("triage.yaml: not valid YAML:")
    (levels_copy / TRIAGE_FILE).write_text("")
    assert "triage.yaml: weights: Field required" in errors(levels_copy)


def test_weights_that_cannot_reach_100_are_refused(levels_copy: Path) -> None:
    edit(levels_copy, {f"weights.{name}": 5 for name in model().weights.model_dump()})
    assert any("weights: Value error, weights must add up to at least 100" in e for e in errors(levels_copy))


# ------------------------------------------------------------------------------------------------ ATT&CK


def techniques_of(path: Path, src: str, category: str) -> dict[str, str]:
    """The techniques of one source's alerts of one category (one category view of its case)."""
    case = incidents_of(path)[f"src:{src}"]
    view = next(v for v in category_views(case) if v.category.value == category)
    return {t.id: t.name for t in triage(view, model()).techniques}


def test_attack_techniques_from_real_alerts() -> None:
    assert techniques_of(NGINX, "127.0.0.1", "sqli") == {"T1190": "Exploit Public-Facing Application"}
    rce = techniques_of(NGINX, "127.0.0.1", "rce")
    assert rce["T1059"] == "Command and Scripting Interpreter" and "T1190" in rce
    scan = techniques_of(NETNS, ATTACKER, "scanner")
    assert scan["T1595"] == "Active Scanning" and scan["T1595.002"] == "Vulnerability Scanning"
    assert techniques_of(EVE, ATTACKER, "java_injection") == {"T1190": "Exploit Public-Facing Application"}
    assert techniques_of(EVE, ATTACKER, "rfi") == {
        "T1105": "Ingress Tool Transfer",
        "T1190": "Exploit Public-Facing Application",
    }
    # Protocol oddities (a numeric Host header) map to no technique: no guessing.
    assert techniques_of(NETNS, "203.0.113.7", "protocol") == {}
    # A case holds every category's techniques.
    case = {t.id for t in triage(incidents_of(NGINX)["src:127.0.0.1"], model()).techniques}
    assert {"T1190", "T1059"} <= case


def test_attack_table_covers_the_categories_without_rule_metadata() -> None:
    table = model().attack
    named = {c: {t: table.techniques[t] for t in ids} for c, ids in table.categories.items()}
    assert named[Category.BRUTE_FORCE] == {"T1110": "Brute Force"}
    assert named[Category.C2] == {"T1071": "Application Layer Protocol"}
    assert named[Category.LATERAL_MOVEMENT] == {"T1021": "Remote Services", "T1210": "Exploitation of Remote Services"}
    assert set(named[Category.EXFILTRATION]) == {"T1041", "T1048"}
    assert table.suricata_classtypes["detection of a network scan"] == ["T1595", "T1046"]
