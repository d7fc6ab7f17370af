"""Calls between Python and an OPA wasm module through wasmtime's C API, i32s only.

wasmtime-py's `Func.__call__` and its host-function trampoline look up the function's type on every call: two
dozen C calls, and ctypes lets go of the GIL around each one. Under load that made one decision hundreds of
thread switches and a third of its time. OPA's ABI passes nothing but i32s, so the types are checked once here
and the values moved directly.
"""

from __future__ import annotations

import ctypes
import inspect
import itertools
import threading
import weakref
from collections.abc import Callable

import wasmtime
from wasmtime import _ffi as wasmtime_c

from autonomy_controller.controller.decision.engines.wasm_module import WasmFormatError

I32 = wasmtime.ValType.i32()
HostFunction = Callable[..., int | None]


class I32Export:
    """An export of the module whose parameters and one result are i32s, called as a Python function."""

    def __init__(self, store: wasmtime.Store, export: object, name: str) -> None:
        kind = export.type(store) if isinstance(export, wasmtime.Func) else None
        if kind is None or kind.results != [I32] or any(p != I32 for p in kind.params):
            raise WasmFormatError(f"export {name} is not a function of i32s giving one i32")
        assert isinstance(export, wasmtime.Func)
        self._store, self._func, self.name, self.arity = store, export, name, len(kind.params)

    def __call__(self, *args: int) -> int:
        """The result; a trap raises wasmtime.Trap (its trap_code says why), and what a host function raised
        while the module ran is raised again here."""
        if len(args) != self.arity:
            raise TypeError(f"{self.name} takes {self.arity} arguments, not {len(args)}")
        params = (wasmtime_c.wasmtime_val_t * self.arity)()
        for slot, value in zip(params, args, strict=True):
            slot.kind = wasmtime_c.WASMTIME_I32.value
            slot.of.i32 = value
        results = (wasmtime_c.wasmtime_val_t * 1)()
        trap = ctypes.POINTER(wasmtime_c.wasm_trap_t)()
        error = wasmtime_c.wasmtime_func_call(
            self._store._context(), ctypes.byref(self._func._func), params, self.arity, results, 1, ctypes.byref(trap)
        )
        raised = _pending_raise()
        if raised is not None:  # the host function's exception says why; the module's trap or error is freed
            if trap:
                wasmtime_c.wasm_trap_delete(trap)
            if error:
                wasmtime_c.wasmtime_error_delete(error)
            raise raised
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        return int(results[0].of.i32)


def define_host(linker: wasmtime.Linker, module: str, name: str, kind: wasmtime.FuncType, host: HostFunction) -> None:
    """Define the import module.name as `host`, which takes the i32s and gives an i32 (or None for no result).
    An exception it raises traps the module's call, and the call that entered the module raises it. A bound
    method is held weakly: the store holds this definition, so a strong hold would keep its engine forever."""
    if any(p != I32 for p in kind.params) or kind.results not in ([], [I32]):
        raise WasmFormatError(f"import {module}.{name} is not a function of i32s")
    key = next(_KEYS)
    _HOSTS[key] = weakref.WeakMethod(host) if inspect.ismethod(host) else (lambda: host)
    module_bytes, name_bytes = module.encode(), name.encode()
    error = wasmtime_c.wasmtime_linker_define_func(
        linker.ptr(),
        ctypes.create_string_buffer(module_bytes),
        len(module_bytes),
        ctypes.create_string_buffer(name_bytes),
        len(name_bytes),
        kind.ptr(),
        _trampoline,
        key,
        _forget,
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


_HOSTS: dict[int, Callable[[], HostFunction | None]] = {}
_KEYS = itertools.count(1)
_RAISED = threading.local()  # a module runs on the thread that called it: what its host function raised


def _pending_raise() -> BaseException | None:
    raised: BaseException | None = getattr(_RAISED, "value", None)
    _RAISED.value = None
    return raised


@wasmtime_c.wasmtime_func_callback_t
def _trampoline(key: int, _caller: object, params: object, nparams: int, results: object, nresults: int) -> int:
    try:
        host = _HOSTS[key]()
        if host is None:
            raise RuntimeError("the engine that defined this host function is gone")
        value = host(*(params[i].of.i32 for i in range(nparams)))  # type: ignore[index]
        if nresults:
            results[0].kind = wasmtime_c.WASMTIME_I32.value  # type: ignore[index]
            results[0].of.i32 = value  # type: ignore[index]
        return 0
    except BaseException as exc:  # raised again by the call that entered the module
        _RAISED.value = exc
        message = b"host function raised"
        trap = wasmtime_c.wasmtime_trap_new(ctypes.create_string_buffer(message), len(message))
        return ctypes.cast(trap, ctypes.c_void_p).value or 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _forget(key: int) -> None:
    _HOSTS.pop(key or 0, None)
