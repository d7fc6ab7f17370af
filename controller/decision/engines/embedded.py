"""In-process Rego through regopy (rego-cpp): the zero-setup default engine.

Traps this module exists to close (measured: docs/architecture.md, "Policy engines"): regopy answers
*undefined* for built-ins it lacks unless strict built-in errors are on, which would let a CIDR deny rule
silently pass. So: strict errors on, every built-in the policy calls checked at load time, every Output checked
for errors, and the bundle compiled once (an ad-hoc query recompiles and costs ~200x more).

The input goes in through regopy's C input builder directly (DirectInput, half the cost of regopy's
set_input); whatever that path does not take as is (an integer beyond int64, a non-JSON type) goes through
regopy's own calls.

The bundle's data is checked once, here, against package autonomy.config (policies/autonomy/config.rego):
a bundle with errors is refused, so the per-decision policy need not re-check static data.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from math import isfinite
from pathlib import Path
from typing import Any

import regopy

from autonomy_controller.controller.decision.engines.base import (
    PolicyEngineError,
    PolicyUndefinedError,
    UnsupportedBuiltinError,
    input_json,
)
from autonomy_controller.controller.decision.engines.input_types import check_bundle_types, find_opa
from autonomy_controller.controller.decision.policy_bundle import (
    CONFIG_ENTRYPOINT,
    CONFIG_PACKAGE,
    ENTRYPOINT,
    PolicyBundle,
    rego_code,
)

_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_FUNCTION_HEAD = re.compile(r"(?m)^\s*([A-Za-z_]\w*)\s*\([^)\n]*\)\s*(?::=|=|if\b|\{)")
_IMPORT = re.compile(r"(?m)^\s*import\s+((?:data|input)(?:\.[\w]+)*)(?:\s+as\s+(\w+))?")
_KEYWORDS = {"if", "contains", "in", "some", "every", "not", "with", "else", "default", "as"}
_PACKAGE = re.compile(r"(?m)^\s*package\s+([\w.]+)")
# regopy's set_input(dict) passes integers through int64: one outside that range arrives wrapped (an IPv6 /0's
# 2**128 num_addresses as 0). Such an input goes in as JSON text instead (slower to parse: ~0.35 ms against
# ~0.09 ms through DirectInput for a guard input).
_INT64 = range(-(2**63), 2**63)


def called_builtins(modules: dict[str, str]) -> dict[str, set[str]]:
    """Map each called name that is not a function of the policy itself to the modules calling it."""
    stripped = {name: rego_code(source) for name, source in modules.items()}
    defined = {head for source in stripped.values() for head in _FUNCTION_HEAD.findall(source)}
    aliases = {
        alias or path.rsplit(".", 1)[-1] for source in stripped.values() for path, alias in _IMPORT.findall(source)
    }
    calls: dict[str, set[str]] = {}
    for module, source in stripped.items():
        for name in _CALL.findall(source):
            root = name.split(".", 1)[0]
            if name in defined or name in _KEYWORDS or root in {"data", "input"} or root in aliases:
                continue
            calls.setdefault(name, set()).add(module)
    return calls


# Built-ins regopy 1.5.2 has but answers differently from OPA (measured against OPA 1.22 with strict built-in
# errors; tests/test_review_policy2_engines.py): a policy calling one would decide otherwise here than on wasm or
# OPA, mostly silently, so it is refused at load like a missing built-in, saying what differs. Not refusable
# (the shipped policy needs them, and the difference depends on the argument): `sort` of numbers (as text),
# `sprintf("%s")` of a collection (empty text), `lower`/`upper` of some non-ASCII letters (docs/engines.md).
DIVERGENT_BUILTINS = {
    "max": "compares numbers as text: max([2, 10]) is 2",
    "min": "compares numbers as text: min([8, 32]) is 32",
    "to_number": 'reads a prefix: to_number("12abc") is 12 where OPA errs',
    "%": "300 % 10 == 0 is false",
    "time.diff": "other answers (a 3-year span off by hours)",
    "time.format": "other text (nanoseconds always printed)",
    "time.parse_rfc3339_ns": "fails on a Z offset, the form of input.time.rfc3339",
}
_REMAINDER = re.compile(r"%")  # after comments and strings are stripped, `%` is the remainder operator


def divergent_builtins(modules: dict[str, str]) -> dict[str, set[str]]:
    """Each built-in of DIVERGENT_BUILTINS (the `%` operator too) the modules call, with the modules calling it."""
    calls = called_builtins(modules)
    found = {name: calls[name] for name in DIVERGENT_BUILTINS if name in calls}
    for module, source in modules.items():
        if _REMAINDER.search(rego_code(source)):
            found.setdefault("%", set()).add(module)
    return {f"{name}: {DIVERGENT_BUILTINS[name]}": modules for name, modules in found.items()}


# regopy's parse errors: (error <length>:<file>|<offset>|<length> (errormsg <length>:<message>) ...).
_PARSE_ERROR = re.compile(r"\(error \d+:(?P<file>[^|()]+)\|(?P<offset>\d+)\|\d+\s*\(errormsg \d+:(?P<message>[^)]*)\)")


def compile_error(exc: regopy.RegoError, modules: dict[str, str], source_dir: Path) -> str:
    """regopy's error as `file:line: message` lines naming the author's files, else its own words (bounded)."""
    located = []
    for match in _PARSE_ERROR.finditer(str(exc)):
        module, offset = match["file"], int(match["offset"])
        line = modules[module][:offset].count("\n") + 1 if module in modules else "?"
        located.append(f"{source_dir / module}:{line}: {match['message'].strip()}")
    return "; ".join(dict.fromkeys(located)) if located else str(exc).strip()[:800]


def fits_int64(value: Any) -> bool:
    """Whether every integer in a JSON-like value fits int64 (so regopy's set_input keeps it exact)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in _INT64
    if isinstance(value, dict):
        return all(fits_int64(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return all(fits_int64(item) for item in value)
    return True


class _NotDirect(Exception):
    """The value holds something DirectInput does not convert (an integer beyond int64, a non-JSON type)."""


class DirectInput:
    """Sets an interpreter's input through the C input builder that regopy's set_input uses, minus its overhead.

    regopy 1.5.2's set_input makes the same C calls (regoInputString, regoInputObject, ...) but dispatches every
    value through isinstance checks against the collections ABCs and copies every string into a ctypes buffer
    first: ~0.18 ms for a guard input, ~0.09 ms this way (the rest is one ctypes call per value and key). Only
    exact JSON types take this path (dict with str keys, list, str, int within int64, float, bool, None);
    anything else raises _NotDirect, and the caller falls back to regopy's own calls. It reaches into
    regopy's internals (the library handle, the interpreter's C handle), so `available` stays False unless
    they are there and a sample document reads back the same through both paths (checked once per process).
    """

    _SAMPLE: dict[str, Any] = {
        "s": "x\u00e9\u2603",
        "n": [0, -1, 2**63 - 1, -(2**63), 1.5, -0.25, 1e300, True, False, None],
        "o": {"a": [], "b": {}, "c": [{"d": "e", "f": [[]]}], "": ""},
    }
    _works: bool | None = None  # the sample check's outcome, shared: the library is the same for all

    def __init__(self, interpreter: regopy.Interpreter) -> None:
        self.available = False
        try:
            from regopy import rego_shared  # internal: every name below is checked, none is required

            lib = rego_shared.rego
            self._handle = interpreter._impl
            self._set_input: Callable[[Any, Any], None] = rego_shared.rego_set_input
            self._new, self._free = lib.regoNewInput, lib.regoFreeInput
            self._str, self._int, self._float = lib.regoInputString, lib.regoInputInt, lib.regoInputFloat
            self._bool, self._null = lib.regoInputBoolean, lib.regoInputNull
            self._item, self._object, self._array = lib.regoInputObjectItem, lib.regoInputObject, lib.regoInputArray
            if DirectInput._works is None:
                DirectInput._works = self._reads_back_the_same()
            self.available = DirectInput._works
        except Exception:  # whatever regopy's internals turn out to be: its own set_input it is
            self.available = False

    def _reads_back_the_same(self) -> bool:
        """Whether the sample reads back from an interpreter the same, set this way and through set_input."""
        read: list[str | None] = []
        for direct in (True, False):
            scratch = regopy.Interpreter()
            if direct:
                self.set(self._SAMPLE, scratch._impl)
            else:
                scratch.set_input(self._SAMPLE)
            output = scratch.query("x = input")
            read.append(str(output) if output.ok() else None)
        return read[0] is not None and read[0] == read[1]

    def set(self, value: dict[str, Any], handle: Any = None) -> None:
        """Make `value` the input (of `handle`, by default the interpreter's).

        Raises _NotDirect, leaving the input as it was, or regopy.RegoError. Not thread-safe: the engine's
        lock is held.
        """
        string, integer, floating, boolean, null = self._str, self._int, self._float, self._bool, self._null
        item, make_object, make_array = self._item, self._object, self._array
        low, high = -(2**63), 2**63 - 1

        def add(target: Any, node: Any) -> int:
            """Push `node` onto the input stack; returns the C status (0 is OK)."""
            kind = type(node)
            if kind is str:
                code: int = string(target, node.encode())
                return code
            if kind is dict:
                for key, child in node.items():
                    if type(key) is not str:
                        raise _NotDirect
                    if string(target, key.encode()) or add(target, child) or item(target):
                        return 1
                code = make_object(target, len(node))
                return code
            if kind is list:
                for child in node:
                    if add(target, child):
                        return 1
                code = make_array(target, len(node))
                return code
            if kind is bool:
                code = boolean(target, node)
                return code
            if kind is int:
                if not low <= node <= high:
                    raise _NotDirect
                code = integer(target, node)
                return code
            if kind is float:
                if not isfinite(node):  # regopy would take it; OPA and JSON have no NaN or infinity
                    raise ValueError(f"{node} is not a JSON number")
                code = floating(target, node)
                return code
            if node is None:
                code = null(target)
                return code
            raise _NotDirect

        target = self._new()
        if not target:
            raise regopy.RegoError("Unable to create input")
        try:
            if add(target, value):
                raise regopy.RegoError("Unable to create input")
            self._set_input(self._handle if handle is None else handle, target)
        finally:
            self._free(target)


def _calls(found: dict[str, set[str]]) -> str:
    return "; ".join(f"{name} (in {', '.join(sorted(modules))})" for name, modules in sorted(found.items()))


def defines_package(modules: dict[str, str], package: str) -> bool:
    return any(package in _PACKAGE.findall(rego_code(source)) for source in modules.values())


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, bundle: PolicyBundle, opa_bin: Path | None = None) -> None:
        """Load the bundle into regopy. Given opa_bin (the configured opa, else opa on PATH) the policy is first
        type-checked against the input's schema (input_types.py), as on the other engines; without an opa it
        cannot be (regopy has no type checker): `autonomy policy test` does it where the policy is written."""
        opa = find_opa(opa_bin) if opa_bin is not None else None
        if opa is not None:
            check_bundle_types(bundle, opa)
        interpreter = regopy.Interpreter()
        interpreter.strict_built_in_errors = True
        missing = {
            name: modules
            for name, modules in called_builtins(bundle.modules).items()
            if not interpreter.is_builtin(name)
        }
        if missing:
            raise UnsupportedBuiltinError(f"policy calls built-ins the embedded engine lacks: {_calls(missing)}")
        divergent = divergent_builtins(bundle.modules)
        if divergent:
            raise UnsupportedBuiltinError(
                "policy calls built-ins the embedded engine answers differently from OPA (choose the wasm engine): "
                + _calls(divergent)
            )
        # package autonomy.config is compiled into a bundle of its own, after the decision's: regopy's per-query
        # cost grows with the size of the compiled program (measured: the config checks in the decision's bundle
        # cost ~50 us on every decision), and they run only once. The decision never reads that package.
        config_modules = {
            name: src for name, src in bundle.modules.items() if defines_package({name: src}, CONFIG_PACKAGE)
        }
        try:
            for module_name, source in bundle.modules.items():
                if module_name not in config_modules:
                    interpreter.add_module(module_name, source)
            interpreter.add_data(bundle.data)
            self._compiled = interpreter.build(f"x = data.{ENTRYPOINT.replace('/', '.')}", [ENTRYPOINT])
        except regopy.RegoError as exc:
            detail = compile_error(exc, bundle.modules, bundle.source_dir)
            raise PolicyEngineError(f"embedded engine could not compile the policy: {detail}") from exc
        if not self._compiled.ok():  # regopy prints why on its own output and raises nothing
            raise PolicyEngineError(
                "embedded engine could not compile the policy: regopy refused it without naming the rule (two "
                "rules of one name that conflict, such as `deny :=` beside `deny contains`, or a rule it cannot "
                "compile); `autonomy policy test` names the file and line"
            )
        self._interpreter = interpreter
        self._lock = threading.Lock()  # one interpreter holds one input at a time
        self._direct = DirectInput(interpreter)
        if config_modules:
            self._check_config(config_modules)
        self._warm_up()

    def _check_config(self, config_modules: dict[str, str]) -> None:
        """Refuse the bundle when package autonomy.config finds errors in its data (fail closed)."""
        try:
            for module_name, source in config_modules.items():
                self._interpreter.add_module(module_name, source)
            self._interpreter.set_input_term("{}")
            compiled = self._interpreter.build(f"x = data.{CONFIG_ENTRYPOINT.replace('/', '.')}", [CONFIG_ENTRYPOINT])
            output = self._interpreter.query_bundle_entrypoint(compiled, CONFIG_ENTRYPOINT)
        except regopy.RegoError as exc:
            raise PolicyEngineError(f"embedded engine could not check the policy data: {exc}") from exc
        expressions = output[0].expressions if output.ok() and len(output) else []
        if not expressions or not isinstance(expressions[0], list):
            raise PolicyEngineError(f"embedded engine could not check the policy data ({CONFIG_ENTRYPOINT})")
        if expressions[0]:
            raise PolicyEngineError("policy data invalid: " + "; ".join(map(str, expressions[0])))

    def _warm_up(self) -> None:
        """Evaluate the entrypoint once (input {}: a defined deny) so the first real decision is not the slow one.

        regopy's first query of a bundle costs ~5 ms more than the next ones (measured); better at load than on
        the first action a responder waits for. The answer is not used; an error here shows up again on evaluate.
        """
        try:
            self._interpreter.set_input_term("{}")
            self._interpreter.query_bundle_entrypoint(self._compiled, ENTRYPOINT)
        except regopy.RegoError:
            pass

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        with self._lock:
            try:
                self._set_input(input_doc)
                output = self._interpreter.query_bundle_entrypoint(self._compiled, ENTRYPOINT)
            except (regopy.RegoError, ValueError, TypeError, RecursionError) as exc:  # TypeError, RecursionError:
                raise PolicyEngineError(f"embedded engine error: {exc}") from exc  # an input that is not JSON
            if not output.ok():
                raise PolicyEngineError(
                    f"embedded engine error evaluating {ENTRYPOINT} (strict built-in errors are on: a built-in "
                    "failed, or two rules gave conflicting values; regopy names no rule, the wasm engine does)"
                )
            # Output parses the JSON once; an undefined result has no expressions.
            expressions = output[0].expressions if len(output) else []
            if not expressions:
                raise PolicyUndefinedError(f"{ENTRYPOINT} is undefined for this input")
            return expressions[0]

    def _set_input(self, input_doc: dict[str, Any]) -> None:
        if self._direct.available:
            try:
                return self._direct.set(input_doc)
            except _NotDirect:
                pass
        if fits_int64(input_doc):
            self._interpreter.set_input(input_doc)
        else:
            self._interpreter.set_input_term(input_json(input_doc).decode())

    def close(self) -> None:
        """Nothing to release: the interpreter is freed with the object."""
