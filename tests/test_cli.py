"""The CLI as a user drives it: real files in, tables or JSON lines out, exit codes that mean something."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from controller.cli import app
from controller.config import REPO_ROOT, Settings
from tests.conftest import SHARED

NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, list(args), env=env)
    return result


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["incident"]["key"]: r for r in records}


@pytest.fixture
def state_env(tmp_path: Path) -> dict[str, str]:
    return {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}


def test_evaluate_json_contract(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), "--json", env=state_env)
    assert result.exit_code == 0, result.output
    records = by_key(json_lines(result.stdout))
    sqli = records["sqli:198.51.100.66"]
    assert set(sqli) == {"incident", "plan", "decisions"}
    assert sqli["plan"]["planner"] == "offline"
    block = next(d for d in sqli["decisions"] if d["action"] == "network.block_ip")
    for key in ("action_id", "verdict", "risk", "reasons", "effective_level", "policy_revision"):
        assert key in block
    assert block["verdict"] == "execute"
    assert block["effective_level"] == "L3"
    assert block["policy_revision"].startswith("sha256:")
    assert {f["name"] for f in block["risk"]["factors"]} >= {"blast_radius", "asset_criticality"}
    assert all("raw" not in alert for alert in sqli["incident"]["alerts"])
    # The benign host's noise is never contained.
    benign = records["protocol:203.0.113.7"]
    assert not [d for d in benign["decisions"] if d["action"].startswith(("network.", "host."))]


def test_evaluate_judges_a_given_plan_at_a_given_level(state_env: dict[str, str]) -> None:
    plan = REPO_ROOT / "examples" / "plans" / "block-and-ticket.json"
    result = run("evaluate", str(NETNS), "--plan", str(plan), "--level", "L2", "--json", env=state_env)
    assert result.exit_code == 0, result.output
    sqli = by_key(json_lines(result.stdout))["sqli:198.51.100.66"]
    assert sqli["plan"]["planner"] == "file"
    verdicts = {d["action"]: d["verdict"] for d in sqli["decisions"]}
    assert verdicts == {"network.block_ip": "approve", "ticket.create": "execute"}


def test_evaluate_at_l1_never_executes_a_change(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), "--level", "L1", "--json", env=state_env)
    decisions = [d for r in json_lines(result.stdout) for d in r["decisions"]]
    assert decisions
    assert {d["verdict"] for d in decisions if not d["action"].startswith("investigate.")} <= {
        "recommend",
        "deny",
    }


def test_malformed_lines_are_dead_lettered_and_the_rest_goes_through(tmp_path: Path, state_env: dict[str, str]) -> None:
    lines = NETNS.read_text().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([lines[0], "{not json", lines[1], '{"hello": "world"}']) + "\n")
    result = run("evaluate", str(mixed), "--json", env=state_env)
    assert result.exit_code == 0, result.output
    assert {r["incident"]["key"] for r in json_lines(result.stdout)} == {
        "sqli:198.51.100.66",
        "xss:198.51.100.66",
    }
    dead = [json.loads(line) for line in (tmp_path / "var" / "dead-letter.jsonl").read_text().splitlines()]
    assert [d["line"] for d in dead] == [2, 4]
    assert "2 malformed record(s)" in result.stderr


def test_evaluate_with_opa_gives_the_same_verdicts(state_env: dict[str, str], opa_bin: Path) -> None:
    embedded = json_lines(run("evaluate", str(NETNS), "--json", env=state_env).stdout)
    opa = json_lines(run("evaluate", str(NETNS), "--json", "--engine", "opa", env=state_env).stdout)

    def verdicts(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(r["incident"]["key"], d["action"], d["verdict"]) for r in records for d in r["decisions"]]

    assert verdicts(embedded) == verdicts(opa)
    assert {d["policy"]["engine"] for r in opa for d in r["decisions"] if d["policy"]} == {"opa"}


def test_tables_for_people(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), env=state_env)
    assert result.exit_code == 0
    assert "sqli:198.51.100.66" in result.stdout and "execute" in result.stdout


def test_levels_validate_ok_and_broken(tmp_path: Path, settings: Settings) -> None:
    assert run("levels", "validate").exit_code == 0
    broken = tmp_path / "levels"
    shutil.copytree(settings.levels_dir, broken)
    document = yaml.safe_load((broken / "L4.yaml").read_text())
    document["risk"]["auto_max"] = 95
    (broken / "L4.yaml").write_text(yaml.safe_dump(document))
    result = run("levels", "validate", "--json", env={"AUTONOMY_LEVELS_DIR": str(broken)})
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["errors"] == ["L4.yaml: risk: Value error, auto_max must not exceed approve_max"]


def test_levels_explain_and_show() -> None:
    explained = json.loads(run("levels", "explain", "--json").stdout)
    assert explained["L1"]["contain_network"] == "recommend"
    assert explained["L3"]["contain_network"] == "execute"
    assert explained["L4"]["contain_host"] == "execute"
    assert explained["L5"]["restore"] == "approve"
    shown = json.loads(run("levels", "show", "--json").stdout)
    assert shown["scopes"]["default"] == "L2"
    assert shown["levels"]["L5"]["enabled"] is False
    shown_text = run("levels", "show").stdout
    assert "kill switch off" in shown_text and "domain-controllers" in shown_text


def test_policy_test_runs_opa_test(opa_bin: Path) -> None:
    result = run("policy", "test")
    assert result.exit_code == 0, result.output


def test_demo_json(state_env: dict[str, str]) -> None:
    result = run("demo", "--json", env=state_env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])["verdicts_by_level"]
    assert summary["L1"]["execute"] < summary["L4"]["execute"]
    assert summary["L3"]["deny"] > 0  # the loopback sources of the shared samples are never blocked


def test_alert_text_is_never_rendered_as_markup(tmp_path: Path, state_env: dict[str, str]) -> None:
    plan = tmp_path / "plan.json"
    title = "[high] [red]spoofed[/red] [link=https://evil.example]click[/link]"
    plan.write_text(
        json.dumps({"actions": [{"action": "ticket.create", "params": {"title": title, "severity": "low"}}]})
    )
    result = runner.invoke(app, ["evaluate", str(NETNS), "--plan", str(plan)], env={**state_env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "title=[high] [red]spoofed[/red]" in result.stdout
