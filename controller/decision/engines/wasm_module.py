"""Reading and patching an OPA-compiled WebAssembly module: which native functions it holds, and rerouting some.

OPA's wasm target implements some built-ins natively in C (`net.cidr_contains` among them) and returns NULL,
that is *undefined*, when one fails: a deny rule calling it with a malformed CIDR silently does not fire. The
C version also differs from OPA's Go one (`net.cidr_contains("100.64.0.0/10", "::ffff:100.64.12.7")` is false
in C, true in OPA). So the engine reroutes such natives to the host: the native function's body is replaced by
a call of the module's own `opa_builtin<N>` import with an id the host picked, and the host runs OPA's
semantics and raises on error. Only the code section changes; no function index moves.

Just enough of the wasm binary format for that (sections, imports, the name section, code bodies).
"""

from __future__ import annotations

from dataclasses import dataclass

_MAGIC = b"\x00asm\x01\x00\x00\x00"
_CUSTOM, _TYPE, _IMPORT, _FUNCTION, _CODE, _DATA = 0, 1, 2, 3, 10, 11
_I32 = 0x7F
VALUE_TYPE = "opa_value_type"  # OPA's C runtime: a value's type (OPA_ARRAY 5, OPA_SET 7... in value.h)
_FUNC_NAMES = 1  # subsection of the "name" custom section


class WasmFormatError(ValueError):
    """The module is not what OPA's compiler emits (so nothing about it is assumed)."""


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at `pos`: (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WasmFormatError("truncated LEB128")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _sleb_read(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (result - (1 << shift) if byte & 0x40 else result), pos


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def _name(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = _leb(data, pos)
    return data[pos : pos + length].decode("utf-8"), pos + length


def _limits(data: bytes, pos: int) -> int:
    flags, pos = _leb(data, pos)
    _, pos = _leb(data, pos)
    if flags & 1:
        _, pos = _leb(data, pos)
    return pos


@dataclass
class WasmModule:
    sections: list[tuple[int, bytes]]
    imported_funcs: dict[str, int]  # "module.field" -> function index
    function_names: dict[str, int]  # from the name section

    @classmethod
    def parse(cls, binary: bytes) -> WasmModule:
        if not binary.startswith(_MAGIC):
            raise WasmFormatError("not a wasm module (version 1)")
        sections: list[tuple[int, bytes]] = []
        pos = len(_MAGIC)
        while pos < len(binary):
            section_id = binary[pos]
            size, pos = _leb(binary, pos + 1)
            if pos + size > len(binary):
                raise WasmFormatError(f"section {section_id} runs past the end of the module (truncated?)")
            sections.append((section_id, binary[pos : pos + size]))
            pos += size
        imported: dict[str, int] = {}
        names: dict[str, int] = {}
        for section_id, body in sections:
            if section_id == _IMPORT:
                imported = _imported_funcs(body)
            elif section_id == _CUSTOM:
                title, start = _name(body, 0)
                if title == "name":
                    names = _function_names(body, start)
        return cls(sections, imported, names)

    def reroute(self, function: str, import_name: str, builtin_id: int, arity: int) -> None:
        """Make `function` (arity i32 params -> i32) call import `import_name`(builtin_id, 0, params...)."""
        body = bytearray(b"\x00")  # no local declarations
        body += b"\x41" + _sleb(builtin_id) + b"\x41\x00"  # i32.const id; i32.const 0 (the unused context)
        for param in range(arity):
            body += b"\x20" + _uleb(param)  # local.get
        body += b"\x10" + _uleb(self.imported_funcs[import_name]) + b"\x0b"  # call; end
        self._set_body(self.function_names[function], bytes(body))

    def fail_on_null(self, function: str, import_name: str, builtin_id: int, null_ok_for: tuple[int, ...] = ()) -> None:
        """Make `function` (i32 params -> i32) fail instead of answering NULL (*undefined*): its body moves to a
        new function, and it becomes a wrapper that calls that one and, on NULL, calls import
        `import_name`(builtin_id, 0) (the host raises, naming the function) and traps. `import_name` must be
        the zero-argument `env.opa_builtin0`. With `null_ok_for` (OPA value types, value.h), NULL stands when
        the first argument is of one of those types (max of an empty array: undefined in OPA too). Existing
        indexes keep their meaning; callers are unchanged."""
        index = self.function_names[function]
        params, results = self._signature(index)
        if results != [_I32] or any(param != _I32 for param in params):
            raise WasmFormatError(f"{function}: not an (i32...) -> i32 function")
        moved = self._append_function(self._type_index(index), self._bodies()[self._defined(index)])
        result, kind = len(params), len(params) + 1  # the wrapper's two locals, after the params
        fail = b"\x41" + _sleb(builtin_id) + b"\x41\x00\x10" + _uleb(self.imported_funcs[import_name])
        fail += b"\x1a\x00"  # drop; unreachable
        if null_ok_for:  # fail only when the first argument's type is none of them
            checks = b"\x20\x00\x10" + _uleb(self.function_names[VALUE_TYPE]) + b"\x21" + _uleb(kind)
            for number, value_type in enumerate(null_ok_for):
                checks += b"\x20" + _uleb(kind) + b"\x41" + _sleb(value_type) + b"\x47"  # local.get; const; ne
                checks += b"\x71" if number else b""  # i32.and: of none of the types
            fail = checks + b"\x04\x40" + fail + b"\x0b"  # if ... end
        body = bytearray(b"\x01\x02" + bytes([_I32]))  # one group of two i32 locals
        for param in range(len(params)):
            body += b"\x20" + _uleb(param)  # local.get
        body += b"\x10" + _uleb(moved) + b"\x22" + _uleb(result)  # call the moved body; local.tee
        body += b"\x45\x04\x40" + fail + b"\x0b"  # i32.eqz; if (no result) ... end
        body += b"\x20" + _uleb(result) + b"\x0b"  # local.get; end
        self._set_body(index, bytes(body))

    # --- sections ---------------------------------------------------------------------------------------------
    def _section(self, section_id: int) -> tuple[int, bytes]:
        for number, (sid, content) in enumerate(self.sections):
            if sid == section_id:
                return number, content
        raise WasmFormatError(f"no section {section_id}")

    def _defined(self, index: int) -> int:
        """A function index as a position among the module's own functions (after the imported ones)."""
        position = index - len(self.imported_funcs)
        if position < 0:
            raise WasmFormatError(f"function {index} is imported")
        return position

    def _bodies(self) -> list[bytes]:
        return _vector(self._section(_CODE)[1])

    def _set_bodies(self, bodies: list[bytes]) -> None:
        number, _ = self._section(_CODE)
        self.sections[number] = (_CODE, _uleb(len(bodies)) + b"".join(_uleb(len(b)) + b for b in bodies))

    def _set_body(self, index: int, body: bytes) -> None:
        bodies = self._bodies()
        position = self._defined(index)
        if position >= len(bodies):
            raise WasmFormatError(f"no code body for function {index}")
        bodies[position] = body
        self._set_bodies(bodies)

    def _type_indexes(self) -> list[int]:
        content = self._section(_FUNCTION)[1]
        count, pos = _leb(content, 0)
        indexes = []
        for _ in range(count):
            value, pos = _leb(content, pos)
            indexes.append(value)
        return indexes

    def _type_index(self, index: int) -> int:
        return self._type_indexes()[self._defined(index)]

    def _signature(self, index: int) -> tuple[list[int], list[int]]:
        content = self._section(_TYPE)[1]
        count, pos = _leb(content, 0)
        wanted = self._type_index(index)
        for number in range(count):
            if content[pos] != 0x60:
                raise WasmFormatError("type is not a function type")
            params_count, pos = _leb(content, pos + 1)
            params = list(content[pos : pos + params_count])
            results_count, pos = _leb(content, pos + params_count)
            results = list(content[pos : pos + results_count])
            pos += results_count
            if number == wanted:
                return params, results
        raise WasmFormatError(f"no type {wanted}")

    def _append_function(self, type_index: int, body: bytes) -> int:
        """Add a function (to the function and code sections); returns its index."""
        types = [*self._type_indexes(), type_index]
        number, _ = self._section(_FUNCTION)
        self.sections[number] = (_FUNCTION, _uleb(len(types)) + b"".join(_uleb(t) for t in types))
        self._set_bodies([*self._bodies(), body])
        return len(self.imported_funcs) + len(types) - 1

    def data_end(self) -> int:
        """The first byte past the active data segments: OPA's declared memory minimum can be smaller."""
        end = 0
        for section_id, content in self.sections:
            if section_id != _DATA:
                continue
            count, pos = _leb(content, 0)
            for _ in range(count):
                flags, pos = _leb(content, pos)
                if flags == 2:
                    _, pos = _leb(content, pos)  # memory index
                offset = 0
                if flags in (0, 2):
                    if content[pos] != 0x41:
                        raise WasmFormatError("data segment offset is not an i32.const")
                    offset, pos = _sleb_read(content, pos + 1)
                    pos += 1  # end
                size, pos = _leb(content, pos)
                end = max(end, offset + size)
                pos += size
        return end

    def to_bytes(self) -> bytes:
        return _MAGIC + b"".join(bytes([sid]) + _uleb(len(body)) + body for sid, body in self.sections)


def _imported_funcs(body: bytes) -> dict[str, int]:
    count, pos = _leb(body, 0)
    funcs: dict[str, int] = {}
    for _ in range(count):
        module, pos = _name(body, pos)
        field, pos = _name(body, pos)
        kind = body[pos]
        pos += 1
        if kind == 0:  # function: type index
            funcs[f"{module}.{field}"] = len(funcs)
            _, pos = _leb(body, pos)
        elif kind == 1:  # table: reftype, limits
            pos = _limits(body, pos + 1)
        elif kind == 2:  # memory: limits
            pos = _limits(body, pos)
        elif kind == 3:  # global: valtype, mutability
            pos += 2
        else:
            raise WasmFormatError(f"unknown import kind {kind}")
    return funcs


def _function_names(body: bytes, pos: int) -> dict[str, int]:
    while pos < len(body):
        sub_id = body[pos]
        size, pos = _leb(body, pos + 1)
        if sub_id == _FUNC_NAMES:
            count, inner = _leb(body, pos)
            names: dict[str, int] = {}
            for _ in range(count):
                index, inner = _leb(body, inner)
                name, inner = _name(body, inner)
                names[name] = index
            return names
        pos += size
    return {}


def _vector(content: bytes) -> list[bytes]:
    """A vector of size-prefixed entries (the code section's bodies)."""
    count, pos = _leb(content, 0)
    bodies = []
    for _ in range(count):
        size, pos = _leb(content, pos)
        bodies.append(content[pos : pos + size])
        pos += size
    return bodies
