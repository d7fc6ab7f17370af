"""The asset inventory as the guard reads it: one place where host names and addresses become inventory assets.

Every spelling of a host (`DC-01`, `dc-01.`, `dc-01.corp.example`, its address) and every spelling of an address
(`10.10.0.10`, `::ffff:10.10.0.10`) must find the same asset, or a crown-jewel rule or a level scope can be
stepped around by writing the name differently. So names and addresses are canonicalised here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from autonomy_controller.controller.addresses import address_facts

CRITICALITIES = ("low", "medium", "high")
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
        """The asset one address belongs to (ValueError when it is not an address)."""
        return self._by_address.get(_as_ipv4_if_mapped(ipaddress.ip_address(value)))

    def owner_of(self, ip_facts: dict[str, Any]) -> str | None:
        """The first inventory asset whose address lies inside the target address or network."""
        owners = self.owners_in(ip_facts, first_only=True)
        return owners[0] if owners else None

    def owners_in(self, ip_facts: dict[str, Any], first_only: bool = False) -> list[str]:
        """The assets whose addresses lie inside the target address or network (each once, inventory order)."""
        if ip_facts["num_addresses"] == 1:
            owner = self.owner_of_address(ip_facts["value"])
            return [owner] if owner else []
        network = ipaddress.ip_network(ip_facts["value"])
        mapped = _mapped_ipv4_network(network)
        owners: list[str] = []
        for address, name in self._by_address.items():
            ip = ipaddress.ip_address(address)
            if (ip in network or (mapped is not None and ip in mapped)) and name not in owners:
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


def _mapped_ipv4_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Network | None:
    """The IPv4 network an IPv4-mapped IPv6 network (::ffff:0:0/96 and longer) stands for."""
    if not isinstance(network, ipaddress.IPv6Network) or network.prefixlen < 96:
        return None
    first = network.network_address.ipv4_mapped
    if first is None:
        return None
    return ipaddress.IPv4Network(f"{first}/{network.prefixlen - 96}")
