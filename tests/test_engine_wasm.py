"""The wasm engine (OPA-compiled WebAssembly in wasmtime) against a real OPA: the conformance table, idiomatic
Rego (net.*, time.*, count, min/max, every, comprehensions), and failing closed on what it cannot do."""

from __future__ import annotations

import dataclasses
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError, UnsupportedBuiltinError
from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.models import Verdict
from tests.test_conformance import (
    CASES,
    ENGINE_FAILURES,
    MALFORMED,
    MALFORMED_TRIAGE,
    POLICY_CASES,
    Case,
    _comparable,
    _decide,
    _input_doc,
    _malformed,
)


@pytest.fixture(scope="module")
def wasm_guard(bundle: PolicyBundle, opa_bin: Path) -> Guard:
    return Guard(bundle, WasmEngine(bundle, opa_bin))


CASES_BY_NAME = {case.name: case for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_conformance_table_matches_opa(case: Case, wasm_guard: Guard, opa_guard: Guard) -> None:
    wasm, opa = _decide(wasm_guard, case), _decide(opa_guard, case)
    assert _comparable(wasm) == _comparable(opa)
    assert wasm.verdict is case.expected, wasm.reasons
    if wasm.policy is not None:
        assert wasm.policy.engine == "wasm"


def test_malformed_inputs_match_opa(wasm_guard: Guard, opa_guard: Guard) -> None:
    base = _input_doc(wasm_guard, CASES_BY_NAME["L1 block recommends only"])
    for section, key, value in MALFORMED:
        document = _malformed(base, section, key, value)
        assert wasm_guard.engine.evaluate(document) == opa_guard.engine.evaluate(document), (section, key, value)
    runs = _input_doc(wasm_guard, CASES_BY_NAME["L3 block runs"])
    for triage in MALFORMED_TRIAGE:
        document = {**runs, "triage": triage}
        assert wasm_guard.engine.evaluate(document) == opa_guard.engine.evaluate(document), triage


def test_policy_inputs_match_opa_document_for_document(wasm_guard: Guard, opa_guard: Guard) -> None:
    """The raw decision documents, not only what the guard makes of them."""
    for case in POLICY_CASES:
        document = _input_doc(wasm_guard, case)
        assert wasm_guard.engine.evaluate(document) == opa_guard.engine.evaluate(document), case.name


@pytest.mark.parametrize("failure", ENGINE_FAILURES, ids=lambda f: f.name)
def test_a_misused_built_in_is_a_deny(failure: Any, config_copy: Settings) -> None:
    rule = f'deny contains "misused built-in" if {{\n\tblocking\n\t{failure.guardrail}\n}}\n'
    (config_copy.policies_dir / "guardrails" / "misuse.rego").write_text(f"package autonomy.guardrails\n\n{rule}")
    with open_guard(config_copy, EngineName.WASM) as guard:
        decision = _decide(guard, CASES_BY_NAME["L4 block runs"])
    assert decision.verdict is Verdict.DENY, decision.reasons
    [reason] = decision.reasons
    assert reason.startswith(
        ("policy engine (wasm) gave no decision: wasm engine error", "guard unavailable: policy calls built-ins")
    ), reason


# --- idiomatic Rego: the issue's three policies' building blocks, on both engines --------------------------------
IDIOMS = """package autonomy.decision

cgnat := "100.64.0.0/10"

result := {
	"in_cgnat": {a: net.cidr_contains(cgnat, a) | some a in input.addresses},
	"overlaps": {c: net.cidr_intersects(cgnat, c) | some c in input.ranges},
	"holds": {c: net.cidr_contains(c, "100.64.12.0/24") | some c in input.ranges},
	"hour": time.clock(input.at)[0],
	"date": time.date(input.at),
	"weekday": time.weekday(input.at),
	"parsed": time.parse_rfc3339_ns(input.stamp),
	"next_month": time.add_date(input.at, 0, 1, 0),
	"office_hours": office_hours,
	"count": count(input.addresses),
	"smallest": min(input.numbers),
	"largest": max(input.numbers),
	"all_positive": all_positive,
	"tagged": [name | some name, asset in input.assets; "domain-controller" in asset.tags],
	"message": sprintf("%s has %d addresses, %v", [input.name, count(input.addresses), true]),
}

default office_hours := false

office_hours if {
	[hour, _, _] := time.clock([input.at, "UTC"])
	8 <= hour
	hour < 18
}

default all_positive := false

all_positive if {
	every n in input.numbers {
		n > 0
	}
}
"""
CONFIG = "package autonomy.config\n\nerrors := []\n"
ADDRESSES = [
    "100.64.12.7",
    "100.127.255.255",
    "100.128.0.0",
    "100.63.255.255",
    "::ffff:100.64.12.7",
    "::ffff:6440:c07",
    "::ffff:100.128.0.1",
    "::100.64.12.7",
    "64:ff9b::100.64.12.7",
    "2001:db8::1",
    "0.0.0.0",
    "255.255.255.255",
    "::",
    "::1",
]
RANGES = ["100.64.0.0/10", "100.0.0.0/8", "100.64.12.0/28", "100.128.0.0/9", "::ffff:100.64.0.0/104", "::/0"]
STAMPS = ["2026-11-23T07:59:59Z", "2026-11-23T08:00:00.5+01:00", "2024-02-29T17:59:59.123456789-05:30"]


@pytest.fixture(scope="module")
def idiom_engines(bundle: PolicyBundle, opa_bin: Path) -> Iterator[tuple[WasmEngine, OpaServerEngine]]:
    idioms = dataclasses.replace(
        bundle, modules={"idioms.rego": IDIOMS, "config.rego": CONFIG}, data={}, input_schema=None
    )
    with OpaServer(opa_bin, idioms) as server:
        yield WasmEngine(idioms, opa_bin), OpaServerEngine(server.url)


@pytest.mark.parametrize("stamp", STAMPS)
def test_idiomatic_rego_gives_opas_answers(stamp: str, idiom_engines: tuple[WasmEngine, OpaServerEngine]) -> None:
    wasm, opa = idiom_engines
    at = opa.evaluate({**_IDIOM_INPUT, "stamp": stamp, "at": 0})["parsed"]
    document = {**_IDIOM_INPUT, "stamp": stamp, "at": at}
    answer = wasm.evaluate(document)
    assert answer == opa.evaluate(document)
    # The point of issue 16: OPA's C natives say false for the IPv4-mapped spelling; OPA and this engine say true.
    assert answer["in_cgnat"]["::ffff:100.64.12.7"] is True
    assert answer["in_cgnat"]["::100.64.12.7"] is False


_IDIOM_INPUT = {
    "addresses": ADDRESSES,
    "ranges": RANGES,
    "numbers": [10, 2, 33, 4.5],
    "assets": {"dc-01": {"tags": ["domain-controller"]}, "web-01": {"tags": []}},
    "name": "plan",
}


@pytest.mark.parametrize(
    "document",
    [
        {**_IDIOM_INPUT, "addresses": ["100.64.0.0/33"]},
        {**_IDIOM_INPUT, "addresses": ["100.64.12.7%eth0"]},
        {**_IDIOM_INPUT, "ranges": ["100.64.12.7"]},
        {**_IDIOM_INPUT, "stamp": "2026-11-23 08:00:00"},
        {**_IDIOM_INPUT, "addresses": [7]},
    ],
    ids=["prefix too long", "zone", "bare address as a range", "not RFC 3339", "number as an address"],
)
def test_a_built_in_error_is_an_error_on_both(document: dict[str, Any], idiom_engines: Any) -> None:
    """OPA (strict built-in errors) errors; so does the wasm engine: never an undefined rule, never a value."""
    document = {"stamp": STAMPS[0], "at": 0, **document}
    for engine in idiom_engines:
        with pytest.raises(PolicyEngineError):
            engine.evaluate(document)


def test_a_built_in_the_engine_lacks_refuses_the_bundle(bundle: PolicyBundle, opa_bin: Path) -> None:
    source = 'package autonomy.decision\n\nresult := units.parse("10K")\n'
    lacking = dataclasses.replace(bundle, modules={"p.rego": source, "config.rego": CONFIG}, data={}, input_schema=None)
    with pytest.raises(UnsupportedBuiltinError, match=r"units\.parse"):
        WasmEngine(lacking, opa_bin)


def test_the_clock_is_read_once_per_evaluation(bundle: PolicyBundle, opa_bin: Path) -> None:
    source = "package autonomy.decision\n\nresult := [time.now_ns(), time.now_ns()]\n"
    clock = dataclasses.replace(bundle, modules={"p.rego": source, "config.rego": CONFIG}, data={}, input_schema=None)
    engine = WasmEngine(clock, opa_bin)
    first, second = engine.evaluate({}), engine.evaluate({})
    assert first[0] == first[1] and second[0] == second[1] and second[0] >= first[0]


def test_a_replaced_engine_is_freed(bundle: PolicyBundle, opa_bin: Path) -> None:
    """A guard reload replaces the engine: its host built-ins, which the wasm store holds, must not keep it (and its
    wasm memory) alive."""
    engine = WasmEngine(bundle, opa_bin)
    engine.evaluate({})
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None


def test_a_built_in_that_raises_names_itself(bundle: PolicyBundle, opa_bin: Path) -> None:
    """The host built-in's own error crosses the module's trap to the caller, with the built-in named; the next
    evaluation on the same engine is unaffected."""
    source = 'package autonomy.decision\n\nresult := net.cidr_contains(input.net, "10.0.0.1")\n'
    cidr = dataclasses.replace(bundle, modules={"p.rego": source, "config.rego": CONFIG}, data={}, input_schema=None)
    engine = WasmEngine(cidr, opa_bin)
    with pytest.raises(PolicyEngineError, match=r"net\.cidr_contains"):
        engine.evaluate({"net": "10.0.0.0/33"})
    assert engine.evaluate({"net": "10.0.0.0/8"}) is True


def test_selected_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMY_POLICY_ENGINE", "wasm")
    with open_guard(Settings()) as guard:
        assert isinstance(guard, Guard) and guard.engine.name == "wasm"
    monkeypatch.setenv("AUTONOMY_POLICY_ENGINE", "wasmer")
    with open_guard(Settings()) as guard:
        assert isinstance(guard, UnavailableGuard)
        assert "AUTONOMY_POLICY_ENGINE='wasmer'" in guard.reason
