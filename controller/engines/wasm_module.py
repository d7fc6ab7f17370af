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
_CUSTOM, _IMPORT, _CODE, _DATA = 0, 2, 10, 11
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
        index = self.function_names[function]
        target = self.imported_funcs[import_name]
        body = bytearray(b"\x00")  # no local declarations
        body += b"\x41" + _sleb(builtin_id) + b"\x41\x00"  # i32.const id; i32.const 0 (the unused context)
        for param in range(arity):
            body += b"\x20" + _uleb(param)  # local.get
        body += b"\x10" + _uleb(target) + b"\x0b"  # call; end
        position = index - len(self.imported_funcs)
        for number, (section_id, content) in enumerate(self.sections):
            if section_id == _CODE:
                bodies = _code_bodies(content)
                if not 0 <= position < len(bodies):
                    raise WasmFormatError(f"{function}: no code body {position}")
                bodies[position] = bytes(body)
                encoded = _uleb(len(bodies)) + b"".join(_uleb(len(b)) + b for b in bodies)
                self.sections[number] = (_CODE, encoded)
                return
        raise WasmFormatError("no code section")

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


def _code_bodies(content: bytes) -> list[bytes]:
    count, pos = _leb(content, 0)
    bodies = []
    for _ in range(count):
        size, pos = _leb(content, pos)
        bodies.append(content[pos : pos + size])
        pos += size
    return bodies
