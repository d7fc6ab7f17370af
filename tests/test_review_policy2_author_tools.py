"""Review (policy2): `autonomy policy test` as a careless author meets it: a misspelled rule in a test, a policy
that does not parse, a data file with a mistake. Each run is the real CLI with the real opa on a private copy."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.rule_references import undefined_rules
from tests import test_cli_output

runner = CliRunner()
opa_env = test_cli_output.opa_env  # the fixture: the real opa and a private copy of the configuration

# A test of the shipped network guardrail, with `deny` misspelled: `not guardrails.denny` is always true, so OPA
# runs it as a pass whatever the guardrail decides (and `opa check --strict` says nothing).
TYPO_TEST = """package autonomy.guardrails_test

import data.autonomy.guardrails

test_cgnat_is_never_blocked if {
	not guardrails.denny with input as {"action": {"class": "contain_network"}}
}

test_reads_a_real_rule if {
	not guardrails.deny["x"] with input as {"action": {"class": "notify"}}
}
"""


def test_a_test_that_reads_a_rule_nobody_defines_fails_the_run(opa_env: dict[str, str], config_copy: Settings) -> None:
    typo = config_copy.policies_dir / "guardrails" / "typo_test.rego"
    typo.write_text(TYPO_TEST)
    result = runner.invoke(app, ["policy", "test", "--no-coverage"], env=opa_env, terminal_width=250)
    assert result.exit_code == 1, result.output
    assert (
        f"CANNOT FAIL {typo}:6: autonomy.guardrails_test.test_cgnat_is_never_blocked reads "
        "data.autonomy.guardrails.denny, which no policy module defines" in result.output
    ), result.output
    assert "test_reads_a_real_rule" not in result.output.split("CANNOT FAIL", 1)[1]
    assert "PASS " in result.output  # OPA itself passed every test

    as_json = runner.invoke(app, ["policy", "test", "--no-coverage", "--json"], env=opa_env)
    assert as_json.exit_code == 1
    [vacuous] = json.loads(as_json.stdout)["cannot_fail"]
    assert vacuous["rule"] == "data.autonomy.guardrails.denny" and vacuous["line"] == 6


def test_the_shipped_and_example_tests_all_can_fail(opa_bin: Path, settings: Settings) -> None:
    assert undefined_rules(opa_bin, settings.policies_dir) == []
    assert undefined_rules(opa_bin, settings.policies_dir.parent / "examples" / "policies") == []


def test_references_that_are_fine_are_not_reported(opa_bin: Path, tmp_path: Path) -> None:
    """Data documents, a package below, a rule of the test's own package, a computed key: none is a typo."""
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "rules.rego").write_text('package team.rules\n\ndeny contains "x" if input.x\n')
    (tmp_path / "team" / "sub.rego").write_text("package team.rules.sub\n\nflag := true\n")
    (tmp_path / "team" / "rules_test.rego").write_text(
        "package team.rules_test\n\nimport data.team.rules\n\nhelper := 1\n\n"
        "test_fine if {\n\tnot data.inventory.assets.x\n\trules.sub.flag\n\thelper == 1\n"
        '\tsome k in ["deny"]\n\trules[k]\n\trules.deny["x"] with input as {"x": true}\n}\n'
    )
    assert undefined_rules(opa_bin, tmp_path) == []


def test_a_policy_that_does_not_parse_names_the_real_file(opa_env: dict[str, str], config_copy: Settings) -> None:
    team = config_copy.policies_dir / "guardrails" / "team.rego"
    team.write_text("package autonomy.guardrails\n\ndeny contains msg if {\n\tmsg := input.x\n")
    result = runner.invoke(app, ["policy", "test"], env=opa_env, terminal_width=250)
    assert result.exit_code == 2, result.output
    assert f"{team}:5: rego_parse_error" in result.output, result.output
    assert "autonomy-policy-test-" not in result.output


def test_a_data_file_that_does_not_load_is_an_error_not_a_traceback(
    opa_env: dict[str, str], config_copy: Settings
) -> None:
    (config_copy.policies_dir / "teams").mkdir()
    (config_copy.policies_dir / "teams" / "data.yaml").write_text("oncall: alice\noncall: bob\n")
    result = runner.invoke(app, ["policy", "test"], env=opa_env, terminal_width=250)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "teams/data.yaml:2: duplicate key 'oncall'" in result.output, result.output


def test_a_rule_that_misreads_the_input_is_named_before_any_test_runs(
    opa_env: dict[str, str], config_copy: Settings
) -> None:
    """`opa test` runs it happily (its tests give the input they expect); every engine refuses it at load."""
    team = config_copy.policies_dir / "guardrails" / "team.rego"
    team.write_text('package autonomy.guardrails\n\ndeny contains "dc" if input.action.clas == "contain_host"\n')
    result = runner.invoke(app, ["policy", "test"], env=opa_env, terminal_width=250)
    assert result.exit_code == 2, result.output
    assert f"{team}:3: rego_type_error: undefined ref: input.action.clas" in result.output, result.output


def test_a_bundle_that_misreads_the_input_is_not_written(
    opa_env: dict[str, str], config_copy: Settings, tmp_path: Path
) -> None:
    """The exported bundle goes to an OPA that checks nothing: there the misspelled field never fires."""
    team = config_copy.policies_dir / "guardrails" / "team.rego"
    team.write_text('package autonomy.guardrails\n\ndeny contains "dc" if input.action.clas == "contain_host"\n')
    out = tmp_path / "bundle.tar.gz"
    result = runner.invoke(app, ["policy", "bundle", "--out", str(out)], env=opa_env, terminal_width=250)
    assert result.exit_code == 1, result.output
    assert "policy bundle not written" in result.output and f"{team}:3: rego_type_error" in result.output
    assert not out.exists()


def test_a_bundle_of_levels_that_do_not_load_is_an_error_not_a_traceback(
    opa_env: dict[str, str], config_copy: Settings, tmp_path: Path
) -> None:
    level = config_copy.levels_dir / "L3.yaml"
    level.write_text(level.read_text() + "bogus: [\n")
    result = runner.invoke(app, ["policy", "bundle", "--out", str(tmp_path / "b.tar.gz")], env=opa_env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "policy bundle not written: invalid level config" in result.output and "L3.yaml" in result.output


# --- autonomy policy check: which engines run the policies -------------------------------------------------------
CGNAT = (
    'package autonomy.guardrails\n\ndeny contains "cgnat" if {\n\tsome t in input.targets.ips\n'
    '\tnet.cidr_contains("100.64.0.0/10", t.value)\n}\n'
)


def test_policy_check_says_which_engines_run_an_idiomatic_policy(
    opa_env: dict[str, str], config_copy: Settings
) -> None:
    (config_copy.policies_dir / "guardrails" / "team.rego").write_text(CGNAT)
    result = runner.invoke(app, ["policy", "check", "--json"], env=opa_env)
    assert result.exit_code == 0, result.output
    engines = json.loads(result.stdout)["engines"]
    assert engines["wasm"] == engines["opa"] == {"runs": True, "refusal": None}
    assert engines["embedded"]["runs"] is False
    assert "net.cidr_contains (in guardrails/team.rego)" in engines["embedded"]["refusal"]
    embedded = runner.invoke(app, ["policy", "check"], env={**opa_env, "AUTONOMY_POLICY_ENGINE": "embedded"})
    assert embedded.exit_code == 1, embedded.output
    assert "the configured engine (embedded) would deny every action" in embedded.output


def test_policy_check_names_the_line_every_engine_refuses(opa_env: dict[str, str], config_copy: Settings) -> None:
    team = config_copy.policies_dir / "guardrails" / "team.rego"
    team.write_text('package autonomy.guardrails\n\ndeny contains "dc" if input.action.clas == "contain_host"\n')
    result = runner.invoke(app, ["policy", "check", "--json"], env=opa_env)
    assert result.exit_code == 1
    engines = json.loads(result.stdout)["engines"]
    for engine, verdict in engines.items():
        assert verdict["runs"] is False, engine
        assert f"{team}:3: rego_type_error: undefined ref: input.action.clas" in verdict["refusal"], engine


def test_policy_check_of_the_shipped_policies(opa_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["policy", "check", "--json"], env=opa_env)
    assert result.exit_code == 0, result.output
    assert all(v["runs"] for v in json.loads(result.stdout)["engines"].values())


def test_a_test_that_reads_nothing_of_the_policy_fails_the_run(opa_env: dict[str, str], config_copy: Settings) -> None:
    """`test_x if { true }`, or a test of OPA's own built-in rather than of the guardrail: both pass forever."""
    tests = config_copy.policies_dir / "guardrails" / "team_test.rego"
    tests.write_text(
        "package autonomy.guardrails_test\n\nimport data.autonomy.guardrails\n\n"
        "test_placeholder if {\n\ttrue\n}\n\n"
        'test_cgnat_range if {\n\tnet.cidr_contains("100.64.0.0/10", "100.64.1.1")\n}\n\n'
        "denials := guardrails.deny\n\n"
        'test_through_a_helper if {\n\tcount(denials) == 0 with input as {"action": {"class": "notify"}}\n}\n'
    )
    result = runner.invoke(app, ["policy", "test", "--no-coverage", "--json"], env=opa_env)
    assert result.exit_code == 1, result.output
    flagged = {(v["reader"], v["line"], v["rule"]) for v in json.loads(result.stdout)["cannot_fail"]}
    assert flagged == {
        ("autonomy.guardrails_test.test_placeholder", 5, "nothing"),
        ("autonomy.guardrails_test.test_cgnat_range", 9, "nothing"),
    }
    shown = runner.invoke(app, ["policy", "test", "--no-coverage"], env=opa_env, terminal_width=250)
    assert f"CANNOT FAIL {tests}:5: autonomy.guardrails_test.test_placeholder reads no rule and no data" in shown.output
