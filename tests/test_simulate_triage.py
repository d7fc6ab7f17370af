"""`autonomy simulate` and triage: verdict shares per config (of incidents and of alerts), and what a change of
levels/triage.yaml does: which incidents' triage changes (before -> after) and which decisions flip because of
it, told apart from flips the same candidate makes for other reasons.

Real sample files (../shared/samples), the shipped config and candidates written to tmp_path; expectations are
computed with each config's own guard, incident by incident.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.runtime import open_guard
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.models import Alert, TriageSummary
from autonomy_controller.controller.oversight.simulate import DiffRow, SimConfig, Simulation, stream_incidents
from autonomy_controller.controller.oversight.simulate_triage import TRIAGE_VERDICTS, TriageChange
from tests.conftest import SHARED

SAMPLES = sorted((SHARED / "samples").glob("*.jsonl"))
THRESHOLD = "  malicious: 70         # score >= 70: malicious"
runner = CliRunner()


def alerts() -> list[Alert]:
    """The samples' alerts with each source's categories sent from addresses of their own, so that every attack
    class is a case (one attacker, one case): the shares and flips then have cases of every verdict to show."""
    sources: dict[tuple[str, str], str] = {}
    split = []
    for alert in (a for path in SAMPLES for a in read_alerts(path)):
        if alert.src_ip is None:
            split.append(alert)
            continue
        address = sources.setdefault((alert.src_ip, alert.category.value), f"203.0.113.{len(sources) + 1}")
        split.append(alert.model_copy(update={"src_ip": address}))
    return split


def candidate(root: Path, settings: Settings, *edits: tuple[str, str, str]) -> SimConfig:
    """The shipped levels with triage's malicious threshold at 60 (and any further edits: file, old, new)."""
    levels = root / "levels"
    shutil.copytree(settings.levels_dir, levels)
    for name, old, new in [("triage.yaml", THRESHOLD, "  malicious: 60"), *edits]:
        path = levels / name
        assert path.read_text().count(old) == 1, (name, old)
        path.write_text(path.read_text().replace(old, new))
    return SimConfig("candidate", replace(settings, levels_dir=levels))


def triage_by_incident(config: SimConfig) -> dict[str, TriageSummary]:
    with open_guard(config.settings) as guard:
        assert isinstance(guard, Guard)
        return {i.key: guard.triage_summary(guard.triage(guard.enrich(i))) for i in group_alerts(alerts())}


def test_verdict_shares_of_incidents_and_alerts_add_up(settings: Settings) -> None:
    base = SimConfig("base", settings)
    with Simulation(base) as simulation:
        assert list(simulation.run(stream_incidents(alerts()))) == []
    result = simulation.result
    tally = result.triage["base"]
    expected = triage_by_incident(base)
    sizes = {i.key: len(i.alerts) for i in group_alerts(alerts())}
    for verdict in TRIAGE_VERDICTS:
        assert tally.incidents[verdict] == sum(t.verdict == verdict for t in expected.values())
        assert tally.alerts[verdict] == sum(sizes[k] for k, t in expected.items() if t.verdict == verdict)
    assert sum(tally.incidents.values()) == result.incidents == len(expected)
    assert sum(tally.alerts.values()) == result.alerts
    assert all(tally.incidents[v] > 0 for v in TRIAGE_VERDICTS), "the samples hold every verdict"
    assert sum(tally.incident_shares().values()) == pytest.approx(1.0)
    assert tally.alert_shares()["noise"] == tally.alerts["noise"] / result.alerts
    document = result.as_json()["triage"]["base"]
    assert document["incidents"] == {v: tally.incidents[v] for v in TRIAGE_VERDICTS}
    assert document["alert_shares"] == tally.alert_shares()


def test_a_lower_malicious_threshold_names_each_changed_triage_and_the_decisions_it_flipped(
    tmp_path: Path, settings: Settings
) -> None:
    base, cand = SimConfig("base", settings), candidate(tmp_path, settings)
    with Simulation(base, cand) as simulation:
        found = list(simulation.run(stream_incidents(alerts())))
    changes = {c.incident: c for c in found if isinstance(c, TriageChange)}
    rows = [r for r in found if isinstance(r, DiffRow)]

    before, after = triage_by_incident(base), triage_by_incident(cand)
    expected = {
        k for k in before if (before[k].verdict, before[k].confidence) != (after[k].verdict, after[k].confidence)
    }
    assert changes.keys() == expected
    assert any(before[k].verdict == "suspicious" and after[k].verdict == "malicious" for k in expected)
    for key, change in changes.items():
        assert (change.old.verdict, change.old.confidence) == (before[key].verdict, before[key].confidence)
        assert (change.new.verdict, change.new.confidence, change.new.score) == (
            after[key].verdict,
            after[key].confidence,
            after[key].score,
        )
    # Only triage.yaml differs: every verdict that flipped, flipped because of triage, and is listed under its
    # incident's triage change.
    flipped = [r for r in rows if r.verdict_changed]
    assert flipped, "the samples must exercise a flip"
    assert all(r.because_of_triage and r.incident in changes for r in flipped)
    assert {(r.incident, r.level, r.action_id) for r in flipped} == {
        (c.incident, caused.level, caused.action_id) for c in changes.values() for caused in c.caused
    }
    for row in flipped:
        assert (row.old_verdict, row.new_verdict) == ("approve", "execute")  # the bar is met now, at L3-L5
        assert row.level in {"L3", "L4", "L5"}
        assert row.old_triage == changes[row.incident].old and row.new_triage == changes[row.incident].new
    result = simulation.result
    assert result.triage_changes == len(changes)
    assert result.triage_verdict_changes == sum(c.verdict_changed for c in changes.values())
    assert result.decisions_changed_by_triage == len(flipped)
    assert result.triage["candidate"].incidents["malicious"] > result.triage["base"].incidents["malicious"]


def test_flips_the_candidate_makes_for_other_reasons_are_not_blamed_on_triage(
    tmp_path: Path, settings: Settings
) -> None:
    """The same triage change, and L3 no longer running containment alone: L3's flips (execute -> approve)
    happen with or without the new triage, so they are not triage's; L4 and L5's are."""
    l3 = ("L3.yaml", "  contain_network: execute\n", "  contain_network: approve\n")
    base, cand = SimConfig("base", settings), candidate(tmp_path, settings, l3)
    with Simulation(base, cand) as simulation:
        found = list(simulation.run(stream_incidents(alerts())))
    flipped = [r for r in found if isinstance(r, DiffRow) and r.verdict_changed]
    by_triage = {(r.incident, r.level) for r in flipped if r.because_of_triage}
    by_class = [r for r in flipped if not r.because_of_triage]
    assert by_class and all(r.level == "L3" and r.new_verdict == "approve" for r in by_class)
    assert by_triage and all(level in {"L4", "L5"} for _, level in by_triage)
    caused = {(c.incident, x.level) for c in found if isinstance(c, TriageChange) for x in c.caused}
    assert caused == by_triage


class _Sections(HTMLParser):
    """Section ids, every tag, and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "section":
            self.ids += [v for k, v in attrs if k == "id" and v]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_cli_table_json_and_html_show_the_shares_and_the_triage_diff(tmp_path: Path, settings: Settings) -> None:
    cand = candidate(tmp_path, settings)
    html = tmp_path / "sim.html"
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var"), "COLUMNS": "250"}
    split = tmp_path / "split.jsonl"  # the samples as alerts() splits them, in our own Alert JSON (lossless)
    split.write_text("".join(a.model_dump_json() + "\n" for a in alerts()))
    trust = [arg for source in sorted({a.source for a in alerts()}) for arg in ("--trust-native", source)]
    args = ["simulate", str(split), "--against-levels", str(cand.settings.levels_dir), "--no-progress", *trust]
    result = runner.invoke(app, [*args, "--json", "--html", str(html)], env=env)
    assert result.exit_code == 0, result.output
    documents: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = documents[-1]
    triage_rows = [d for d in documents if d["type"] == "triage_diff"]
    assert len(triage_rows) == summary["triage_changes"] > 0
    assert sum(len(d["decisions_changed"]) for d in triage_rows) == summary["decisions_changed_by_triage"] > 0
    assert (
        sum(d["because_of_triage"] for d in documents if d["type"] == "diff") == summary["decisions_changed_by_triage"]
    )
    for config in ("base", "against"):
        shares = summary["triage"][config]
        assert sum(shares["incidents"].values()) == summary["incidents"]
        assert sum(shares["alerts"].values()) == summary["alerts"]
    moved = next(d for d in triage_rows if d["decisions_changed"])
    assert moved["old"]["verdict"] in TRIAGE_VERDICTS and moved["new"] != moved["old"]

    page = _Sections()
    page.feed(html.read_text(encoding="utf-8"))
    assert page.ids[:3] == ["verdicts", "workload", "triage"] and "triage-diff" in page.ids
    assert "script" not in page.tags
    text = " ".join(page.text)
    assert moved["incident"].split(":", 1)[1] in text
    caused = moved["decisions_changed"][0]
    assert f"{caused['level']} {caused['action_id']} {caused['action']}: approve -> execute" in text

    table = runner.invoke(app, args, env=env)
    assert table.exit_code == 0, table.output
    assert "triage verdicts the guard was given" in table.stdout
    assert f"triage that changed: {summary['triage_changes']} incident(s)" in table.stdout
    base = summary["triage"]["base"]
    assert f"{base['incidents']['noise']} ({100 * base['incident_shares']['noise']:.0f}%)" in table.stdout
