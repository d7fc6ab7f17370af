"""Rego through regopy (rego-cpp), no opa binary needed: the embedded engine.

What is checked here, at load: every built-in the policy calls exists in regopy (it answers *undefined* for one
it lacks unless strict built-in errors are on, which would let a CIDR deny rule silently pass) and is not one it
answers differently from OPA; with an opa binary, the input's types (input_types.py).

Where regopy runs: in a child process of its own (regopy_process.py, the interpreter in regopy_session.py),
started once and reused, so that a query past its deadline can be stopped: regopy cannot interrupt one, and a
thread cannot be killed. Past the deadline, or when the child dies, the evaluation is a PolicyEngineError (the
guard denies, naming it) and a new child loads the policy for the next one (docs/engines.md).
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

import regopy

from autonomy_controller.controller.decision.engines.base import (
    EVALUATION_TIMEOUT_S,
    LOAD_TIMEOUT_S,
    PolicyEngineError,
    UnsupportedBuiltinError,
    input_json,
)
from autonomy_controller.controller.decision.engines.input_types import check_bundle_types, find_opa
from autonomy_controller.controller.decision.engines.regopy_process import (
    DeadlineExceeded,
    MemoryExceeded,
    ProcessEnded,
    RegoProcess,
)
from autonomy_controller.controller.decision.engines.regopy_session import CompiledPolicy
from autonomy_controller.controller.decision.policy_bundle import (
    CONFIG_ENTRYPOINT,
    CONFIG_PACKAGE,
    ENTRYPOINT,
    PolicyBundle,
    rego_code,
)

EVALUATION_HEADROOM_MB = 512
"""What one evaluation may add to the child's size with the policy loaded (52 MB with the shipped policy and 100
assets): a rule that built a 20-million-element range grew it to ~2 GB by the 2 s limit, 7.5 GB in 10 s. The child
is measured every 50 ms while it evaluates, and killed past the limit."""

_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
_FUNCTION_HEAD = re.compile(r"(?m)^\s*([A-Za-z_]\w*)\s*\([^)\n]*\)\s*(?::=|=|if\b|\{)")
_IMPORT = re.compile(r"(?m)^\s*import\s+((?:data|input)(?:\.[\w]+)*)(?:\s+as\s+(\w+))?")
_KEYWORDS = {"if", "contains", "in", "some", "every", "not", "with", "else", "default", "as"}
_PACKAGE = re.compile(r"(?m)^\s*package\s+([\w.]+)")


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


def _calls(found: dict[str, set[str]]) -> str:
    return "; ".join(f"{name} (in {', '.join(sorted(modules))})" for name, modules in sorted(found.items()))


def defines_package(modules: dict[str, str], package: str) -> bool:
    return any(package in _PACKAGE.findall(rego_code(source)) for source in modules.values())


class EmbeddedEngine:
    name = "embedded"

    def __init__(
        self,
        bundle: PolicyBundle,
        opa_bin: Path | None = None,
        timeout_s: float = EVALUATION_TIMEOUT_S,
        load_timeout_s: float = LOAD_TIMEOUT_S,
        headroom_mb: int = EVALUATION_HEADROOM_MB,
    ) -> None:
        """Check the bundle and load it into a regopy child process. Given opa_bin (the configured opa, else opa
        on PATH) the policy is first type-checked against the input's schema (input_types.py), as on the other
        engines; without an opa it cannot be (regopy has no type checker): `autonomy policy test` does it where
        the policy is written. An evaluation longer than timeout_s, or one that grows the child more than
        headroom_mb past its size with the policy loaded, or a load longer than load_timeout_s, is stopped: a
        PolicyEngineError naming the limit."""
        self._timeout_s, self._load_timeout_s = timeout_s, load_timeout_s
        self._headroom = headroom_mb << 20
        self._policy = compiled_policy(bundle)
        self._lock = threading.Lock()  # one child, one input at a time
        self._process: RegoProcess | None = RegoProcess(self._policy)  # it loads while the checks below run
        try:
            opa = find_opa(opa_bin) if opa_bin is not None else None
            if opa is not None:
                check_bundle_types(bundle, opa)
            _check_builtins(bundle.modules)
            self._ready(self._process)
        except BaseException:
            self.close()
            raise

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        text = input_json(input_doc)
        with self._lock:
            if self._process is None:  # closed, or the last restart failed
                self._process = RegoProcess(self._policy)
            self._ready(self._process)
            try:
                return self._process.evaluate(text, self._timeout_s, self._headroom)
            except MemoryExceeded as exc:
                self._replace()
                raise PolicyEngineError(
                    f"embedded engine: evaluating {ENTRYPOINT} {exc}, past its memory limit (the loaded policy's "
                    f"size + {self._headroom >> 20} MB), and was stopped (its regopy process killed; a new one is "
                    "loading the policy)"
                ) from None
            except DeadlineExceeded:
                self._replace()
                raise PolicyEngineError(
                    f"embedded engine: evaluating {ENTRYPOINT} took longer than the {self._timeout_s:g} s limit "
                    "and was stopped (its regopy process killed; a new one is loading the policy)"
                ) from None
            except ProcessEnded as exc:
                self._replace()
                raise PolicyEngineError(
                    f"embedded engine: {exc} while evaluating {ENTRYPOINT}; a new one is loading the policy"
                ) from None

    def _replace(self) -> None:
        """Start the next input's child (it loads from now on); one that will not start is retried then."""
        self._process = None
        with contextlib.suppress(PolicyEngineError):
            self._process = RegoProcess(self._policy)

    def _ready(self, process: RegoProcess) -> None:
        """Wait for `process` to have loaded the policy (bounded by the load limit); a failed load drops it."""
        try:
            process.wait_ready(self._load_timeout_s)
        except DeadlineExceeded:
            self._process = None
            raise PolicyEngineError(
                f"embedded engine: loading the policy took longer than the {self._load_timeout_s:g} s limit and "
                "was stopped"
            ) from None
        except ProcessEnded as exc:
            self._process = None
            raise PolicyEngineError(f"embedded engine: {exc} while loading the policy") from None
        except PolicyEngineError:  # the load's own error (compile, data checks), as it was
            self._process = None
            raise

    @property
    def pid(self) -> int | None:
        """The child process's id (None while there is none): what a test kills to see a crash handled."""
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        """Stop the child process. An evaluation after close starts another (it pays the load)."""
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process = None


def compiled_policy(bundle: PolicyBundle) -> CompiledPolicy:
    """What the child process compiles: package autonomy.config apart (regopy_session.py says why)."""
    config = {name: src for name, src in bundle.modules.items() if defines_package({name: src}, CONFIG_PACKAGE)}
    return CompiledPolicy(
        modules={name: src for name, src in bundle.modules.items() if name not in config},
        config_modules=config,
        data=bundle.data,
        source_dir=str(bundle.source_dir),
        entrypoint=ENTRYPOINT,
        config_entrypoint=CONFIG_ENTRYPOINT,
    )


def _check_builtins(modules: dict[str, str]) -> None:
    """UnsupportedBuiltinError for a built-in regopy lacks or answers differently from OPA."""
    interpreter = regopy.Interpreter()  # only asked which built-ins it has
    missing = {name: found for name, found in called_builtins(modules).items() if not interpreter.is_builtin(name)}
    if missing:
        raise UnsupportedBuiltinError(f"policy calls built-ins the embedded engine lacks: {_calls(missing)}")
    divergent = divergent_builtins(modules)
    if divergent:
        raise UnsupportedBuiltinError(
            "policy calls built-ins the embedded engine answers differently from OPA (choose the wasm engine): "
            + _calls(divergent)
        )
