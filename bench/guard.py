"""Guard latency: wasm (the default: OPA-compiled WebAssembly in wasmtime), embedded (regopy) and OPA server, at
100 / 1,000 / 10,000 inventory assets. The target: the default engine's guard p50 <= 1 ms at 1,000 assets.

Printed next to two baselines measured in the same run on the same input: a raw HTTP POST to OPA's Data API
(what the OPA path costs without our guard), and `opa bench` of the same query (OPA's own evaluation cost).
Run: `make bench` (or `.venv/bin/python -m bench.guard [--iterations N]`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import requests

from autonomy_controller.actions.registry import get_spec
from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine, compiled_policy
from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine
from autonomy_controller.controller.decision.engines.regopy_session import RegoSession
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.policy_bundle import ENTRYPOINT, PolicyBundle, with_documents
from autonomy_controller.controller.decision.runtime import load_policy_bundle
from autonomy_controller.controller.decision.targets import PlanShape, check_action, targets_of
from autonomy_controller.controller.models import (
    Alert,
    Category,
    Incident,
    Plan,
    ProposedAction,
    Provenance,
    Severity,
    TriageSummary,
)

SIZES = (100, 1_000, 10_000)


def synthetic_inventory(base: dict[str, Any], size: int) -> dict[str, Any]:
    """The shipped assets plus generated ones up to `size`, keyed by name as the policies expect."""
    assets = {name: asset for name, asset in base.items()}
    for i in range(max(0, size - len(assets))):
        assets[f"bench-{i:05d}"] = {
            "criticality": ("low", "medium", "high")[i % 3],
            "crown_jewel": i % 97 == 0,
            "environment": ("production", "staging")[i % 2],
            "group": f"group-{i % 20}",
            "addresses": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"],
            "owner": "bench",
        }
    return {"assets": assets}


def bench_incident() -> Incident:
    alert = Alert(
        id="bench-1",
        source="ocsf",  # a sensor our adapter parsed, without rule metadata, of an HTTP request
        provenance=Provenance.SENSOR,
        src_connected=True,
        observed_at=datetime(2026, 11, 23, tzinfo=UTC),
        category=Category.SQLI,
        severity=Severity.CRITICAL,
        confidence=0.9,
        src_ip="198.51.100.66",
        dst_ip="198.51.100.1",
        rule_ids=["942100"],
        blocked=True,
    )
    return incident_from_alerts("sqli:198.51.100.66", [alert])


def bench_plan(incident: Incident) -> Plan:
    return Plan(
        incident_key=incident.key,
        planner="offline",
        actions=[
            ProposedAction(
                id="a1",
                action="network.block_ip",
                params={"ip": "198.51.100.66", "ttl_seconds": 3600},
                confidence=0.9,
            ),
            ProposedAction(id="a2", action="host.isolate", params={"host": "web-01"}, confidence=0.8),
            ProposedAction(id="a3", action="network.block_ip", params={"ip": "10.0.0.0/8"}, confidence=0.9),
        ],
    )


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(fn: Callable[[], Any], iterations: int, warmup: int = 50) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
    return percentiles(samples)


def interleaved(a: Callable[[], Any], b: Callable[[], Any], iterations: int, batch: int = 50) -> tuple[float, float]:
    """The p50 of `a` and of `b`, timed in alternating batches: a before-and-after on a shared machine, where a
    loop of each in turn would compare two moments of the machine's load as much as the two paths."""
    timed(a, batch), timed(b, batch)  # warm both
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(max(1, iterations // batch)):
        for fn, kept in ((a, samples[0]), (b, samples[1])):
            for _ in range(batch):
                start = time.perf_counter()
                fn()
                kept.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples[0]), statistics.median(samples[1])


def opa_bench_ms(opa_bin: Path, bundle_dir: Path, input_doc: dict[str, Any]) -> tuple[float, float]:
    """p50 and p99 query evaluation time that `opa bench` reports for the same query and input, in ms."""
    input_file = bundle_dir.parent / "input.json"
    input_file.write_text(json.dumps(input_doc))
    out = subprocess.run(
        [
            str(opa_bin),
            "bench",
            "--data",
            str(bundle_dir),
            "--input",
            str(input_file),
            "--format",
            "json",
            f"data.{ENTRYPOINT.replace('/', '.')}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    extra = json.loads(out.stdout)["Extra"]
    key = "histogram_timer_rego_query_eval_ns_{}"
    return float(extra[key.format("median")]) / 1e6, float(extra[key.format("99%")]) / 1e6


class InProcessRegopy:
    """The embedded engine as it was before its child process: regopy in this process, no time limit. For the
    before-and-after figure only: a runaway policy would hold the caller forever."""

    name = "embedded"

    def __init__(self, session: RegoSession) -> None:
        self.evaluate = session.evaluate

    def close(self) -> None:
        pass


def measure(settings: Settings, bundle: PolicyBundle, iterations: int) -> dict[str, Any]:
    """One row: the embedded guard, the OPA guard and both baselines on the same bundle and input."""
    incident = bench_incident()
    action = bench_plan(incident).actions[0]
    started = time.perf_counter()
    guard = Guard(bundle, EmbeddedEngine(bundle))
    build_ms = (time.perf_counter() - started) * 1000.0
    facts = guard.facts(incident)
    resolution = guard.incident_resolution(facts)
    # The guard's cost per action: a plan of this action alone, and the incident's triage (made once per incident,
    # before planning) as L3 needs it to contain alone.
    checked = check_action(action)
    shape = PlanShape.of([checked])
    triage = TriageSummary(verdict="malicious", confidence=0.9)
    decision = guard.decide(incident, checked, facts, resolution, "planner:offline", shape, triage)
    assert decision.verdict.value == "execute" and decision.risk is not None, decision.reasons
    emb = timed(
        partial(guard.decide, incident, checked, facts, resolution, "planner:offline", shape, triage), iterations
    )
    spec = get_spec(action.action)
    targets = targets_of(spec, action.params, guard.assets)
    input_doc = guard.policy_input(
        incident,
        action,
        spec,
        action.params,
        targets,
        decision.risk,
        facts,
        resolution,
        "planner:offline",
        shape.of_class(spec),
    )
    # The embedded p50 by piece: loading the input, and loading it plus evaluating the policy, on a session in
    # this process (what the engine was before regopy moved to a child process for its time limit); the same
    # evaluation through the engine's child process (its pipes, the JSON both ways) timed interleaved with it,
    # and the whole guard both ways, interleaved too. The rest of the guard's p50 is its Python, plus what each
    # side loses to the other's use of the CPU caches within a decision (the pieces alone run warmer).
    embedded = guard.engine
    assert isinstance(embedded, EmbeddedEngine)
    session = RegoSession(compiled_policy(bundle))
    input_ms = timed(partial(session._set_input, input_doc, None), iterations)[0]
    in_process_ms, evaluate_ms = interleaved(
        partial(session.evaluate, input_doc), partial(embedded.evaluate, input_doc), iterations
    )
    before = Guard(bundle, InProcessRegopy(session))  # the guard as it was: no time limit
    before_decide = partial(before.decide, incident, checked, facts, resolution, "planner:offline", shape, triage)
    assert before_decide().verdict is decision.verdict
    in_process_guard, child_guard = interleaved(
        before_decide,
        partial(guard.decide, incident, checked, facts, resolution, "planner:offline", shape, triage),
        iterations,
    )
    del before, before_decide, session
    with tempfile.TemporaryDirectory() as cold_cache:  # compiling with opa, as on a first start
        started = time.perf_counter()
        WasmEngine(bundle, settings.opa_bin, Path(cold_cache))
        wasm_compile_ms = (time.perf_counter() - started) * 1000.0
        started = time.perf_counter()  # every later start: the module from the cache
        wasm_guard = Guard(bundle, WasmEngine(bundle, settings.opa_bin, Path(cold_cache)))
        wasm_build_ms = (time.perf_counter() - started) * 1000.0
    wasm_decide = partial(wasm_guard.decide, incident, checked, facts, resolution, "planner:offline", shape, triage)
    assert wasm_decide().verdict is decision.verdict
    wasm = timed(wasm_decide, iterations)
    wasm_engine = wasm_guard.engine
    wasm_policy_ms = timed(partial(wasm_engine.evaluate, input_doc), iterations)[0]
    with OpaServer(settings.opa_bin, bundle) as server, tempfile.TemporaryDirectory() as tmp:
        opa_guard = Guard(bundle, OpaServerEngine(server.url))
        opa_decide = partial(opa_guard.decide, incident, checked, facts, resolution, "planner:offline", shape, triage)
        assert opa_decide().verdict is decision.verdict
        opa = timed(opa_decide, iterations)
        session = requests.Session()
        url = f"{server.url}/v1/data/{ENTRYPOINT}"
        raw = timed(partial(session.post, url, json={"input": input_doc}, timeout=5), iterations)
        bundle_dir = Path(tmp) / "bundle"
        bundle.write_to(bundle_dir)
        bench = opa_bench_ms(settings.opa_bin, bundle_dir, input_doc)
    return {
        "assets": len(bundle.inventory),
        "embedded_build_ms": build_ms,
        "embedded_p50_ms": emb[0],
        "embedded_p99_ms": emb[1],
        "embedded_input_p50_ms": input_ms,
        "embedded_policy_p50_ms": in_process_ms - input_ms,
        "embedded_process_p50_ms": evaluate_ms - in_process_ms,
        "embedded_rest_p50_ms": child_guard - evaluate_ms,
        "embedded_in_process_p50_ms": in_process_guard,
        "embedded_child_p50_ms": child_guard,
        "wasm_compile_ms": wasm_compile_ms,
        "wasm_build_ms": wasm_build_ms,
        "wasm_p50_ms": wasm[0],
        "wasm_p99_ms": wasm[1],
        "wasm_policy_p50_ms": wasm_policy_ms,
        "opa_guard_p50_ms": opa[0],
        "opa_guard_p99_ms": opa[1],
        "raw_http_p50_ms": raw[0],
        "raw_http_p99_ms": raw[1],
        "opa_bench_p50_ms": bench[0],
        "opa_bench_p99_ms": bench[1],
    }


def run(iterations: int) -> list[dict[str, Any]]:
    settings = Settings()
    base = load_policy_bundle(settings)
    return [
        measure(settings, with_documents(base, inventory=synthetic_inventory(base.inventory, size)), iterations)
        for size in SIZES
    ]


# Each engine's guard p50 column, and the target it is held to (docs/engines.md).
P50_COLUMN = {"wasm": "wasm_p50_ms", "embedded": "embedded_p50_ms", "opa": "opa_guard_p50_ms"}
TARGET_ASSETS, TARGET_P50_MS = 1_000, 1.0


def target_line(rows: list[dict[str, Any]], engine: str) -> str:
    """The default engine's guard p50 at 1,000 assets against the 1 ms target, beside opa bench (same run)."""
    [row] = [r for r in rows if r["assets"] == TARGET_ASSETS]
    p50 = row[P50_COLUMN[engine]]
    met = "met" if p50 <= TARGET_P50_MS else "MISSED"
    return (
        f"default engine ({engine}) guard p50 at {TARGET_ASSETS:,} assets: {p50:.3f} ms, target <= {TARGET_P50_MS} "
        f"ms {met}; opa bench of the same query {row['opa_bench_p50_ms']:.3f} ms (ratio "
        f"{p50 / row['opa_bench_p50_ms']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(args.iterations)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"guard latency per action, {args.iterations} iterations each (ms)")
    header = (
        "assets",
        "emb build",
        "emb p50",
        "emb p99",
        "wasm compile",
        "wasm cached",
        "wasm p50",
        "wasm p99",
        "wasm policy50",
        "opa guard p50",
        "opa guard p99",
        "raw http p50",
        "raw http p99",
        "opa bench p50",
        "opa bench p99",
    )
    print(" | ".join(f"{h:>13}" for h in header))
    pieces = (
        "embedded_input_p50_ms",
        "embedded_policy_p50_ms",
        "embedded_process_p50_ms",
        "embedded_rest_p50_ms",
        "embedded_in_process_p50_ms",
        "embedded_child_p50_ms",
    )
    for r in rows:
        values = [v for k, v in r.items() if k not in pieces]
        print(" | ".join(f"{v:>13.3f}" if isinstance(v, float) else f"{v:>13}" for v in values))
    print(
        "\nembedded p50 by piece (ms; input and policy on a session in this process, then the child process's "
        "round trip (pipes, JSON both ways): the engine's evaluation through it, timed interleaved with the session's, "
        "less the session's; the rest: the guard's Python, caches)"
    )
    for r in rows:
        print(
            f"{r['assets']:>6} assets: input {r['embedded_input_p50_ms']:.3f} + policy "
            f"{r['embedded_policy_p50_ms']:.3f} + child process {r['embedded_process_p50_ms']:.3f} + rest "
            f"{r['embedded_rest_p50_ms']:.3f} = {r['embedded_child_p50_ms']:.3f}"
        )
    print("\nembedded guard p50 before and after its time limit (ms; interleaved batches, same run)")
    for r in rows:
        before, after = r["embedded_in_process_p50_ms"], r["embedded_child_p50_ms"]
        print(
            f"{r['assets']:>6} assets: regopy in this process (no limit) {before:.3f}, in its child process "
            f"(2 s limit) {after:.3f}: +{after - before:.3f} ms, x{after / before:.2f}"
        )
    print(f"\n{target_line(rows, Settings().policy_engine)}")
    print("\nratios (lower is better for us)")
    for r in rows:
        print(
            f"{r['assets']:>6} assets: opa guard / raw http p50 = {r['opa_guard_p50_ms'] / r['raw_http_p50_ms']:.2f}; "
            f"embedded / raw http p50 = {r['embedded_p50_ms'] / r['raw_http_p50_ms']:.2f}; "
            f"embedded p50 / opa bench = {r['embedded_p50_ms'] / r['opa_bench_p50_ms']:.2f}; "
            f"wasm p50 / opa bench = {r['wasm_p50_ms'] / r['opa_bench_p50_ms']:.2f}; "
            f"wasm policy p50 / opa bench = {r['wasm_policy_p50_ms'] / r['opa_bench_p50_ms']:.2f}"
        )


if __name__ == "__main__":
    main()
