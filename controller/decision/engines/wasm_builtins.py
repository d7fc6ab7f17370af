"""The built-ins OPA's wasm target leaves to the host (the SDK), with OPA's semantics, and the natives we reroute.

Each takes and returns JSON values. Any misuse OPA (with strict built-in errors) reports as an error raises
BuiltinError here, which traps the evaluation: a deny, never an undefined rule. A built-in not in HOST_BUILTINS
is refused when the policy is loaded. Semantics follow OPA 1.22's Go code (v1/topdown/cidr.go, time.go,
sprintf.go); where reproducing Go exactly is not worth it (sprintf of a set or a float with %d), the call
raises instead: a deny, with the reason.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any


class BuiltinError(Exception):
    """A built-in was misused or cannot answer as OPA would: the evaluation fails (a deny)."""


def _string(value: Any, name: str, position: int) -> str:
    if not isinstance(value, str):
        raise BuiltinError(f"{name}: operand {position} must be a string, got {type(value).__name__}")
    return value


def _integer(value: Any, name: str, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise BuiltinError(f"{name}: operand {position} must be an integer")
    return int(value)


# --- net.*: Go's net.ParseIP / net.ParseCIDR / (*IPNet).Contains, byte for byte -------------------------------
_V4_IN_V6 = bytes(10) + b"\xff\xff"


def _parse_addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:  # Go refuses zones here; Python would accept one
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _to4(ip: bytes) -> bytes | None:
    if len(ip) == 4:
        return ip
    return ip[12:] if len(ip) == 16 and ip[:12] == _V4_IN_V6 else None


def _as16(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return _V4_IN_V6 + addr.packed if addr.version == 4 else addr.packed


def _mask_ip(ip: bytes, mask: bytes) -> bytes | None:
    """Go's IP.Mask."""
    if len(mask) == 16 and len(ip) == 4 and mask[:12] == b"\xff" * 12:
        mask = mask[12:]
    if len(mask) == 4 and len(ip) == 16 and ip[:12] == _V4_IN_V6:
        ip = ip[12:]
    if len(ip) != len(mask):
        return None
    return bytes(a & b for a, b in zip(ip, mask, strict=True))


def _parse_cidr(text: Any, name: str, position: int) -> tuple[bytes, bytes]:
    """Go's net.ParseCIDR: the network (IP masked, 4 bytes for IPv4) and its mask."""
    text = _string(text, name, position)
    addr_text, slash, bits_text = text.partition("/")
    addr = _parse_addr(addr_text)
    if not slash or addr is None or not bits_text.isascii() or not bits_text.isdigit():
        raise BuiltinError(f"{name}: invalid CIDR address: {text}")
    bits, width = int(bits_text), addr.max_prefixlen
    if bits > width:
        raise BuiltinError(f"{name}: invalid CIDR address: {text}")
    mask = ((1 << width) - 1 ^ ((1 << (width - bits)) - 1)).to_bytes(width // 8, "big")
    network = _mask_ip(_as16(addr), mask)
    assert network is not None
    return network, mask


def _contains(network: tuple[bytes, bytes], ip: bytes) -> bool:
    """Go's (*IPNet).Contains, with its networkNumberAndMask."""
    net_ip, mask = network
    number = _to4(net_ip)
    if number is None:
        number = net_ip
        if len(number) != 16:
            return False
    if len(mask) == 4 and len(number) != 4:
        return False
    if len(mask) == 16 and len(number) == 4:
        mask = mask[12:]
    short = _to4(ip)
    if short is not None:
        ip = short
    if len(ip) != len(number):
        return False
    return all(n & m == i & m for n, m, i in zip(number, mask, ip, strict=True))


def _last_ip(network: tuple[bytes, bytes]) -> bytes:
    net_ip, mask = network
    host = int.from_bytes(bytes(~b & 0xFF for b in mask), "big")
    return (int.from_bytes(net_ip, "big") | host).to_bytes(len(net_ip), "big")


def _plain_ipv6(network: tuple[bytes, bytes]) -> bool:
    return len(network[0]) == 16 and len(network[1]) == 16 and _to4(network[0]) is None


def _ones(mask: bytes) -> int:
    return bin(int.from_bytes(mask, "big")).count("1")


def cidr_contains(cidr: Any, other: Any) -> bool:
    name = "net.cidr_contains"
    network = _parse_cidr(cidr, name, 1)
    text = _string(other, name, 2)
    addr = _parse_addr(text)
    if addr is not None:
        return _contains(network, _as16(addr))
    try:
        inner = _parse_cidr(text, name, 2)
    except BuiltinError:
        raise BuiltinError(f"{name}: not a valid textual representation of an IP address or CIDR: {text}") from None
    if _plain_ipv6(network) and _plain_ipv6(inner):
        masked = _mask_ip(inner[0], network[1])
        return _ones(network[1]) <= _ones(inner[1]) and masked == network[0]
    return _contains(network, inner[0]) and _contains(network, _last_ip(inner))


def cidr_intersects(a: Any, b: Any) -> bool:
    first, second = _parse_cidr(a, "net.cidr_intersects", 1), _parse_cidr(b, "net.cidr_intersects", 2)
    return _contains(first, second[0]) or _contains(second, first[0])


# --- time.*: UTC and named zones; the clock read once per evaluation ---------------------------------------------
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def parse_rfc3339_ns(value: Any) -> int:
    text = _string(value, "time.parse_rfc3339_ns", 1)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise BuiltinError(f"time.parse_rfc3339_ns: cannot parse {text!r} as RFC 3339")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    try:
        datetime(year, month, day, hour, minute, second)  # Go refuses Feb 30 and hour 24 alike
    except ValueError as exc:
        raise BuiltinError(f"time.parse_rfc3339_ns: {text!r}: {exc}") from None
    offset = 0 if zone == "Z" else (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * (1 if zone[0] == "+" else -1)
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))


def _utc(value: Any, name: str) -> datetime:
    """OPA's tzTime for ns or [ns] / [ns, "UTC" | ""]; another zone is refused (not reproduced exactly here)."""
    if isinstance(value, list):
        if not value or (len(value) > 1 and value[1] not in ("", "UTC")):
            raise BuiltinError(f"{name}: only UTC is supported by the wasm engine's host built-ins")
        value = value[0]
    ns = _integer(value, name, 1)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def date(value: Any) -> list[int]:
    moment = _utc(value, "time.date")
    return [moment.year, moment.month, moment.day]


def clock_of(value: Any) -> list[int]:
    moment = _utc(value, "time.clock")
    return [moment.hour, moment.minute, moment.second]


def weekday(value: Any) -> str:
    return _WEEKDAYS[_utc(value, "time.weekday").weekday()]


def add_date(value: Any, years: Any, months: Any, days: Any) -> int:
    """Go's Time.AddDate: months overflow into years, then days past a month's end roll forward (Jan 31 + 1 month)."""
    name = "time.add_date"
    ns = _integer(value[0] if isinstance(value, list) and value else value, name, 1)
    _utc(value, name)  # the same operand checks as the other time built-ins
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime(1970, 1, 1) + timedelta(seconds=seconds)
    month_index = moment.year * 12 + moment.month - 1 + _integer(years, name, 2) * 12 + _integer(months, name, 3)
    year, month = divmod(month_index, 12)
    start = datetime(year, month + 1, 1, moment.hour, moment.minute, moment.second)
    shifted = start + timedelta(days=moment.day - 1 + _integer(days, name, 4))
    return calendar.timegm(shifted.timetuple()) * 1_000_000_000 + rest


# --- strings and the rest ------------------------------------------------------------------------------------------
def _strings(value: Any, name: str, position: int) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [_string(item, name, position) for item in items]


def any_prefix_match(search: Any, base: Any) -> bool:
    name = "strings.any_prefix_match"
    prefixes = _strings(base, name, 2)
    return any(text.startswith(prefix) for text in _strings(search, name, 1) for prefix in prefixes)


def md5(value: Any) -> str:
    return hashlib.md5(_string(value, "crypto.md5", 1).encode(), usedforsecurity=False).hexdigest()


_VERB = re.compile(r"%(.?)", re.DOTALL)  # a lone trailing % has no verb: refused below


def _format_scalar(verb: str, value: Any) -> str:
    if verb in "sv" and isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        if verb == "v":
            return "null" if value is None else str(value).lower()
    elif isinstance(value, int) and verb in "dv":
        return str(value)
    elif isinstance(value, float) and verb == "v" and value == value:
        return repr(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    raise BuiltinError(f"sprintf: %{verb} of {type(value).__name__} is not supported by the wasm engine")


def sprintf(fmt: Any, args: Any) -> str:
    """Go's fmt for %s, %v and %d of strings, numbers, booleans and null; anything else is refused."""
    text = _string(fmt, "sprintf", 1)
    if not isinstance(args, list):
        raise BuiltinError("sprintf: operand 2 must be an array")
    remaining = iter(args)
    used = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        verb = match.group(1)
        if verb == "%":
            return "%"
        if not verb or verb not in "svd":
            raise BuiltinError(f"sprintf: verb %{verb} is not supported by the wasm engine")
        try:
            value = next(remaining)
        except StopIteration:
            raise BuiltinError("sprintf: fewer arguments than verbs") from None
        used += 1
        return _format_scalar(verb, value)

    result = _VERB.sub(replace, text)
    if used != len(args):
        raise BuiltinError("sprintf: arguments and verbs do not match")
    return result


class Clock:
    """time.now_ns: read once per evaluation, as OPA does per query."""

    def __init__(self) -> None:
        self.now: int | None = None

    def now_ns(self) -> int:
        if self.now is None:
            self.now = time.time_ns()
        return self.now


def host_builtins(clock: Clock) -> dict[str, Callable[..., Any]]:
    """What this engine implements, by OPA name. Anything else the module imports is refused at load."""
    return {
        "sprintf": sprintf,
        "crypto.md5": md5,
        "strings.any_prefix_match": any_prefix_match,
        "net.cidr_contains": cidr_contains,
        "net.cidr_intersects": cidr_intersects,
        "time.now_ns": clock.now_ns,
        "time.parse_rfc3339_ns": parse_rfc3339_ns,
        "time.date": date,
        "time.clock": clock_of,
        "time.weekday": weekday,
        "time.add_date": add_date,
        "trace": trace,
    }


def trace(note: Any) -> bool:
    """OPA's trace: a note for an explanation (opa eval --explain), always true; nobody reads notes here."""
    if not isinstance(note, str):
        raise BuiltinError(f"trace: operand 1 must be string but got {type(note).__name__}")
    return True


# Natives of OPA's C library rerouted to the host (see wasm_module.py): C function -> (OPA name, arity).
REROUTED_NATIVES = {
    "opa_cidr_contains": ("net.cidr_contains", 2),
    "opa_cidr_intersects": ("net.cidr_intersects", 2),
}


# OPA's C natives: the built-ins OPA's wasm target implements in its C library (OPA 1.22,
# internal/compiler/wasm/wasm.go builtinsFunctions), C function -> OPA name. Each answers NULL, *undefined*,
# where OPA with strict built-in errors errors (a type error, a division by zero, an invalid regex or base64...),
# which would let a deny rule silently not fire. So the engine makes each one fail instead of answering NULL
# (wasm_module.fail_on_null): an error, a deny, naming the built-in; except NOT_PATCHED, and max/min of an
# empty collection (NULL_IS_UNDEFINED_FOR).
C_NATIVES: dict[str, str] = {
    "builtin_graph_reachable": "graph.reachable",
    "builtin_json_filter": "json.filter",
    "builtin_json_remove": "json.remove",
    "builtin_member": "internal.member_2",
    "builtin_member3": "internal.member_3",
    "builtin_object_filter": "object.filter",
    "builtin_object_get": "object.get",
    "builtin_object_keys": "object.keys",
    "builtin_object_remove": "object.remove",
    "builtin_object_union": "object.union",
    "builtin_object_union_n": "object.union_n",
    "opa_agg_all": "all",
    "opa_agg_any": "any",
    "opa_agg_count": "count",
    "opa_agg_max": "max",
    "opa_agg_min": "min",
    "opa_agg_product": "product",
    "opa_agg_sort": "sort",
    "opa_agg_sum": "sum",
    "opa_arith_abs": "abs",
    "opa_arith_ceil": "ceil",
    "opa_arith_divide": "div",
    "opa_arith_floor": "floor",
    "opa_arith_minus": "minus",
    "opa_arith_multiply": "mul",
    "opa_arith_plus": "plus",
    "opa_arith_rem": "rem",
    "opa_arith_round": "round",
    "opa_array_concat": "array.concat",
    "opa_array_flatten": "array.flatten",
    "opa_array_reverse": "array.reverse",
    "opa_array_slice": "array.slice",
    "opa_base64_decode": "base64.decode",
    "opa_base64_encode": "base64.encode",
    "opa_base64_is_valid": "base64.is_valid",
    "opa_base64_url_decode": "base64url.decode",
    "opa_base64_url_encode": "base64url.encode",
    "opa_bits_and": "bits.and",
    "opa_bits_negate": "bits.negate",
    "opa_bits_or": "bits.or",
    "opa_bits_shiftleft": "bits.lsh",
    "opa_bits_shiftright": "bits.rsh",
    "opa_bits_xor": "bits.xor",
    "opa_cidr_contains": "net.cidr_contains",
    "opa_cidr_intersects": "net.cidr_intersects",
    "opa_cmp_eq": "equal",
    "opa_cmp_gt": "gt",
    "opa_cmp_gte": "gte",
    "opa_cmp_lt": "lt",
    "opa_cmp_lte": "lte",
    "opa_cmp_neq": "neq",
    "opa_glob_match": "glob.match",
    "opa_json_is_valid": "json.is_valid",
    "opa_json_marshal": "json.marshal",
    "opa_json_unmarshal": "json.unmarshal",
    "opa_numbers_range": "numbers.range",
    "opa_regex_find_all_string_submatch": "regex.find_all_string_submatch_n",
    "opa_regex_is_valid": "regex.is_valid",
    "opa_regex_match": "regex.match",
    "opa_set_diff": "set_diff",
    "opa_set_intersection": "and",
    "opa_set_union": "or",
    "opa_sets_intersection": "intersection",
    "opa_sets_union": "union",
    "opa_strings_concat": "concat",
    "opa_strings_contains": "contains",
    "opa_strings_endswith": "endswith",
    "opa_strings_format_int": "format_int",
    "opa_strings_indexof": "indexof",
    "opa_strings_lower": "lower",
    "opa_strings_replace": "replace",
    "opa_strings_replace_n": "strings.replace_n",
    "opa_strings_reverse": "strings.reverse",
    "opa_strings_split": "split",
    "opa_strings_startswith": "startswith",
    "opa_strings_substring": "substring",
    "opa_strings_trim": "trim",
    "opa_strings_trim_left": "trim_left",
    "opa_strings_trim_prefix": "trim_prefix",
    "opa_strings_trim_right": "trim_right",
    "opa_strings_trim_space": "trim_space",
    "opa_strings_trim_suffix": "trim_suffix",
    "opa_strings_upper": "upper",
    "opa_template_string": "internal.template_string",
    "opa_to_number": "to_number",
    "opa_types_is_array": "is_array",
    "opa_types_is_boolean": "is_boolean",
    "opa_types_is_null": "is_null",
    "opa_types_is_number": "is_number",
    "opa_types_is_object": "is_object",
    "opa_types_is_set": "is_set",
    "opa_types_is_string": "is_string",
    "opa_types_name": "type_name",
    "opa_value_transitive_closure": "walk",
}

# Not patched: the rerouted ones, whose host implementation raises on error itself.
NOT_PATCHED = frozenset(REROUTED_NATIVES)
# Where NULL is OPA's answer too, for arguments of these types (OPA value types, value.h: array 5, set 7): max and
# min of an empty collection are undefined, not an error; of anything else, an error.
NULL_IS_UNDEFINED_FOR: dict[str, tuple[int, ...]] = {"opa_agg_max": (5, 7), "opa_agg_min": (5, 7)}


def failed_native(name: str) -> Callable[..., Any]:
    """The host side of a C native that answered NULL: raise, naming it."""

    def fail(*_args: Any) -> Any:
        raise BuiltinError(f"{name}: invalid operand (OPA errors here; its C version answered undefined)")

    return fail
