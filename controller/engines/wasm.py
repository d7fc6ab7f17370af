"""OPA's own compiler, in-process: the policy built to WebAssembly with `opa build -t wasm`, run by wasmtime.

Why: the same Rego as OPA (net.*, time.*, count, min/max, every, comprehensions) with no server, and without
regopy's cost model. Needs the opa binary to compile (once per bundle, ~0.2 s), not to decide.

Fail closed, as the other engines: the module's host built-ins (those OPA's wasm target leaves to the SDK) are
checked at load, and one this engine lacks refuses the bundle (UnsupportedBuiltinError, naming it); a host
built-in that fails raises, which traps the evaluation (an error, a deny). OPA's C natives return *undefined*
on error and some differ from OPA (net.cidr_contains on IPv4-mapped IPv6): those are rerouted to the host
(wasm_module.py, wasm_builtins.REROUTED_NATIVES). ABI: OPA's wasm ABI 1.2+ (opa_eval, the one-call path).
"""

from __future__ import annotations

import ctypes
import io
import json
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import wasmtime

from autonomy_controller.controller.engines.base import PolicyEngineError, PolicyUndefinedError, UnsupportedBuiltinError
from autonomy_controller.controller.engines.wasm_builtins import REROUTED_NATIVES, BuiltinError, Clock, host_builtins
from autonomy_controller.controller.engines.wasm_module import WasmFormatError, WasmModule
from autonomy_controller.controller.policy_bundle import CONFIG_ENTRYPOINT, ENTRYPOINT, PolicyBundle

_REROUTED_ID_BASE = 1_000_000  # far above the ids OPA numbers the module's own imports with (0, 1, ...)
_PAGE = 65536


def compile_wasm(opa_bin: Path, bundle: PolicyBundle) -> bytes:
    """The policy.wasm that `opa build -t wasm` makes of the bundle, with both entry points."""
    if not opa_bin.exists():
        raise PolicyEngineError(f"wasm engine: opa binary not found at {opa_bin} (it compiles the policy)")
    with tempfile.TemporaryDirectory(prefix="autonomy-wasm-") as tmp:
        source, out = Path(tmp) / "bundle", Path(tmp) / "wasm.tar.gz"
        bundle.write_to(source)
        command = [str(opa_bin), "build", "-t", "wasm", "-e", ENTRYPOINT, "-e", CONFIG_ENTRYPOINT]
        done = subprocess.run([*command, "-o", str(out), str(source)], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise PolicyEngineError(f"wasm engine: opa build failed: {done.stderr.strip()[:800]}")
        with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("/") == "policy.wasm"), None)
            extracted = archive.extractfile(member) if member else None
            if extracted is None:
                raise PolicyEngineError("wasm engine: opa build wrote no policy.wasm")
            return extracted.read()


class WasmEngine:
    name = "wasm"

    def __init__(self, bundle: PolicyBundle, opa_bin: Path) -> None:
        self._clock = Clock()
        implemented = host_builtins(self._clock)
        try:
            module = WasmModule.parse(compile_wasm(opa_bin, bundle))
            self._by_id: dict[int, tuple[str, Any]] = {}
            for number, (native, (builtin, arity)) in enumerate(sorted(REROUTED_NATIVES.items())):
                if native in module.function_names:
                    module.reroute(native, f"env.opa_builtin{arity}", _REROUTED_ID_BASE + number, arity)
                    self._by_id[_REROUTED_ID_BASE + number] = (builtin, implemented[builtin])
            binary = module.to_bytes()
        except (WasmFormatError, KeyError) as exc:
            raise PolicyEngineError(f"wasm engine: unexpected module layout: {exc}") from exc
        self._lock = threading.Lock()  # one instance, one heap: one evaluation at a time
        try:
            self._instantiate(binary, module.data_end())
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
            self._base = self._call("opa_heap_ptr_get")  # input goes here, after the data, every evaluation
        except wasmtime.WasmtimeError as exc:
            raise PolicyEngineError(f"wasm engine could not load the policy: {exc}") from exc
        self._check_config()

    # --- the instance and its memory -------------------------------------------------------------------------
    def _instantiate(self, binary: bytes, data_end: int) -> None:
        engine = wasmtime.Engine()
        self._store = wasmtime.Store(engine)
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
            linker.define_func("env", f"opa_builtin{arity}", kind, self._builtin)
        linker.define_func("env", "opa_abort", wasmtime.FuncType([i32], []), self._abort)
        linker.define_func("env", "opa_println", wasmtime.FuncType([i32], []), lambda _addr: None)
        instance = linker.instantiate(self._store, module)
        self._exports = {name: instance.exports(self._store)[name] for name in _EXPORTS}

    def _call(self, export: str, *args: int) -> int:
        result: int = self._exports[export](self._store, *args)  # type: ignore[operator]
        return result

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
            result = function(*(json.loads(self._dump(arg)) for arg in args))
        except BuiltinError:
            raise
        except Exception as exc:  # a bug or an unforeseen operand: still an error, never a value
            raise BuiltinError(f"{name}: {exc}") from exc
        return self._load(result)

    def _abort(self, message: int) -> None:
        raise BuiltinError(f"policy aborted: {ctypes.string_at(self._address(message)).decode(errors='replace')}")

    # --- decisions -------------------------------------------------------------------------------------------
    def _check_config(self) -> None:
        """Refuse the bundle when package autonomy.config finds errors in its data (fail closed)."""
        errors = self._evaluate({}, CONFIG_ENTRYPOINT)
        if not isinstance(errors, list):
            raise PolicyEngineError(f"wasm engine could not check the policy data ({CONFIG_ENTRYPOINT})")
        if errors:
            raise PolicyEngineError("policy data invalid: " + "; ".join(map(str, errors)))

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        return self._evaluate(input_doc, ENTRYPOINT)

    def _evaluate(self, input_doc: dict[str, Any], entrypoint: str) -> Any:
        text = json.dumps(input_doc, separators=(",", ":")).encode()
        with self._lock:
            self._clock.now = None
            try:
                self._write(self._base, text)
                heap = self._base + len(text)
                result = self._call(
                    "opa_eval", 0, self._entrypoints[entrypoint], self._data, self._base, len(text), heap, 0
                )
                answer = json.loads(ctypes.string_at(self._address(result)))
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
