"""The JSON Schemas of the input and data documents (schema/) hold for what the guard really sends and loads.

Checked with OPA's own JSON Schema validator (json.match_schema), the one a platform team's OPA would use, and
with OPA's type checker: `opa check -s` type-checks every policy reference to `input` against the schema.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.policy_bundle import SCHEMA_DIR, PolicyBundle
from tests.test_conformance import MALFORMED, POLICY_CASES, _input_doc, _malformed

QUERY = "[[i, answer[1]] | some i; answer := json.match_schema(data.documents[i], data.schema); not answer[0]]"


def mismatches(opa_bin: Path, tmp_path: Path, schema: str, documents: list[Any]) -> dict[int, Any]:
    """Index -> OPA's errors for each document the schema refuses (one `opa eval` for all of them)."""
    data = tmp_path / "documents.json"
    data.write_text(json.dumps({"documents": documents, "schema": json.loads((SCHEMA_DIR / schema).read_text())}))
    done = subprocess.run(
        [str(opa_bin), "eval", "--format", "json", "--data", str(data), QUERY], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [result] = json.loads(done.stdout)["result"]
    return {index: errors for index, errors in result["expressions"][0]["value"]}


@pytest.fixture(scope="module")
def real_inputs(embedded_guard: Guard) -> list[dict[str, Any]]:
    """The input the guard builds for every case of the conformance table (each with input.time)."""
    return [_input_doc(embedded_guard, case) for case in POLICY_CASES]


def test_every_real_guard_input_matches_the_input_schema(
    real_inputs: list[dict[str, Any]], opa_bin: Path, tmp_path: Path
) -> None:
    assert len(real_inputs) >= 40 and all("time" in doc for doc in real_inputs)
    assert mismatches(opa_bin, tmp_path, "input.schema.json", real_inputs) == {}


def test_the_input_schema_refuses_malformed_inputs(
    real_inputs: list[dict[str, Any]], opa_bin: Path, tmp_path: Path
) -> None:
    """The malformed inputs the policy denies: the schema refuses each one too (it checks, it is not a comment)."""
    base = real_inputs[0]
    documents = [_malformed(base, section, key, value) for section, key, value in MALFORMED]
    documents.append({**base, "surprise": 1})
    documents.append({key: value for key, value in base.items() if key != "time"})
    documents.append(_malformed(base, "time", "rfc3339", "2026-11-23 08:00:00+01:00"))
    refused = mismatches(opa_bin, tmp_path, "input.schema.json", documents)
    assert sorted(refused) == list(range(len(documents)))


def test_the_compiled_data_matches_the_data_schema(bundle: PolicyBundle, opa_bin: Path, tmp_path: Path) -> None:
    broken = json.loads(json.dumps(bundle.data))
    broken["inventory"]["assets"]["web-01"]["tags"] = ["Not-Lower"]
    del broken["levels"]["L3"]["enabled"]
    refused = mismatches(opa_bin, tmp_path, "data.schema.json", [bundle.data, broken])
    assert sorted(refused) == [1]
    said = json.dumps(refused[1])
    assert "inventory.assets.web-01.tags" in said and "levels.L3" in said


def test_opa_type_checks_the_policies_against_the_input_schema(settings: Any, opa_bin: Path, tmp_path: Path) -> None:
    """`opa check -s`: a rule reading an input field the schema does not have is a type error (the lint target
    runs the same check on policies/ and examples/policies/)."""
    command = [str(opa_bin), "check", "--strict", "-s", str(SCHEMA_DIR / "input.schema.json")]
    shipped = subprocess.run([*command, "--ignore", "*_test.rego", str(settings.policies_dir)], capture_output=True)
    assert shipped.returncode == 0, shipped.stderr.decode()
    typo = tmp_path / "typo.rego"
    typo.write_text('package autonomy.guardrails\n\ndeny contains "x" if input.time.now == 1\n')
    refused = subprocess.run([*command, str(typo)], capture_output=True, text=True)
    assert refused.returncode != 0 and "input.time.now" in refused.stdout + refused.stderr
