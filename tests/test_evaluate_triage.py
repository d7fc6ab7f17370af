"""`autonomy evaluate` shows each incident's triage: a line in the table, the full result in --json, and the
triage the guard weighed in every decision. A plan file is untrusted: its `triage` claim is ignored, and only
its `planner_triage` can lower (never raise) what the guard weighs.

Real sample files from ../shared/samples, the shipped config, the embedded engine; the expected triage comes
from the guard's own `triage` on the same incidents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.triage import TriageResult
from tests.conftest import SHARED

SAMPLES = sorted((SHARED / "samples").glob("*.jsonl"))
NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
ATTACKER = "src:198.51.100.66"
"""The lab attacker's case: SQLi, XSS, traversal, RCE and scanner hits, malicious."""
runner = CliRunner()


def evaluate(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["evaluate", *args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["incident"]["key"]: r for r in records}


def expected_triage(guard: Guard, path: Path) -> dict[str, TriageResult]:
    return {i.key: guard.triage(guard.enrich(i)) for i in group_alerts(read_alerts(path))}


def xss_only(tmp_path: Path) -> Path:
    """The sample's transactions in which CRS saw XSS alone: the attacker's case had it been only these, which
    triage finds suspicious."""
    kept = []
    for number, line in enumerate(NETNS.read_text().splitlines()):
        one = tmp_path / f"line-{number}.jsonl"
        one.write_text(line + "\n")
        if line.strip() and {a.category.value for a in read_alerts(one)} == {"xss"}:
            kept.append(line)
    path = tmp_path / "xss-only.jsonl"
    path.write_text("".join(line + "\n" for line in kept))
    return path


def plan_file(tmp_path: Path, name: str, **extra: object) -> Path:
    """A plan with one block that reverts by itself (so no rule other than triage keeps it from running)."""
    document = {"actions": [{"action": "network.block_ip", "params": {"ip": "198.51.100.66", "ttl_seconds": 3600}}]}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({**document, **extra}))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"AUTONOMY_STATE_DIR": str(tmp_path / "var"), "COLUMNS": "250"}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_json_carries_the_full_triage_and_the_guard_weighs_its_summary(
    sample: Path, env: dict[str, str], embedded_guard: Guard
) -> None:
    expected = expected_triage(embedded_guard, sample)
    records = by_key(evaluate(env, str(sample)))
    assert records.keys() == expected.keys()
    for key, record in records.items():
        result = expected[key]
        assert record["triage"] == result.model_dump(mode="json"), key
        assert {f["name"] for f in record["triage"]["factors"]} >= {"rule_strength", "repetition", "source_history"}
        summary = embedded_guard.triage_summary(result).model_dump(mode="json")
        assert record["plan"]["triage"] == summary  # the controller's, set on the plan as the workflow does
        assert all(d["triage"] == summary for d in record["decisions"]), key
    if sample == NETNS:  # the benign client's noise gets the record-only playbook, as in the workflow
        assert records["src:203.0.113.7"]["triage"]["verdict"] == "noise"
        assert records["src:203.0.113.7"]["plan"]["playbook"] == "noise"
        assert records["src:203.0.113.7"]["decisions"] == []


def test_the_table_has_a_triage_line_per_incident(env: dict[str, str], embedded_guard: Guard) -> None:
    result = runner.invoke(app, ["evaluate", str(NETNS)], env=env)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("triage:")]
    expected = expected_triage(embedded_guard, NETNS)
    assert len(lines) == len(expected)
    for key, triage in expected.items():
        ids = ", ".join(t.id for t in triage.techniques) or "-"
        line = (
            f"triage: {triage.verdict.value}, confidence {triage.confidence:g}, score {triage.score:g}; "
            f"ATT&CK {ids}; model {triage.model_revision}"
        )
        assert line in lines, (key, line, lines)
    out = result.stdout.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith(f"{ATTACKER} "))
    after = next(line.strip() for line in out[start:] if line.strip().startswith("triage:"))
    # under its incident: the case's every technique (SQLi, command injection, scanning)
    assert after.startswith("triage: malicious, confidence 0.97, score 100; ATT&CK T1059, T1190, T1595, T1595.002")


def test_a_plan_files_triage_claim_changes_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    """An XSS-only case is suspicious: at L4 its block needs a person. A plan claiming the incident is
    malicious at confidence 1 gets exactly the same decisions as the same plan without the claim."""
    xss = str(xss_only(tmp_path))
    claim = {"verdict": "malicious", "confidence": 1, "score": 100, "model_revision": "mine", "techniques": []}

    def decided(record: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(d["action"], d["verdict"], d["reasons"], d["triage"]) for d in record["decisions"]]

    for alerts in (xss, str(NETNS)):
        plain = by_key(evaluate(env, alerts, "--plan", str(plan_file(tmp_path, "plain")), "--level", "L4"))
        claimed = by_key(
            evaluate(env, alerts, "--plan", str(plan_file(tmp_path, "claim", triage=claim)), "--level", "L4")
        )
        assert plain.keys() == claimed.keys()
        for key in plain:
            assert decided(claimed[key]) == decided(plain[key]), key
            assert claimed[key]["plan"]["triage"] == plain[key]["plan"]["triage"]  # the controller's, not the file's
            assert claimed[key]["plan"]["planner_triage"] is None
        if alerts == xss:
            (block,) = claimed[ATTACKER]["decisions"]
            assert block["verdict"] == "approve" and block["triage"]["verdict"] == "suspicious"
            assert any(r.startswith("triage says suspicious") for r in block["reasons"])
        else:
            assert claimed[ATTACKER]["decisions"][0]["verdict"] == "execute"  # malicious: the bar is met anyway


def test_a_plan_files_planner_triage_lowers_and_never_raises(tmp_path: Path, env: dict[str, str]) -> None:
    lower = {"verdict": "suspicious", "confidence": 0.9, "rationale": "<img src=x onerror=alert(1)> looks benign"}
    lowered = by_key(evaluate(env, str(NETNS), "--plan", str(plan_file(tmp_path, "low", planner_triage=lower))))
    (block,) = lowered[ATTACKER]["decisions"]
    assert block["verdict"] == "approve"  # malicious 0.86 lowered to suspicious: a person approves
    assert block["triage"]["verdict"] == "suspicious"
    assert (block["triage"]["controller_verdict"], block["triage"]["lowered_by"]) == ("malicious", "planner:file")
    assert lowered[ATTACKER]["triage"]["verdict"] == "malicious"  # the full triage stays the controller's

    raise_ = {"verdict": "malicious", "confidence": 1.0}
    xss = str(xss_only(tmp_path))
    raised = by_key(evaluate(env, xss, "--plan", str(plan_file(tmp_path, "high", planner_triage=raise_))))
    (block,) = raised[ATTACKER]["decisions"]
    assert block["verdict"] == "approve" and block["triage"]["verdict"] == "suspicious"
    assert block["triage"]["lowered_by"] is None

    table = runner.invoke(
        app, ["evaluate", str(NETNS), "--plan", str(plan_file(tmp_path, "low2", planner_triage=lower))], env=env
    )
    assert table.exit_code == 0, table.output
    assert (
        "the guard was given suspicious, confidence 0.9, score 100 (lowered by planner:file from the "
        "controller's malicious)" in table.stdout
    )


def test_a_malformed_planner_triage_is_a_bad_plan_file(tmp_path: Path, env: dict[str, str]) -> None:
    path = plan_file(tmp_path, "bad", planner_triage={"verdict": "benign", "confidence": 2})
    result = runner.invoke(app, ["evaluate", str(NETNS), "--plan", str(path)], env=env)
    assert result.exit_code == 2
    assert "not a valid plan file" in result.stderr
