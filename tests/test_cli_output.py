"""Output people can read anywhere: whole table cells in a pipe or a log, and `policy test` as a short summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import REPO_ROOT, Settings
from tests.conftest import SHARED

NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
runner = CliRunner()


def piped(*args: str, columns: str | None = None) -> str:
    """The command's stdout through a pipe, with no terminal on any standard stream (as in CI or a log)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    done = subprocess.run(
        [sys.executable, "-m", "autonomy_controller.controller.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tables_in_a_pipe_keep_their_cells_whole(tmp_path: Path) -> None:
    out = piped("evaluate", str(NETNS))
    header = next(line for line in out.splitlines() if "action" in line and "verdict" in line)
    assert all(column in header for column in ("params", "risk", "why"))
    # at Rich's default 80 columns this cell folds over three lines
    assert any("ip=198.51.100.66, ttl_seconds=3600" in line for line in out.splitlines())


def test_columns_set_by_the_user_still_wins() -> None:
    out = piped("levels", "explain", columns="100")
    assert max(map(len, out.splitlines())) <= 100


@pytest.fixture
def opa_env(opa_bin: Path, config_copy: Settings) -> dict[str, str]:
    return {
        "AUTONOMY_OPA_BIN": str(opa_bin),
        "AUTONOMY_POLICIES_DIR": str(config_copy.policies_dir),
        "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir),
        "AUTONOMY_STATE_DIR": str(config_copy.state_dir),
    }


def test_policy_test_summarises_per_file_with_real_paths(opa_env: dict[str, str], config_copy: Settings) -> None:
    result = runner.invoke(app, ["policy", "test"], env=opa_env, terminal_width=200)
    assert result.exit_code == 0, result.output
    policies = config_copy.policies_dir
    decision_test = str(policies / "autonomy" / "decision_test.rego")
    assert decision_test in result.output and "autonomy-policy-test-" not in result.output
    assert str(policies / "autonomy" / "decision.rego") in result.output  # the coverage table's row
    assert "PASS " in result.output and "data.autonomy" not in result.output  # no per-test lines by default
    assert len(result.output.splitlines()) < 60


def test_policy_test_names_the_failing_test_file_and_line(opa_env: dict[str, str], config_copy: Settings) -> None:
    network_test = config_copy.policies_dir / "guardrails" / "network_test.rego"
    lines_before = len(network_test.read_text().splitlines())
    network_test.write_text(network_test.read_text() + "\ntest_this_one_fails if {\n\t1 == 2\n}\n")
    result = runner.invoke(app, ["policy", "test"], env=opa_env, terminal_width=200)
    assert result.exit_code == 1, result.output
    assert f"FAIL {network_test}:{lines_before + 2} data.autonomy.guardrails_test.test_this_one_fails" in result.output
    assert "FAIL 1 of" in result.output


def test_policy_test_json_is_opas_report_with_real_paths(opa_env: dict[str, str], config_copy: Settings) -> None:
    result = runner.invoke(app, ["policy", "test", "--json"], env=opa_env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    files = {r["location"]["file"] for r in report["results"]}
    assert files and all(Path(f).is_file() and f.startswith(str(config_copy.policies_dir)) for f in files)
    assert str(config_copy.policies_dir / "autonomy" / "decision.rego") in report["coverage"]["files"]


def test_a_policy_that_does_not_parse_is_not_a_pass(opa_env: dict[str, str], config_copy: Settings) -> None:
    broken = config_copy.policies_dir / "guardrails" / "broken_test.rego"
    broken.write_text("package autonomy.guardrails_test\n\ntest_x if {\n")
    result = runner.invoke(app, ["policy", "test"], env=opa_env)
    assert result.exit_code == 2, result.output
    assert "broken_test.rego" in result.output and "PASS" not in result.output
