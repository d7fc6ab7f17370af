"""The asset inventory as the guard reads it: one place where host names and addresses become inventory assets.

Every spelling of a host (`DC-01`, `dc-01.`, `dc-01.corp.example`, its address) and every spelling of an address
(`10.10.0.10`, `::ffff:10.10.0.10`, and the other IPv6 forms that carry it: NAT64 `64:ff9b::a0a:a`, 6to4,
Teredo, IPv4-compatible) must find the same asset, or a crown-jewel rule or a level scope can be stepped around
by writing the name differently. So names and addresses are canonicalised here and nowhere else; the guardrails
decode the same embeddings (controller/addresses.py) for targets.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from autonomy_controller.controller.addresses import address_facts, embedded_ipv4, prefix_bits

CRITICALITIES = ("low", "medium", "high")
_OWNERS_CACHED = 65_536
"""Addresses whose owners an index remembers (alerts repeat the same few addresses; attackers may send many)."""
# Tags are compared exactly by policies ("domain-controller" in asset.tags): one spelling, lower case, so a tag
# written `Domain-Controller` is refused at load rather than silently matching no rule.
TAG = re.compile(r"[a-z0-9](?:[a-z0-9._/-]{0,61}[a-z0-9])?")


class AssetError(ValueError):
    """An asset's attributes are malformed: the message names the key."""


def checked_asset(asset: Any) -> dict[str, Any]:
    """The asset with its policy-facing attributes validated and `tags` always a sorted list (empty when none),
    so a rule can write `"x" in asset.tags` for any asset. Other keys pass through unchanged."""
    if not isinstance(asset, dict):
        raise AssetError("must be a mapping of attributes")
    criticality = asset.get("criticality")
    if criticality is not None and criticality not in CRITICALITIES:
        raise AssetError(f"criticality: {criticality!r} is not one of {', '.join(CRITICALITIES)}")
    owner = asset.get("owner")
    if owner is not None and not (isinstance(owner, str) and owner.strip()):
        raise AssetError(f"owner: {owner!r} is not a name")
    if "crown_jewel" in asset and type(asset["crown_jewel"]) is not bool:
        raise AssetError(f"crown_jewel: {asset['crown_jewel']!r} is not true or false")
    tags = asset.get("tags") or []
    if not isinstance(tags, list):
        raise AssetError("tags: must be a list of tags")
    for tag in tags:
        if not (isinstance(tag, str) and TAG.fullmatch(tag)):
            raise AssetError(f"tags: {tag!r} is not a tag (lower-case letters, digits, '.', '_', '/', '-')")
    if len(set(tags)) != len(tags):
        raise AssetError("tags: a tag is listed twice")
    return {**asset, "tags": sorted(tags)}


def canonical_host_text(value: str) -> str:
    """A host name as DNS compares it: case-insensitive, without the root's trailing dot."""
    return value.strip().rstrip(".").lower()


def _as_ipv4_if_mapped(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 host itself on any dual-stack socket."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class AssetIndex:
    """Inventory lookups by name (any spelling) and by address, built once per bundle."""

    def __init__(self, assets: dict[str, dict[str, Any]], domain: str | None = None) -> None:
        self.assets = assets
        self.domain = canonical_host_text(domain) if domain else None
        # Keyed by canonical text, not by integer: IPv4 1.2.3.4 and IPv6 ::102:304 are the same integer.
        self._by_address: dict[str, str] = {}
        self._by_name: dict[str, str] = {}
        self._owners_cache: dict[str, tuple[str, ...]] = {}
        for name, asset in assets.items():
            self._by_name[canonical_host_text(name)] = name
            for alias in asset.get("aliases", []) or []:
                self._by_name[canonical_host_text(str(alias))] = name
            for address in asset.get("addresses", []) or []:
                self._by_address[_as_ipv4_if_mapped(ipaddress.ip_address(address))] = name

    def get(self, name: str | None) -> dict[str, Any] | None:
        return self.assets.get(name) if name else None

    def resolve_host(self, value: str | None) -> str | None:
        """The inventory name a host reference means: a name in any case, with or without a trailing dot, the
        FQDN in the inventory's domain, an alias, or one of the asset's addresses. None when it is none of ours."""
        if not value:
            return None
        text = canonical_host_text(value)
        if text in self._by_name:
            return self._by_name[text]
        if self.domain and text.endswith("." + self.domain):
            short = text[: -len(self.domain) - 1]
            if short in self._by_name:
                return self._by_name[short]
        try:
            return self.owner_of_address(text)
        except ValueError:
            return None

    def canonical_host(self, value: str) -> str:
        """The inventory name when the host is ours, else the name as DNS compares it."""
        return self.resolve_host(value) or canonical_host_text(value)

    def owner_of_address(self, value: str) -> str | None:
        """The asset one address belongs to (ValueError when it is not an address): the first of
        `owners_of_address`."""
        owners = self.owners_of_address(value)
        return owners[0] if owners else None

    def owners_of_address(self, value: str) -> tuple[str, ...]:
        """The assets one address reaches (ValueError when it is not an address): its own, then the owner of each
        IPv4 address an IPv6 spelling embeds (a Teredo address carries two). More owners only add scopes, and
        more scopes only lower a level; fewer would let a spelling step around an asset's scope."""
        cached = self._owners_cache.get(value)
        if cached is None:
            if len(self._owners_cache) >= _OWNERS_CACHED:
                self._owners_cache.clear()
            owners = (self._by_address.get(spelling) for spelling in _spellings(ipaddress.ip_address(value)))
            cached = self._owners_cache[value] = tuple(dict.fromkeys(owner for owner in owners if owner))
        return cached

    def owner_of(self, ip_facts: dict[str, Any]) -> str | None:
        """The first inventory asset whose address lies inside the target address or network."""
        owners = self.owners_in(ip_facts, first_only=True)
        return owners[0] if owners else None

    def owners_in(self, ip_facts: dict[str, Any], first_only: bool = False) -> list[str]:
        """The assets whose addresses lie inside the target address or network (each once, inventory order)."""
        if ip_facts["num_addresses"] == 1:
            found = self.owners_of_address(ip_facts["value"])
            return list(found[:1] if first_only else found)
        network = ipaddress.ip_network(ip_facts["value"])
        # The IPv4 prefixes an IPv6 range embeds ("" when it holds every IPv4 address), as bits.
        embedded = embedded_ipv4(prefix_bits(network)) if network.version == 6 else []
        owners: list[str] = []
        for address, name in self._by_address.items():
            ip = ipaddress.ip_address(address)
            inside = ip in network or (ip.version == 4 and any(_address_bits(ip).startswith(b) for b in embedded))
            if inside and name not in owners:
                owners.append(name)
                if first_only:
                    break
        return owners

    def owners_of_text(self, value: str | None) -> list[str]:
        """owners_in for an address or network given as text; [] for None or text that is neither."""
        if not value:
            return []
        try:
            return self.owners_in(address_facts(value))
        except ValueError:
            return []


def _address_bits(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """All of an address's bits, as controller/addresses.py compares prefixes."""
    return format(int(address), f"0{address.max_prefixlen}b")


def _spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """The keys one address is looked up by: itself (an IPv4-mapped address as its IPv4 host, as the index keys
    it), then each whole IPv4 address an IPv6 address embeds (controller/addresses.py, EMBEDDINGS)."""
    spellings = [_as_ipv4_if_mapped(address)]
    if address.version == 6:
        for bits in embedded_ipv4(_address_bits(address)):
            text = str(ipaddress.IPv4Address(int(bits, 2))) if len(bits) == 32 else None
            if text is not None and text not in spellings:
                spellings.append(text)
    return spellings
