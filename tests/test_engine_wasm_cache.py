"""The wasm engine as the default: its compiled module cached per set of Rego modules (wasm_cache.py), found
without opa once compiled or prebuilt, and failing closed with the fix named when neither opa nor a module is
there; OPA's C natives failing where OPA (strict built-in errors) fails, never answering undefined."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError, PolicyUndefinedError
from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.engines.wasm_builtins import C_NATIVES
from autonomy_controller.controller.decision.engines.wasm_cache import (
    OpaNotFoundError,
    compiled_module,
    modules_key,
    opa_version,
    prebuild,
)
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle, with_documents
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level, Verdict
from autonomy_controller.workflows.contracts import ActionStatus
from autonomy_controller.workflows.guard_provider import GuardProvider
from tests.harness import ATTACKER, action_of, burst, running_loop
from tests.test_conformance import CASES, _comparable, _decide


@pytest.fixture
def no_opa_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH without opa; returns a path where no opa is (as AUTONOMY_OPA_BIN would name it)."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return tmp_path / "no-opa"


def test_the_default_engine_is_wasm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AUTONOMY_POLICY_ENGINE", raising=False)
    monkeypatch.setenv("AUTONOMY_WASM_CACHE", str(tmp_path / "cache"))
    assert Settings().policy_engine == EngineName.WASM
    with open_guard(Settings()) as guard:
        assert isinstance(guard, Guard) and guard.engine.name == "wasm"


def test_compiled_once_then_read_from_the_cache(bundle: PolicyBundle, opa_bin: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = WasmEngine(bundle, opa_bin, cache)
    assert first.module_source.startswith("compiled by")
    [cached] = cache.glob("*.wasm")
    assert cached.name.startswith(modules_key(bundle.modules)) and "-opa1." in cached.name
    again = WasmEngine(bundle, opa_bin, cache)
    assert again.module_source == str(cached)
    case = CASES[0]
    assert _comparable(_decide(Guard(bundle, again), case)) == _comparable(_decide(Guard(bundle, first), case))


def test_the_key_is_the_modules_not_the_data(bundle: PolicyBundle, opa_bin: Path, tmp_path: Path) -> None:
    """An inventory edit reuses the module (the data is loaded onto the heap at start); a Rego edit does not."""
    cache = tmp_path / "cache"
    WasmEngine(bundle, opa_bin, cache)
    other_data = with_documents(bundle, inventory={"assets": {"solo-01": {"addresses": ["10.9.9.9"]}}})
    assert other_data.revision != bundle.revision
    assert not WasmEngine(other_data, opa_bin, cache).module_source.startswith("compiled by")
    edited = dict(bundle.modules)
    edited["guardrails/extra.rego"] = "package autonomy.guardrails\n\nextra_rule := 1\n"
    assert WasmEngine(dataclasses.replace(bundle, modules=edited), opa_bin, cache).module_source.startswith(
        "compiled by"
    )
    assert len(list(cache.glob("*.wasm"))) == 2


def test_without_opa_a_cached_module_is_used(
    bundle: PolicyBundle, opa_bin: Path, tmp_path: Path, no_opa_on_path: Path
) -> None:
    cache = tmp_path / "cache"
    compiled_module(bundle.modules, opa_bin, cache)
    engine = WasmEngine(bundle, no_opa_on_path, cache)
    assert engine.module_source.startswith(str(cache))
    assert _decide(Guard(bundle, engine), CASES[0]).verdict is CASES[0].expected


def test_without_opa_a_prebuilt_module_is_used(
    settings: Settings, bundle: PolicyBundle, opa_bin: Path, tmp_path: Path, no_opa_on_path: Path
) -> None:
    """What a wheel ships: the shipped policies' module, compiled at packaging time."""
    prebuilt = tmp_path / "prebuilt"
    made = prebuild(settings.policies_dir, opa_bin, prebuilt)
    binary, source = compiled_module(bundle.modules, no_opa_on_path, tmp_path / "empty-cache", (prebuilt,))
    assert source == str(made) and binary == made.read_bytes()


def test_without_opa_and_without_a_module_the_guard_fails_closed_naming_the_fix(
    config_copy: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_opa_on_path: Path
) -> None:
    monkeypatch.setenv("AUTONOMY_WASM_CACHE", str(tmp_path / "empty-cache"))
    settings = dataclasses.replace(config_copy, opa_bin=no_opa_on_path, policy_engine="wasm")
    with open_guard(settings) as guard:
        assert isinstance(guard, UnavailableGuard)
        for words in (str(no_opa_on_path), "AUTONOMY_OPA_BIN", "PATH", "make setup", "AUTONOMY_POLICY_ENGINE=embedded"):
            assert words in guard.reason, words
    with pytest.raises(OpaNotFoundError):
        compiled_module({"p.rego": "package p\n"}, no_opa_on_path, tmp_path / "empty-cache", ())


def test_a_damaged_cached_module_refuses_the_bundle(
    bundle: PolicyBundle, opa_bin: Path, tmp_path: Path, no_opa_on_path: Path
) -> None:
    cache = tmp_path / "cache"
    compiled_module(bundle.modules, opa_bin, cache)
    [cached] = cache.glob("*.wasm")
    cached.write_bytes(cached.read_bytes()[: len(cached.read_bytes()) // 2])
    with pytest.raises(PolicyEngineError, match=f"{cached}.*truncated"):
        WasmEngine(bundle, no_opa_on_path, cache)


def test_opa_is_found_on_path(bundle: PolicyBundle, opa_bin: Path, tmp_path: Path, monkeypatch: Any) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(opa_bin, bin_dir / "opa")
    monkeypatch.setenv("PATH", str(bin_dir))
    engine = WasmEngine(bundle, tmp_path / "not-here", tmp_path / "cache")
    assert engine.module_source == f"compiled by {bin_dir / 'opa'}"


# --- OPA's C natives: an error where OPA errors, not an undefined rule ------------------------------------------
NATIVES = """package autonomy.decision

default fires := false

fires if {
	input.op == "count"
	count(input.x) > 3
}

fires if {
	input.op == "div"
	input.x / input.y > 1
}

fires if {
	input.op == "sum"
	sum(input.x) > 1
}

fires if {
	input.op == "trim"
	trim(input.x, " ") == "a"
}

fires if {
	input.op == "base64"
	base64.decode(input.x) == "a"
}

fires if {
	input.op == "regex"
	regex.match(input.x, "a")
}

fires if {
	input.op == "minus"
	count(input.x - input.y) == 1
}

top := [m | input.op == "max"; m := max(input.x)]

top_of_set := [m | input.op == "max of set"; m := max({x | some x in input.x})]

result := {"fires": fires, "top": array.concat(top, top_of_set)}
"""
CONFIG = "package autonomy.config\n\nerrors := []\n"


@pytest.fixture(scope="module")
def native_engines(bundle: PolicyBundle, opa_bin: Path, tmp_path_factory: Any) -> Any:
    natives = dataclasses.replace(
        bundle, modules={"n.rego": NATIVES, "config.rego": CONFIG}, data={}, input_schema=None
    )
    with OpaServer(opa_bin, natives) as server:
        yield WasmEngine(natives, opa_bin, tmp_path_factory.mktemp("cache")), OpaServerEngine(server.url)


FAILING = {
    "count of a number": {"op": "count", "x": 5},
    "division by zero": {"op": "div", "x": 5, "y": 0},
    "sum of a string": {"op": "sum", "x": "ab"},
    "trim of a number": {"op": "trim", "x": 7},
    "invalid regex": {"op": "regex", "x": "("},
    "invalid base64": {"op": "base64", "x": "%%%"},
    "set minus a number": {"op": "minus", "x": ["a"], "y": 1},
    "max of a number": {"op": "max", "x": 3},
}


@pytest.mark.parametrize("document", FAILING.values(), ids=FAILING.keys())
def test_a_native_that_fails_is_an_error_on_both(document: dict[str, Any], native_engines: Any) -> None:
    """Without the engine's fail_on_null the C natives answer undefined: `fires` would be false, a deny rule
    that silently did not fire."""
    for engine in native_engines:
        with pytest.raises(PolicyEngineError) as raised:
            engine.evaluate(document)
        assert not isinstance(raised.value, PolicyUndefinedError)


def test_the_wasm_error_names_the_built_in(native_engines: Any) -> None:
    wasm, _ = native_engines
    with pytest.raises(PolicyEngineError, match="count: invalid operand"):
        wasm.evaluate(FAILING["count of a number"])


SUCCEEDING = {
    "count": ({"op": "count", "x": [1, 2, 3, 4]}, {"fires": True, "top": []}),
    "division": ({"op": "div", "x": 5, "y": 2}, {"fires": True, "top": []}),
    "regex": ({"op": "regex", "x": "^a"}, {"fires": True, "top": []}),
    "base64": ({"op": "base64", "x": "YQ=="}, {"fires": True, "top": []}),
    "max": ({"op": "max", "x": [3, 10, 2]}, {"fires": False, "top": [10]}),
    "max of empty": ({"op": "max", "x": []}, {"fires": False, "top": []}),
    "max of a set": ({"op": "max of set", "x": [3, 10]}, {"fires": False, "top": [10]}),
    "max of an empty set": ({"op": "max of set", "x": []}, {"fires": False, "top": []}),
}


@pytest.mark.parametrize(("document", "expected"), SUCCEEDING.values(), ids=SUCCEEDING.keys())
def test_natives_that_succeed_answer_as_opa(document: dict[str, Any], expected: Any, native_engines: Any) -> None:
    """max of an empty collection is undefined in OPA too, not an error: that NULL stands (NULL_IS_UNDEFINED_FOR)."""
    wasm, opa = native_engines
    assert wasm.evaluate(document) == opa.evaluate(document) == expected


# --- the default engine in the loop ------------------------------------------------------------------------------
async def test_the_loop_decides_on_the_default_engine(config_copy: Settings) -> None:
    """A worker with no engine named (as `autonomy worker` runs) decides on wasm: the L3 block runs and each
    decision record names the engine and the policy revision."""
    async with running_loop(config_copy, engine=EngineName(Settings().policy_engine)) as loop:
        (key,) = await loop.submit(burst(), level=Level.L3)
        status = await loop.wait_for(
            key, lambda s: bool(s.actions) and action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
        )
        assert ("blocked", ATTACKER) in loop.enforcement.state, status
        decisions = loop.ledger.records(key, [RecordKind.DECISION])
        engines = {record.payload["policy"]["engine"] for record in decisions if record.payload.get("policy")}
        assert engines == {"wasm"}


def test_a_policy_edit_reaches_the_worker_compiled_once(
    config_copy: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's guard (GuardProvider) on the default engine: a Rego edit is compiled at the next use and
    decides from then on; an edit that does not compile stops every action, naming opa's error."""
    monkeypatch.setenv("AUTONOMY_WASM_CACHE", str(tmp_path / "cache"))
    provider = GuardProvider(config_copy)
    first = provider.current()
    assert isinstance(first, Guard) and first.engine.name == "wasm"
    assert provider.current() is first  # nothing moved: no rebuild
    rule = config_copy.policies_dir / "guardrails" / "no_ticket.rego"
    rule.write_text(
        'package autonomy.guardrails\n\ndeny contains "tickets are off" if input.action.name == "ticket.create"\n'
    )
    edited = provider.current()
    assert isinstance(edited, Guard) and edited is not first
    assert isinstance(edited.engine, WasmEngine) and edited.engine.module_source.startswith("compiled by")
    ticket = next(c for c in CASES if c.name == "L2 ticket runs")
    assert _decide(first, ticket).verdict is Verdict.EXECUTE
    decision = _decide(edited, ticket)
    assert decision.verdict is Verdict.DENY and any("tickets are off" in r for r in decision.reasons)
    rule.write_text("package autonomy.guardrails\n\ndeny contains if {\n")
    broken = provider.current()
    assert isinstance(broken, UnavailableGuard) and "opa check refused the policy" in broken.reason
    assert "no_ticket.rego:4: rego_parse_error" in broken.reason, broken.reason
    provider.close()


def test_an_opa_that_cannot_run_is_an_unavailable_guard_not_a_crash(
    config_copy: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "opa"
    broken.write_text("not a program\n")
    broken.chmod(0o755)
    monkeypatch.setenv("AUTONOMY_WASM_CACHE", str(tmp_path / "empty-cache"))
    with open_guard(dataclasses.replace(config_copy, opa_bin=broken, policy_engine="wasm")) as guard:
        assert isinstance(guard, UnavailableGuard)
        assert f"could not run {broken} version" in guard.reason


def test_the_patched_natives_are_opas_own_list(opa_bin: Path) -> None:
    """C_NATIVES is OPA's list of built-ins its wasm target implements in C (the source `make setup` built opa
    from, in Go's module cache): after an OPA upgrade that adds one, this fails until it is listed (a native left
    out would answer undefined on error again)."""
    version = opa_version(opa_bin)
    go = shutil.which("go")
    assert go, "Go builds .tools/opa (make setup); its module cache holds OPA's source"
    cache = Path(subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip())
    source = cache / f"github.com/open-policy-agent/opa@v{version}/internal/compiler/wasm/wasm.go"
    assert source.is_file(), f"{source}: OPA's source is not where `go install` leaves it"
    table = source.read_text().split("var builtinsFunctions = map[string]string{")[1].split("\n}")[0]
    assert set(re.findall(r'"(\w+)"', table)) == set(C_NATIVES)
