"""OPA's own compiler, in-process: the policy built to WebAssembly with `opa build -t wasm`, run by wasmtime.

Why: the same Rego as OPA (net.*, time.*, count, min/max, every, comprehensions) with no server, and without
regopy's cost model. Needs the opa binary to compile (once per set of modules, 0.5-1 s, then cached:
wasm_cache.py), not to decide.

Fail closed, as the other engines: the module's host built-ins (those OPA's wasm target leaves to the SDK) are
checked at load, and one this engine lacks refuses the bundle (UnsupportedBuiltinError, naming it); a host
built-in that fails raises, which traps the evaluation (an error, a deny). OPA's C natives return *undefined*
on error and some differ from OPA (net.cidr_contains on IPv4-mapped IPv6): those are rerouted to the host
(wasm_module.py, wasm_builtins.REROUTED_NATIVES). ABI: OPA's wasm ABI 1.2+ (opa_eval, the one-call path).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import wasmtime

from autonomy_controller.controller.decision.engines.base import (
    EVALUATION_TIMEOUT_S,
    LOAD_TIMEOUT_S,
    PolicyEngineError,
    PolicyUndefinedError,
    UnsupportedBuiltinError,
    input_json,
)
from autonomy_controller.controller.decision.engines.wasm_builtins import (
    C_NATIVES,
    NOT_PATCHED,
    NULL_IS_UNDEFINED_FOR,
    REROUTED_NATIVES,
    BuiltinError,
    Clock,
    failed_native,
    host_builtins,
)
from autonomy_controller.controller.decision.engines.wasm_cache import compiled_module
from autonomy_controller.controller.decision.engines.wasm_calls import I32Export, define_host
from autonomy_controller.controller.decision.engines.wasm_module import WasmFormatError, WasmModule
from autonomy_controller.controller.decision.policy_bundle import CONFIG_ENTRYPOINT, ENTRYPOINT, PolicyBundle


class _EpochClock:
    """One wasmtime engine for every policy module, with epoch interruption: while some wasm call runs, a daemon
    thread advances the epoch every TICK_S, and a call that runs past its deadline (a store's epoch deadline, in
    ticks) traps, a deny, instead of holding the worker. wasmtime checks the epoch at loop heads and function
    entries (a few percent of the policy's time). The thread sleeps on a condition while no call runs: an idle
    worker is not woken 100 times a second for nothing."""

    TICK_S = 0.01

    def __init__(self) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self._init_state()
        os.register_at_fork(after_in_child=self._init_state)  # a forked child has no tick thread: it starts one

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._ticking = False
        self._calls = threading.Condition()
        self._running = 0

    def ticks(self, seconds: float) -> int:
        """A deadline of at least `seconds` of running (the current tick may be about to end)."""
        return math.ceil(seconds / self.TICK_S) + 1

    @contextmanager
    def running(self) -> Iterator[None]:
        """Around every call into a module: the epoch advances only while one runs, so a deadline counts time spent
        running (a deadline set just before the call, as every caller does, counts this call's time)."""
        self._start()
        with self._calls:
            self._running += 1
            self._calls.notify()
        try:
            yield
        finally:
            with self._calls:
                self._running -= 1

    def _start(self) -> None:
        if self._ticking:
            return
        with self._lock:
            if not self._ticking:
                threading.Thread(target=self._tick, name="wasm-policy-epoch", daemon=True).start()
                self._ticking = True

    def _tick(self) -> None:
        while True:
            with self._calls:
                self._calls.wait_for(lambda: self._running > 0)
            time.sleep(self.TICK_S)
            self.engine.increment_epoch()


_EPOCHS = _EpochClock()
_REROUTED_ID_BASE = 1_000_000  # far above the ids OPA numbers the module's own imports with (0, 1, ...)
_FAILED_ID_BASE = 2_000_000
_PAGE = 65536


class WasmEngine:
    name = "wasm"

    def __init__(
        self,
        bundle: PolicyBundle,
        opa_bin: Path | None,
        cache_dir: Path | None = None,
        timeout_s: float = EVALUATION_TIMEOUT_S,
    ) -> None:
        """Compile the bundle's modules with opa_bin (else opa on PATH), or take them from the cache
        (wasm_cache.py); no opa and no cached module is an OpaNotFoundError naming the fix. An evaluation that
        runs longer than timeout_s traps (a PolicyEngineError naming the limit)."""
        self._timeout_s = timeout_s
        self._clock = Clock()
        implemented = host_builtins(self._clock)
        self._authored = bundle.as_authored
        try:
            binary, self.module_source = compiled_module(
                bundle.modules, opa_bin, cache_dir, input_schema=bundle.input_schema
            )
        except PolicyEngineError as exc:
            raise type(exc)(self._authored(str(exc))) from exc
        try:
            module = WasmModule.parse(binary)
            self._by_id: dict[int, tuple[str, Any]] = {}
            for number, (native, (builtin, arity)) in enumerate(sorted(REROUTED_NATIVES.items())):
                if native in module.function_names:
                    module.reroute(native, f"env.opa_builtin{arity}", _REROUTED_ID_BASE + number, arity)
                    self._by_id[_REROUTED_ID_BASE + number] = (builtin, implemented[builtin])
            for number, native in enumerate(sorted(C_NATIVES)):
                if native in module.function_names and native not in NOT_PATCHED:
                    null_ok_for = NULL_IS_UNDEFINED_FOR.get(native, ())
                    module.fail_on_null(native, "env.opa_builtin0", _FAILED_ID_BASE + number, null_ok_for)
                    self._by_id[_FAILED_ID_BASE + number] = (C_NATIVES[native], failed_native(C_NATIVES[native]))
            binary = module.to_bytes()
        except (WasmFormatError, KeyError) as exc:
            raise PolicyEngineError(f"wasm engine: unexpected module layout ({self.module_source}): {exc}") from exc
        self._lock = threading.Lock()  # one instance, one heap: one evaluation at a time
        try:
            with _EPOCHS.running():  # the load's calls count toward its deadline too
                self._load_module(binary, module.data_end(), implemented, bundle)
        except (wasmtime.WasmtimeError, WasmFormatError) as exc:
            raise PolicyEngineError(f"wasm engine could not load the policy ({self.module_source}): {exc}") from exc
        if CONFIG_ENTRYPOINT in self._entrypoints:
            self._check_config()

    def _load_module(self, binary: bytes, data_end: int, implemented: dict[str, Any], bundle: PolicyBundle) -> None:
        """Instantiate the module, check its built-ins are ours to provide, and put the policy data on its heap."""
        self._instantiate(binary, data_end)
        imported = json.loads(self._dump(self._call("builtins")))
        missing = sorted(name for name in imported if name not in implemented)
        if missing:
            raise UnsupportedBuiltinError(
                f"policy calls built-ins the wasm engine lacks (OPA's wasm target leaves them to the host): "
                f"{', '.join(missing)}"
            )
        self._by_id.update({number: (name, implemented[name]) for name, number in imported.items()})
        self._entrypoints: dict[str, int] = json.loads(self._dump(self._call("entrypoints")))
        self._data = self._load(bundle.data)
        self._booleans = {value: self._load(value) for value in (True, False)}
        self._base = self._call("opa_heap_ptr_get")  # input goes here, after the data, every evaluation
        # A value below the base (the module's static data, the policy data, the booleans) never changes:
        # opa_eval resets the heap and its free lists to the address we give it, above the base, so nothing
        # is allocated below it during an evaluation (OPA's wasm/src/context.c, malloc.c). Its JSON text is
        # read once. Each wasmtime call from Python costs microseconds, and most host
        # built-in arguments are data (the allowlist prefixes) or constants (sprintf's format).
        self._fixed_text: dict[int, bytes] = {}

    # --- the instance and its memory -------------------------------------------------------------------------
    def _instantiate(self, binary: bytes, data_end: int) -> None:
        engine = _EPOCHS.engine
        self._store = wasmtime.Store(engine)
        self._store.set_epoch_deadline(_EPOCHS.ticks(LOAD_TIMEOUT_S))
        module = wasmtime.Module(engine, binary)
        declared = next(i.type.limits.min for i in module.imports if isinstance(i.type, wasmtime.MemoryType))
        # The data segments and the heap OPA's runtime starts after them must fit (opa build declares too few).
        pages = max(declared, -(-data_end // _PAGE) + 1)
        self._memory = wasmtime.Memory(self._store, wasmtime.MemoryType(wasmtime.Limits(pages, None)))
        linker = wasmtime.Linker(engine)
        linker.define(self._store, "env", "memory", self._memory)
        i32 = wasmtime.ValType.i32()
        for arity in range(5):
            kind = wasmtime.FuncType([i32] * (arity + 2), [i32])
            define_host(linker, "env", f"opa_builtin{arity}", kind, self._builtin)
        define_host(linker, "env", "opa_abort", wasmtime.FuncType([i32], []), self._abort)
        define_host(linker, "env", "opa_println", wasmtime.FuncType([i32], []), lambda _addr: None)
        instance = linker.instantiate(self._store, module)
        exports = instance.exports(self._store)
        self._exports = {name: I32Export(self._store, exports[name], name) for name in _EXPORTS}

    def _call(self, export: str, *args: int) -> int:
        return self._exports[export](*args)

    def _address(self, offset: int) -> int:
        return ctypes.addressof(self._memory.data_ptr(self._store).contents) + offset

    def _dump(self, value: int) -> bytes:
        """A heap value as JSON text (opa_json_dump)."""
        return ctypes.string_at(self._address(self._call("opa_json_dump", value)))

    def _write(self, offset: int, data: bytes) -> None:
        needed = offset + len(data) - self._memory.data_len(self._store)
        if needed > 0:
            self._memory.grow(self._store, -(-needed // _PAGE))
        ctypes.memmove(self._address(offset), data, len(data))

    def _load(self, value: Any) -> int:
        """A JSON value onto the heap (opa_malloc + opa_json_parse)."""
        text = json.dumps(value, separators=(",", ":")).encode()
        offset = self._call("opa_malloc", len(text))
        self._write(offset, text)
        parsed = self._call("opa_json_parse", offset, len(text))
        if not parsed:
            raise PolicyEngineError("wasm engine: the module could not parse a value")
        return parsed

    # --- imports the module calls --------------------------------------------------------------------------
    def _builtin(self, builtin_id: int, _context: int, *args: int) -> int:
        name, function = self._by_id[builtin_id]
        try:
            result = function(*(json.loads(self._text(arg)) for arg in args))
        except BuiltinError:
            raise
        except Exception as exc:  # a bug or an unforeseen operand: still an error, never a value
            raise BuiltinError(f"{name}: {exc}") from exc
        if isinstance(result, bool):  # the shared, never-freed values below the base
            return self._booleans[result]
        return self._load(result)

    def _text(self, value: int) -> bytes:
        """A built-in's argument as JSON text; read from the module once when it lies below the base."""
        if value >= self._base:
            return self._dump(value)
        text = self._fixed_text.get(value)
        if text is None:
            text = self._fixed_text[value] = self._dump(value)
        return text

    def _abort(self, message: int) -> None:
        said = ctypes.string_at(self._address(message)).decode(errors="replace")
        raise BuiltinError(f"policy aborted: {self._authored(said)}")

    # --- decisions -------------------------------------------------------------------------------------------
    def _check_config(self) -> None:
        """Refuse the bundle when package autonomy.config finds errors in its data (fail closed)."""
        errors = self._evaluate({}, CONFIG_ENTRYPOINT, LOAD_TIMEOUT_S)  # once, over all the data
        if not isinstance(errors, list):
            raise PolicyEngineError(f"wasm engine could not check the policy data ({CONFIG_ENTRYPOINT})")
        if errors:
            raise PolicyEngineError("policy data invalid: " + "; ".join(map(str, errors)))

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        return self._evaluate(input_doc, ENTRYPOINT, self._timeout_s)

    def _evaluate(self, input_doc: dict[str, Any], entrypoint: str, seconds: float) -> Any:
        text = input_json(input_doc)
        with self._lock, _EPOCHS.running():
            self._clock.now = None
            try:
                self._store.set_epoch_deadline(_EPOCHS.ticks(seconds))
                self._write(self._base, text)
                heap = self._base + len(text)
                result = self._call(
                    "opa_eval", 0, self._entrypoints[entrypoint], self._data, self._base, len(text), heap, 0
                )
                answer = json.loads(ctypes.string_at(self._address(result)))
            except wasmtime.Trap as exc:
                if exc.trap_code is wasmtime.TrapCode.INTERRUPT:
                    reason = f"took longer than the {seconds:g} s limit and was stopped"
                    raise PolicyEngineError(f"wasm engine: evaluating {entrypoint} {reason}") from exc
                raise PolicyEngineError(f"wasm engine error evaluating {entrypoint}: {_reason(exc)}") from exc
            except (wasmtime.WasmtimeError, BuiltinError, ValueError, KeyError) as exc:
                raise PolicyEngineError(f"wasm engine error evaluating {entrypoint}: {_reason(exc)}") from exc
        if not isinstance(answer, list) or len(answer) > 1:
            raise PolicyEngineError(f"wasm engine: {entrypoint} gave an unexpected result set")
        if not answer or "result" not in answer[0]:
            raise PolicyUndefinedError(f"{entrypoint} is undefined for this input")
        return answer[0]["result"]

    def close(self) -> None:
        """Nothing to release: the store and its memory are freed with the object."""


_EXPORTS = ("opa_eval", "opa_malloc", "opa_json_parse", "opa_json_dump", "opa_heap_ptr_get", "builtins", "entrypoints")


def _reason(exc: BaseException) -> str:
    """The first line of the error, and the built-in's own message when a host built-in trapped."""
    cause = exc.__cause__ or exc.__context__
    text = str(cause if isinstance(cause, BuiltinError) else exc)
    return text.strip().splitlines()[0][:500] if text.strip() else type(exc).__name__
