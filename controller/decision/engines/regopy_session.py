"""One regopy interpreter holding a compiled policy: what the embedded engine's child process runs.

Traps this module exists to close (measured: docs/architecture.md, "Policy engines"): regopy answers
*undefined* for built-ins it lacks unless strict built-in errors are on, which would let a CIDR deny rule
silently pass. So: strict errors on, every Output checked for errors, and the bundle compiled once (an ad-hoc
query recompiles and costs ~200x more). The built-ins a policy calls are checked before, by the engine
(embedded.py).

The input goes in through regopy's C input builder directly (DirectInput, half the cost of regopy's
set_input); whatever that path does not take as is (an integer beyond int64, a non-JSON type) goes through
regopy's own calls.

The bundle's data is checked once, at load, against package autonomy.config (policies/autonomy/config.rego):
a bundle with errors is refused, so the per-decision policy need not re-check static data.

Imports only regopy and the engine contract: the child process starts on it, and its start is on the path of a
restart after a runaway policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from math import isfinite
from pathlib import Path
from typing import Any

import regopy

from autonomy_controller.controller.decision.engines.base import PolicyEngineError, PolicyUndefinedError

# regopy's set_input(dict) passes integers through int64: one outside that range arrives wrapped (an IPv6 /0's
# 2**128 num_addresses as 0). Such an input goes in as JSON text instead (slower to parse: ~0.35 ms against
# ~0.09 ms through DirectInput for a guard input).
_INT64 = range(-(2**63), 2**63)


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

        Raises _NotDirect, leaving the input as it was, or regopy.RegoError. Not thread-safe: the child
        process serves one request at a time.
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


@dataclass(frozen=True)
class CompiledPolicy:
    """What a session compiles: the bundle's modules and data, and the two entry points (passed in, so that
    the child process need not import the bundle's loader)."""

    modules: dict[str, str]  # every module but package autonomy.config's
    config_modules: dict[str, str]  # package autonomy.config: compiled apart, run once at load
    data: dict[str, Any]
    source_dir: str  # where the author's files are, for file:line in compile errors
    entrypoint: str
    config_entrypoint: str

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, text: bytes) -> CompiledPolicy:
        return cls(**json.loads(text))


class RegoSession:
    """The policy compiled into one regopy interpreter, evaluated one input at a time (not thread-safe: the
    child process serves one request at a time)."""

    def __init__(self, policy: CompiledPolicy) -> None:
        """Compile, check the data (package autonomy.config) and warm up; PolicyEngineError when any fails."""
        self._entrypoint = policy.entrypoint
        interpreter = regopy.Interpreter()
        interpreter.strict_built_in_errors = True
        # package autonomy.config is compiled into a bundle of its own, after the decision's: regopy's per-query
        # cost grows with the size of the compiled program (measured: the config checks in the decision's bundle
        # cost ~50 us on every decision), and they run only once. The decision never reads that package.
        every_module = {**policy.modules, **policy.config_modules}
        try:
            for module_name, source in policy.modules.items():
                interpreter.add_module(module_name, source)
            interpreter.add_data(policy.data)
            self._compiled = interpreter.build(_query(policy.entrypoint), [policy.entrypoint])
        except regopy.RegoError as exc:
            detail = compile_error(exc, every_module, Path(policy.source_dir))
            raise PolicyEngineError(f"embedded engine could not compile the policy: {detail}") from exc
        if not self._compiled.ok():  # regopy prints why on its own output and raises nothing
            raise PolicyEngineError(
                "embedded engine could not compile the policy: regopy refused it without naming the rule (two "
                "rules of one name that conflict, such as `deny :=` beside `deny contains`, or a rule it cannot "
                "compile); `autonomy policy test` names the file and line"
            )
        self._interpreter = interpreter
        self.direct = DirectInput(interpreter)
        if policy.config_modules:
            self._check_config(policy.config_modules, policy.config_entrypoint)
        self._warm_up()

    def _check_config(self, config_modules: dict[str, str], entrypoint: str) -> None:
        """Refuse the bundle when package autonomy.config finds errors in its data (fail closed)."""
        try:
            for module_name, source in config_modules.items():
                self._interpreter.add_module(module_name, source)
            self._interpreter.set_input_term("{}")
            compiled = self._interpreter.build(_query(entrypoint), [entrypoint])
            output = self._interpreter.query_bundle_entrypoint(compiled, entrypoint)
        except regopy.RegoError as exc:
            raise PolicyEngineError(f"embedded engine could not check the policy data: {exc}") from exc
        expressions = output[0].expressions if output.ok() and len(output) else []
        if not expressions or not isinstance(expressions[0], list):
            raise PolicyEngineError(f"embedded engine could not check the policy data ({entrypoint})")
        if expressions[0]:
            raise PolicyEngineError("policy data invalid: " + "; ".join(map(str, expressions[0])))

    def _warm_up(self) -> None:
        """Evaluate the entrypoint once (input {}: a defined deny) so the first real decision is not the slow one.

        regopy's first query of a bundle costs ~5 ms more than the next ones (measured); better at load than on
        the first action a responder waits for. The answer is not used; an error here shows up again on evaluate.
        """
        try:
            self._interpreter.set_input_term("{}")
            self._interpreter.query_bundle_entrypoint(self._compiled, self._entrypoint)
        except regopy.RegoError:
            pass

    def evaluate(self, input_doc: dict[str, Any], text: bytes | None = None) -> Any:
        """The entrypoint's value for this input (`text`: the same input as JSON, when the caller has it)."""
        try:
            self._set_input(input_doc, text)
            output = self._interpreter.query_bundle_entrypoint(self._compiled, self._entrypoint)
        except (regopy.RegoError, ValueError, TypeError, RecursionError) as exc:  # TypeError, RecursionError:
            raise PolicyEngineError(f"embedded engine error: {exc}") from exc  # an input that is not JSON
        if not output.ok():
            raise PolicyEngineError(
                f"embedded engine error evaluating {self._entrypoint} (strict built-in errors are on: a built-in "
                "failed, or two rules gave conflicting values; regopy names no rule, the wasm engine does)"
            )
        # Output parses the JSON once; an undefined result has no expressions.
        expressions = output[0].expressions if len(output) else []
        if not expressions:
            raise PolicyUndefinedError(f"{self._entrypoint} is undefined for this input")
        return expressions[0]

    def _set_input(self, input_doc: dict[str, Any], text: bytes | None) -> None:
        if self.direct.available:
            try:
                return self.direct.set(input_doc)
            except _NotDirect:
                pass
        if fits_int64(input_doc):
            self._interpreter.set_input(input_doc)
        else:
            self._interpreter.set_input_term((text or json.dumps(input_doc, allow_nan=False).encode()).decode())


def _query(entrypoint: str) -> str:
    return f"x = data.{entrypoint.replace('/', '.')}"
