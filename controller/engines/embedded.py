"""In-process Rego through regopy (rego-cpp): the zero-setup default engine.

Traps this module exists to close (measured, see DESIGN.md): regopy answers *undefined* for built-ins it lacks
unless strict built-in errors are on, which would let a CIDR deny rule silently pass. So: strict errors on,
every built-in the policy calls checked at load time, every Output checked for errors, and the bundle compiled
once (an ad-hoc query recompiles and costs ~200x more).

The bundle's data is checked once, here, against package autonomy.config (policies/autonomy/config.rego):
a bundle with errors is refused, so the per-decision policy need not re-check static data.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import regopy

from controller.engines.base import PolicyEngineError, PolicyUndefinedError, UnsupportedBuiltinError
from controller.policy_bundle import CONFIG_ENTRYPOINT, CONFIG_PACKAGE, ENTRYPOINT, PolicyBundle

_COMMENT_OR_STRING = re.compile(r'"(?:\\.|[^"\\])*"|`[^`]*`|#[^\n]*')
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_FUNCTION_HEAD = re.compile(r"(?m)^\s*([A-Za-z_]\w*)\s*\([^)\n]*\)\s*(?::=|=|if\b|\{)")
_IMPORT = re.compile(r"(?m)^\s*import\s+((?:data|input)(?:\.[\w]+)*)(?:\s+as\s+(\w+))?")
_KEYWORDS = {"if", "contains", "in", "some", "every", "not", "with", "else", "default", "as"}
_PACKAGE = re.compile(r"(?m)^\s*package\s+([\w.]+)")
# regopy's set_input(dict) passes integers through int64: one outside that range arrives wrapped (an IPv6 /0's
# 2**128 num_addresses as 0). Such an input goes in as JSON text instead (slower to parse: ~0.35 ms against
# ~0.25 ms for a guard input).
_INT64 = range(-(2**63), 2**63)


def called_builtins(modules: dict[str, str]) -> dict[str, set[str]]:
    """Map each called name that is not a function of the policy itself to the modules calling it."""
    stripped = {name: _COMMENT_OR_STRING.sub(" ", source) for name, source in modules.items()}
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


def defines_package(modules: dict[str, str], package: str) -> bool:
    return any(package in _PACKAGE.findall(_COMMENT_OR_STRING.sub(" ", source)) for source in modules.values())


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, bundle: PolicyBundle) -> None:
        interpreter = regopy.Interpreter()
        interpreter.strict_built_in_errors = True
        missing = {
            name: modules
            for name, modules in called_builtins(bundle.modules).items()
            if not interpreter.is_builtin(name)
        }
        if missing:
            detail = "; ".join(f"{name} (in {', '.join(sorted(mods))})" for name, mods in sorted(missing.items()))
            raise UnsupportedBuiltinError(f"policy calls built-ins the embedded engine lacks: {detail}")
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
            raise PolicyEngineError(f"embedded engine could not compile the policy: {exc}") from exc
        self._interpreter = interpreter
        self._lock = threading.Lock()  # one interpreter holds one input at a time
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
                if fits_int64(input_doc):
                    self._interpreter.set_input(input_doc)
                else:
                    self._interpreter.set_input_term(json.dumps(input_doc))
                output = self._interpreter.query_bundle_entrypoint(self._compiled, ENTRYPOINT)
            except (regopy.RegoError, ValueError) as exc:
                raise PolicyEngineError(f"embedded engine error: {exc}") from exc
            if not output.ok():
                raise PolicyEngineError(
                    f"embedded engine error evaluating {ENTRYPOINT} (strict built-in errors are on: "
                    "a built-in failed or is unsupported)"
                )
            # Output parses the JSON once; an undefined result has no expressions.
            expressions = output[0].expressions if len(output) else []
            if not expressions:
                raise PolicyUndefinedError(f"{ENTRYPOINT} is undefined for this input")
            return expressions[0]

    def close(self) -> None:
        """Nothing to release: the interpreter is freed with the object."""
