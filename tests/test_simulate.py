"""`autonomy simulate`: counters that add up, a diff that names exactly the changed decisions, the CLI outputs."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.attackers.impact import case_impact
from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.runtime import open_guard
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.models import Alert, Category, GuardDecision, Level, Provenance, Severity, Verdict
from autonomy_controller.controller.oversight.simulate import (
    SYNTHETIC,
    SimConfig,
    Simulation,
    stream_incidents,
    synthetic_alerts,
)
from autonomy_controller.controller.planning import OfflinePlanner

EXAMPLES = sorted((REPO_ROOT / "examples" / "alerts").glob("*.jsonl"))
runner = CliRunner()
TRUSTED = frozenset({SYNTHETIC})
"""The synthetic alerts are a trusted native feed: written out, they read back as it (docs/sensors.md)."""


def _alert(n: int, src: str, category: Category = Category.SQLI) -> Alert:
    return Alert(
        id=f"t{n}",
        source=SYNTHETIC,  # the synthetic feed's, read back trusted (TRUSTED)
        provenance=Provenance.TRUSTED_FEED,
        observed_at=datetime(2026, 11, 1, tzinfo=UTC),
        category=category,
        severity=Severity.HIGH,
        confidence=0.9,
        src_ip=src,
        dst_ip="198.51.100.1",
    )


@pytest.fixture(scope="module")
def alert_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixed alert set: the synthetic mix, plus attackers inside allowlisted ranges (their blocks are denied
    by the network guardrail, whose message the diff test changes)."""
    path = tmp_path_factory.mktemp("alerts") / "alerts.jsonl"
    alerts = [*synthetic_alerts(400, seed=3, sources=60), _alert(1, "10.1.2.3"), _alert(2, "127.0.0.1", Category.XSS)]
    path.write_text("".join(a.model_dump_json() + "\n" for a in alerts))
    return path


def test_stream_incidents_matches_group_alerts_within_the_window_and_stays_bounded() -> None:
    alerts = list(synthetic_alerts(300, seed=1, sources=30))
    grouped = {i.key: [a.id for a in i.alerts] for i in group_alerts(alerts)}
    streamed = {i.key: [a.id for a in i.alerts] for i in stream_incidents(alerts, window=10_000)}
    assert streamed == grouped
    # a storm is judged in slices; an idle key is closed and a later alert opens a new incident
    storm = [_alert(n, "100.64.0.9") for n in range(25)]
    assert [len(i.alerts) for i in stream_incidents(storm, max_alerts=10)] == [10, 10, 5]
    split = [_alert(0, "100.64.0.1"), *(_alert(n, f"100.64.1.{n}") for n in range(1, 5)), _alert(9, "100.64.0.1")]
    keys = [i.key for i in stream_incidents(split, window=3)]
    assert keys.count("src:100.64.0.1") == 2
    assert len(keys) == 6
    # never more than max_open incidents held: the oldest closes first
    assert [i.key for i in stream_incidents(split, max_open=1)][:2] == ["src:100.64.0.1", "src:100.64.1.1"]


def test_counts_add_up_at_every_level(settings: Settings) -> None:
    alerts = [a for path in EXAMPLES for a in read_alerts(path)]
    incidents = list(stream_incidents(alerts))
    with Simulation(SimConfig("base", settings)) as simulation:
        assert list(simulation.run(incidents)) == []  # no candidate config, no diff
    result = simulation.result
    assert result.alerts == len(alerts) and result.incidents == len(incidents)
    assert result.levels == [lv.value for lv in Level]
    decisions = {label: result.tallies[("base", label)].decisions for label in result.levels}
    assert len(set(decisions.values())) == 1 and decisions["L1"] > 0  # same plan judged at every level
    for tally in result.tallies.values():
        assert tally.incidents == len(incidents)
        assert sum(tally.verdicts.values()) == tally.decisions
        assert sum(sum(c.values()) for c in tally.by_class.values()) == tally.decisions
        assert sum(sum(c.values()) for c in tally.by_category.values()) == tally.decisions
        assert tally.approvals == tally.verdicts[Verdict.APPROVE.value] <= tally.approver_votes
        assert sum(tally.shares().values()) == pytest.approx(1.0)
    l1, l2, l3 = (result.tallies[("base", lv)] for lv in ("L1", "L2", "L3"))
    assert set(l1.by_class) - {"investigate"}, "the examples propose more than lookups"
    assert all(counts["execute"] == 0 for cls, counts in l1.by_class.items() if cls != "investigate")
    assert l1.approvals == 0
    assert l2.verdicts["execute"] > l1.verdicts["execute"]
    assert l3.verdicts["execute"] >= l2.verdicts["execute"]


def _changed_config(tmp_path: Path, settings: Settings) -> SimConfig:
    """A copy of the shipped config with one policy rule and one level's triage bar changed (the synthetic
    alerts carry no rule metadata, so triage calls none malicious: L3's shipped bar keeps every containment
    for a person, and lowering it to suspicious lets L3 run some alone)."""
    levels, policies = tmp_path / "levels", tmp_path / "policies"
    shutil.copytree(settings.levels_dir, levels)
    shutil.copytree(settings.policies_dir, policies)
    l3 = levels / "L3.yaml"
    bar = "verdict: malicious         # short of it a person approves, so one stray false positive never blocks alone"
    assert bar in l3.read_text()
    l3.write_text(
        l3.read_text().replace(bar, "verdict: suspicious").replace("min_confidence: 0.8", "min_confidence: 0.5")
    )
    rule = policies / "guardrails" / "network.rego"
    assert rule.read_text().count("would hit allowlisted") == 1
    rule.write_text(rule.read_text().replace("would hit allowlisted", "would touch allowlisted"))
    return SimConfig("candidate", replace(settings, levels_dir=levels, policies_dir=policies))


def _all_decisions(config: SimConfig, alert_file: Path) -> dict[tuple[str, str, str], GuardDecision]:
    """Every decision, keyed (incident, action id, level), taken the plain way: evaluate's own pipeline
    (triage and impact, a plan on their verdicts, the guard given them)."""
    decisions: dict[tuple[str, str, str], GuardDecision] = {}
    with open_guard(config.settings) as guard:
        assert isinstance(guard, Guard)
        planner = OfflinePlanner(config.settings.playbooks_dir, asset_groups=guard.asset_groups)
        for incident in map(guard.enrich, group_alerts(read_alerts(alert_file, trusted=TRUSTED))):
            triage = guard.triage_summary(guard.triage(incident))
            impact = case_impact(guard, incident.alerts, config.settings)
            assert impact is not None
            plan = planner.plan(incident, triage.verdict, impact.verdict).model_copy(update={"impact": impact})
            for level in Level:
                for decision in guard.decide_plan(incident, plan, level, triage=triage):
                    decisions[(incident.key, decision.action_id, level.value)] = decision
    return decisions


def test_diff_names_exactly_the_decisions_that_changed(tmp_path: Path, settings: Settings, alert_file: Path) -> None:
    base, candidate = SimConfig("base", settings), _changed_config(tmp_path, settings)
    with Simulation(base, candidate) as simulation:
        rows = list(simulation.run(stream_incidents(read_alerts(alert_file, trusted=TRUSTED))))
    before, after = _all_decisions(base, alert_file), _all_decisions(candidate, alert_file)
    assert before.keys() == after.keys()
    flipped = {key for key in before if before[key].verdict is not after[key].verdict}
    reworded = {key for key in before if before[key].reasons != after[key].reasons} - flipped
    assert flipped and reworded, "the fixed alert set must exercise both changes"
    assert all(key[2] == "L3" for key in flipped), "only L3's triage bar changed"

    by_key = {(r.incident, r.action_id, r.level): r for r in rows}
    assert len(by_key) == len(rows)
    assert {key for key, r in by_key.items() if r.verdict_changed} == flipped
    assert set(by_key) == flipped | reworded
    assert simulation.result.verdict_changes == len(flipped) and simulation.result.diff_rows == len(rows)
    for key in flipped:
        row = by_key[key]
        assert (row.old_verdict, row.new_verdict) == (before[key].verdict.value, after[key].verdict.value)
        assert (
            (row.old_verdict, row.new_verdict) == ("approve", "execute") and row.reasons_added and row.reasons_removed
        )
        assert row.risk_changes == []  # a bar moved, not a risk factor
        assert row.old_triage == row.new_triage and not row.because_of_triage  # the same triage, another bar
    for key in reworded:  # the reworded guardrail, or L3's reasons quoting its new bar
        row = by_key[key]
        reworded_rule = any("would touch allowlisted" in reason for reason in row.reasons_added) and any(
            "would hit allowlisted" in reason for reason in row.reasons_removed
        )
        new_threshold = key[2] == "L3" and any("only on suspicious" in reason for reason in row.reasons_added)
        # L3's new bar met, but another guardrail still asks (a block of a source only forgeable packets carried)
        bar_met = (
            key[2] == "L3" and not row.reasons_added and all("only on malicious" in r for r in row.reasons_removed)
        )
        assert reworded_rule or new_threshold or bar_met, row
    assert {key[2] for key in reworded} == {lv.value for lv in Level}  # the guardrail speaks at every level


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_cli_json_and_csv(tmp_path: Path, settings: Settings, alert_file: Path) -> None:
    candidate = _changed_config(tmp_path, settings)
    csv_path = tmp_path / "counters.csv"
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}
    result = runner.invoke(
        app,
        [
            "simulate",
            str(alert_file),
            *map(str, EXAMPLES),
            "--against-levels",
            str(candidate.settings.levels_dir),
            "--against-policies",
            str(candidate.settings.policies_dir),
            "--json",
            "--csv",
            str(csv_path),
            *("--trust-native", SYNTHETIC),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    documents = _json_lines(result.stdout)
    summary = documents[-1]
    diffs = documents[:-1]
    assert summary["type"] == "summary" and summary["configs"] == ["base", "against"]
    assert summary["alerts"] == 402 + sum(1 for p in EXAMPLES for _ in read_alerts(p))
    assert diffs and all(d["type"] == "diff" for d in diffs) and len(diffs) == summary["diff_rows"]
    assert sum(d["verdict_changed"] for d in diffs) == summary["verdict_changes"] > 0
    assert len(summary["results"]) == 10
    rows = list(csv.DictReader(csv_path.open()))
    totals = [r for r in rows if r["dimension"] == "all"]
    assert len(totals) == 10
    for row in totals:
        assert int(row["decisions"]) == sum(int(row[v.value]) for v in Verdict)

    table = runner.invoke(app, ["simulate", *map(str, EXAMPLES), "--level", "L2", "--no-progress"], env=env)
    assert table.exit_code == 0, table.output
    assert "L2" in table.stdout and "│ contain_network " in table.stdout and "L3" not in table.stdout


def test_cli_rejects_a_broken_config(tmp_path: Path, settings: Settings) -> None:
    levels = tmp_path / "levels"
    shutil.copytree(settings.levels_dir, levels)
    (levels / "L3.yaml").write_text("level: L3\n")
    result = runner.invoke(app, ["simulate", str(EXAMPLES[0]), "--levels", str(levels)])
    assert result.exit_code == 2
