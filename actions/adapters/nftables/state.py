"""Reading a table back: one listed table, indexed (TableState), and its interval sets' elements (SetElement).

What `ensure` compares against and what execute/verify decide on. Elements are address ranges, so a block can
be matched against a request that names an address, a network inside it, or one overlapping it. Nothing here
runs nft: the listing arrives as nft's JSON (nft.Nft.list_table).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def show(network: IPNetwork) -> str:
    """An address as params spell it (no /32 or /128), a network in CIDR."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


@dataclass(frozen=True)
class SetElement:
    """One element of an interval set as nft lists it: `val` is kept verbatim so deleting it names it exactly."""

    val: Any
    first: int
    last: int
    version: int
    comment: str | None = None
    timeout: int | None = None
    expires: int | None = None

    @property
    def label(self) -> str:
        """CIDR for a single prefix (what params use), `a-b` for a range somebody added by hand."""
        low, high = _address(self.first, self.version), _address(self.last, self.version)
        size = self.last - self.first + 1
        if size & (size - 1) or self.first % size:  # not a power of two, or not aligned: no single prefix
            return f"{low}-{high}"
        if size == 1:
            return str(low)
        return f"{low}/{(32 if self.version == 4 else 128) - size.bit_length() + 1}"

    def covers(self, network: IPNetwork) -> bool:
        return self.version == network.version and self.first <= int(network[0]) and int(network[-1]) <= self.last

    def intersects(self, network: IPNetwork) -> bool:
        return self.version == network.version and not (self.last < int(network[0]) or int(network[-1]) < self.first)

    def exactly(self, network: IPNetwork) -> bool:
        return self.covers(network) and self.first == int(network[0]) and self.last == int(network[-1])

    def describe(self) -> str:
        """For outcome details: which element, whose comment, and when nft will drop it by itself."""
        owner = f"comment {self.comment!r}" if self.comment else "no comment (added outside the controller)"
        expiry = f"expires in {self.expires} s" if self.expires is not None else "no expiry"
        return f"{self.label} ({owner}, {expiry})"

    def evidence(self) -> dict[str, Any]:
        return {"element": self.label, "comment": self.comment, "timeout": self.timeout, "expires": self.expires}


def _address(value: int, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address from its integer; explicit about the version (ip_address(1) would be 0.0.0.1, not ::1)."""
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _bounds(val: Any) -> tuple[int, int, int] | None:
    """(first, last, version) of an element value: an address string, a {"prefix"} or a {"range"}."""
    try:
        if isinstance(val, str):
            address = ipaddress.ip_address(val)
            return int(address), int(address), address.version
        if isinstance(val, dict) and "prefix" in val:
            network = ipaddress.ip_network(f"{val['prefix']['addr']}/{val['prefix']['len']}", strict=False)
            return int(network[0]), int(network[-1]), network.version
        if isinstance(val, dict) and "range" in val:
            low, high = (ipaddress.ip_address(v) for v in val["range"])
            return int(low), int(high), low.version
    except (ValueError, KeyError, TypeError):
        return None
    return None


def parse_elements(set_object: dict[str, Any]) -> list[SetElement]:
    """The elements of a listed set; values that are not addresses (never written by us) are skipped."""
    elements = []
    for item in set_object.get("elem", []) or []:
        body = item.get("elem", {"val": item}) if isinstance(item, dict) else {"val": item}
        bounds = _bounds(body.get("val"))
        if bounds is None:
            continue
        elements.append(
            SetElement(
                val=body["val"],
                first=bounds[0],
                last=bounds[1],
                version=bounds[2],
                comment=body.get("comment"),
                timeout=body.get("timeout"),
                expires=body.get("expires"),
            )
        )
    return elements


@dataclass
class TableState:
    """One listed table, indexed: what `ensure` compares against and what execute/verify read."""

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    handle: int | None = None
    """The kernel's handle of the table itself: a table deleted and created again gets a new one, so deleting
    by handle removes exactly the table that was read (isolation.py's release)."""

    @classmethod
    def parse(cls, items: list[dict[str, Any]]) -> TableState:
        state = cls()
        for item in items:
            if "table" in item and isinstance(item["table"].get("handle"), int):
                state.handle = item["table"]["handle"]
            elif "set" in item:
                state.sets[item["set"]["name"]] = item["set"]
            elif "chain" in item:
                state.chains[item["chain"]["name"]] = item["chain"]
                state.rules.setdefault(item["chain"]["name"], [])
            elif "rule" in item:
                state.rules.setdefault(item["rule"]["chain"], []).append(item["rule"])
        return state

    def elements(self, set_name: str) -> list[SetElement]:
        return parse_elements(self.sets[set_name]) if set_name in self.sets else []

    def rule_comments(self, chain: str) -> list[str | None]:
        return [rule.get("comment") for rule in self.rules.get(chain, [])]

    def counter(self, chain: str, comment: str) -> int | None:
        """Packets counted by our rule with this comment: evidence that the drop actually bit."""
        for rule in self.rules.get(chain, []):
            if rule.get("comment") == comment:
                for expr in rule.get("expr", []):
                    if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                        return int(expr["counter"].get("packets", 0))
        return None
