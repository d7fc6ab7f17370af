"""The conformance table, grown from the shipped sample alerts: every policy input the real guard builds for them.

The alerts in examples/alerts/ go through what `autonomy simulate` does (incidents, the controller's triage, the
offline planner, the guard at each level and at the scopes' own), once as the guard triages them and once as
if triage had said each verdict; a recording engine keeps each action's input document exactly as the guard
sent it. With the hand-written cases of tests/test_conformance.py (their inputs built the same way), every input
gets the same answer document from the embedded engine, the wasm engine, the controller's OPA server and a plain
OPA serving the exported bundle (`autonomy policy bundle`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngine
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.engines.opa_server import OpaServerEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.models import Level, TriageSummary
from autonomy_controller.controller.oversight.simulate import stream_incidents
from autonomy_controller.controller.planning import OfflinePlanner
from tests.test_conformance import POLICY_CASES, _input_doc
from tests.test_policy_bundle_export import serve_bundle
from tests.test_policy_schema import mismatches

SAMPLES = sorted((REPO_ROOT / "examples" / "alerts").glob("*.jsonl"))
LEVELS: list[Level | None] = [None, *Level]  # None: the level the scopes assign (levels/scopes.yaml)
AS_IF: list[TriageSummary | None] = [
    None,  # the guard's own triage of the alerts
    TriageSummary(verdict="malicious", confidence=0.95),
    TriageSummary(verdict="suspicious", confidence=0.7),
    TriageSummary(verdict="noise", confidence=0.9),
]
MIN_TABLE = 100


class Recorder:
    """A policy engine that keeps every input it is asked about and answers with the embedded engine."""

    name = "embedded"

    def __init__(self, engine: EmbeddedEngine) -> None:
        self.engine, self.inputs = engine, list[dict[str, Any]]()

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        self.inputs.append(json.loads(json.dumps(input_doc)))
        return self.engine.evaluate(input_doc)

    def close(self) -> None:
        pass


def sample_inputs(bundle: PolicyBundle, engine: EmbeddedEngine, settings: Settings) -> list[dict[str, Any]]:
    """Each distinct input the guard sends the policy for the sample alerts, in the order it sent them."""
    recorder = Recorder(engine)
    guard = Guard(bundle, recorder)
    planner = OfflinePlanner(settings.playbooks_dir, asset_groups=guard.asset_groups)
    alerts = [alert for path in SAMPLES for alert in read_alerts(path)]
    assert len(alerts) >= 8, f"the shipped samples in {SAMPLES} no longer read"
    for incident in stream_incidents(alerts):
        enriched = guard.enrich(incident)
        for as_if in AS_IF:
            triage = as_if or guard.triage_summary(guard.triage(enriched))
            plan = planner.plan(enriched, triage.verdict)
            for level in LEVELS:
                guard.decide_plan(enriched, plan, level, triage=triage, now=enriched.last_seen)
    distinct = {json.dumps(doc, sort_keys=True): doc for doc in recorder.inputs}
    return list(distinct.values())


@pytest.fixture(scope="module")
def table(bundle: PolicyBundle, embedded_guard: Guard, settings: Settings) -> list[dict[str, Any]]:
    """The whole table: the hand-written cases' inputs, then the samples' (duplicates dropped)."""
    assert isinstance(embedded_guard.engine, EmbeddedEngine)
    documents = [_input_doc(embedded_guard, case) for case in POLICY_CASES]
    documents += sample_inputs(bundle, embedded_guard.engine, settings)
    return list({json.dumps(doc, sort_keys=True): doc for doc in documents}.values())


@pytest.fixture(scope="module")
def engines(
    bundle: PolicyBundle, embedded_guard: Guard, opa_guard: Guard, opa_bin: Path, tmp_path_factory: Any
) -> Iterator[dict[str, PolicyEngine]]:
    archive = tmp_path_factory.mktemp("export") / "bundle.tar.gz"
    bundle.write_opa_bundle(archive)
    wasm = WasmEngine(bundle, opa_bin)
    try:
        for url in serve_bundle(opa_bin, archive):
            yield {
                "embedded": embedded_guard.engine,
                "wasm": wasm,
                "opa": opa_guard.engine,
                "exported": OpaServerEngine(url),
            }
    finally:
        wasm.close()


def test_the_table_is_real_guard_inputs_and_spans_the_policy(
    table: list[dict[str, Any]], opa_bin: Path, tmp_path: Path
) -> None:
    assert len(table) >= MIN_TABLE
    from_samples = len(table) - len(POLICY_CASES)
    assert from_samples >= 40, f"the sample alerts gave only {from_samples} new inputs"
    classes = Counter(doc["action"]["class"] for doc in table)
    assert {"investigate", "notify", "ticket", "contain_network", "contain_host", "contain_identity"} <= set(classes)
    assert {doc["level"]["effective"] for doc in table} >= {"L1", "L2", "L3", "L4"}
    # the documented input document (schema/input.schema.json), as the guard really sends it
    assert mismatches(opa_bin, tmp_path, "input.schema.json", table) == {}


def test_every_input_gets_the_same_answer_on_every_engine_path(
    table: list[dict[str, Any]], engines: dict[str, PolicyEngine]
) -> None:
    verdicts: Counter[str] = Counter()
    disagreements = []
    for number, doc in enumerate(table):
        answers = {name: engine.evaluate(doc) for name, engine in engines.items()}
        embedded = answers["embedded"]
        assert isinstance(embedded, dict) and embedded.get("verdict"), (number, embedded)
        verdicts[embedded["verdict"]] += 1
        disagreements += [(number, name, answer, embedded) for name, answer in answers.items() if answer != embedded]
    assert disagreements == []
    assert set(verdicts) == {"execute", "approve", "recommend", "deny"}, verdicts
