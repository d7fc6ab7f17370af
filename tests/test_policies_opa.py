"""The Rego in policies/ passes OPA's own tools, the way a platform team runs them in CI.

`opa test` (every test passes, coverage above a floor), `opa check --strict` and `opa fmt --list` on the base
policy and the guardrails. The opa binary comes from AUTONOMY_OPA_BIN or <repo>/.tools/opa; when it is missing
these tests fail (CI builds it), they never skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
POLICY_DIRS = ["policies/autonomy", "policies/guardrails"]
# Measured 99.7% over the policy modules (tests excluded): the one line never run is decision.rego's
# `default verdict := "deny"`, a fail-closed backstop that no well-formed path reaches.
MIN_COVERAGE = 98.0

pytestmark = pytest.mark.opa


def opa_bin() -> str:
    path = Path(os.environ.get("AUTONOMY_OPA_BIN") or REPO / ".tools" / "opa")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"opa binary not found at {path}: set AUTONOMY_OPA_BIN or build it into .tools/ "
            "(GOBIN=.tools go install github.com/open-policy-agent/opa@v1.x; CI does this)"
        )
    return str(path)


def run_opa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([opa_bin(), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_opa_test_passes() -> None:
    proc = run_opa("test", *POLICY_DIRS, "-v")
    assert proc.returncode == 0, f"opa test failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert "FAIL" not in proc.stdout
    assert "PASS" in proc.stdout


def test_every_policy_module_has_tests() -> None:
    for directory in POLICY_DIRS:
        for module in sorted((REPO / directory).glob("*.rego")):
            if module.name.endswith("_test.rego"):
                continue
            tests = module.with_name(module.stem + "_test.rego")
            assert tests.is_file(), f"{module} has no _test.rego beside it"


def test_policy_coverage_is_high() -> None:
    # Not a fixture: a missing binary must FAIL the test, and pytest.fail in a fixture is an ERROR.
    proc = run_opa("test", *POLICY_DIRS, "--coverage", "--format=json")
    assert proc.returncode == 0, f"opa test --coverage failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    coverage_report: dict[str, Any] = json.loads(proc.stdout)
    covered = not_covered = 0
    low: list[str] = []
    for name, entry in coverage_report["files"].items():
        if name.endswith("_test.rego"):
            continue  # the tests' own lines say nothing about the policy
        covered += entry.get("covered_lines", 0)
        not_covered += entry.get("not_covered_lines", 0)
        if entry.get("coverage", 0) < MIN_COVERAGE:
            low.append(f"{name}: {entry.get('coverage', 0):.1f}% (uncovered: {entry.get('not_covered')})")
    assert covered, "coverage report names no policy module"
    total = 100.0 * covered / (covered + not_covered)
    assert total >= MIN_COVERAGE, f"policy coverage {total:.1f}% < {MIN_COVERAGE}%"
    assert not low, "modules below the coverage floor:\n" + "\n".join(low)


def test_opa_check_strict_is_clean() -> None:
    proc = run_opa("check", "--strict", *POLICY_DIRS)
    assert proc.returncode == 0, f"opa check --strict:\n{proc.stdout}\n{proc.stderr}"


def test_opa_fmt_has_nothing_to_change() -> None:
    proc = run_opa("fmt", "--list", *POLICY_DIRS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"run `opa fmt -w policies/` on:\n{proc.stdout}"
