"""IP addresses: the one parser every typed address field uses, and the facts policies match addresses by.

Parsing: alert fields (controller/models.py), action params (actions/params.py) and the policy data all go
through `parse_address`/`parse_network` here, so one address has one canonical text everywhere, and nothing
but an address gets in: Python's ipaddress accepts an IPv6 zone id (`2001:db8::66%<any text>`), which would
carry free text into nft params, tickets and reports; it is refused here.

Facts: regopy lacks the `net.*` family, and a policy must decide the same in both engines, so the controller
turns every address or network (targets in the input, allowlisted ranges in the data) into the same canonical
facts. Two same-version ranges overlap iff one's `bits` starts with the other's. An IPv6 address may embed an
IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo): `embedded` lists those IPv4 prefixes, so that
every IPv4 check also runs on them and a protected IPv4 address is protected in every spelling.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressError(ValueError):
    """Text that is not one IP address (or network, where a network may be given); the message says why."""


def _address_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise AddressError(f"{what} must be text, got {type(value).__name__}")
    text = value.strip()
    # Before ipaddress sees it: it would accept the zone id, and str() would print it back.
    if "%" in text:
        raise AddressError(f"{text!r:.80} carries an IPv6 zone id (text after '%'): {what} takes the address alone")
    return text


def parse_address(value: object) -> IPAddress:
    """One IP address, no zone id, no prefix length."""
    text = _address_text(value, "an IP address")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"{text!r:.80} is not an IP address") from None


def parse_network(value: object) -> IPNetwork:
    """One address or one network (CIDR); a network with host bits set is refused, not silently widened."""
    text = _address_text(value, "an IP address or network")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        widened = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise AddressError(f"{text!r:.80} is not an IP address or network") from None
    raise AddressError(f"{text!r:.80} has host bits set (the network would be {widened})")


def canonical_address(value: object) -> str:
    return _canonical_text(value) if isinstance(value, str) else str(parse_address(value))


@lru_cache(maxsize=8192)
def _canonical_text(value: str) -> str:
    """Cached: every alert's addresses are validated again each time a workflow payload carrying it is decoded
    (bench.loop: ~1% of the worker's CPU); the few thousand addresses of a busy hour are the same few strings."""
    return str(parse_address(value))


def _canonical(network: IPNetwork) -> str:
    """A single address as an address (198.51.100.66, not 198.51.100.66/32), else the network."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def canonical_network(value: object) -> str:
    return _canonical(parse_network(value))


def prefix_bits(network: IPNetwork) -> str:
    """The network's prefix in binary: all 32/128 bits for an address, the first prefix_len for a network."""
    return format(int(network.network_address), f"0{network.max_prefixlen}b")[: network.prefixlen]


@dataclass(frozen=True)
class Embedding:
    """An IPv6 prefix whose addresses carry an IPv4 address at fixed bit positions."""

    name: str
    prefix: str  # the IPv6 prefix, as bits
    positions: tuple[int, ...]  # where the IPv4 address's 32 bits sit in the IPv6 address, in order
    inverted: bool = False  # Teredo stores the client's address with every bit flipped


def _embedding(name: str, cidr: str, *spans: tuple[int, int], inverted: bool = False) -> Embedding:
    positions = tuple(bit for start, end in spans for bit in range(start, end))
    return Embedding(name, prefix_bits(ipaddress.IPv6Network(cidr)), positions, inverted)


# policies/special_purpose/data.yaml lists these prefixes too (with what a block of them means); here is only
# where their IPv4 address sits. RFC 8215's local-use 64:ff9b:1::/48 holds NAT64 prefixes of /48 to /96 that
# each network picks, RFC 6052 section 2.2 placing the IPv4 address around bits 64-71 by prefix length: every
# placement is decoded (more IPv4 candidates can only mean more checks, never fewer).
EMBEDDINGS = (
    _embedding("IPv4-mapped", "::ffff:0:0/96", (96, 128)),
    _embedding("IPv4-compatible", "::/96", (96, 128)),
    _embedding("NAT64", "64:ff9b::/96", (96, 128)),
    _embedding("NAT64 local-use /48", "64:ff9b:1::/48", (48, 64), (72, 88)),
    _embedding("NAT64 local-use /56", "64:ff9b:1::/48", (56, 64), (72, 96)),
    _embedding("NAT64 local-use /64", "64:ff9b:1::/48", (72, 104)),
    _embedding("NAT64 local-use /96", "64:ff9b:1::/48", (96, 128)),
    _embedding("6to4", "2002::/16", (16, 48)),
    _embedding("Teredo server", "2001::/32", (32, 64)),
    _embedding("Teredo client", "2001::/32", (96, 128), inverted=True),
)
_FLIP = str.maketrans("01", "10")


def embedded_ipv4(bits: str) -> list[str]:
    """The IPv4 prefixes (as bits) that the IPv6 prefix `bits` embeds, each once, in EMBEDDINGS order.

    An address gives whole IPv4 addresses (32 bits); a range gives the IPv4 bits its prefix fixes (a range
    ending before the IPv4 part fixes none: "", every IPv4 address); a range that holds a whole embedding
    prefix (::/0, ::/80) holds every IPv4 address too: "".
    """
    found: list[str] = []
    for embedding in EMBEDDINGS:
        if len(bits) <= len(embedding.prefix):
            view = "" if embedding.prefix.startswith(bits) else None
        elif bits.startswith(embedding.prefix):
            view = "".join(bits[bit] for bit in embedding.positions if bit < len(bits))
            view = view.translate(_FLIP) if embedding.inverted else view
        else:
            view = None
        if view is not None and view not in found:
            found.append(view)
    return found


def address_facts(value: str) -> dict[str, Any]:
    """Canonical value, version, prefix length, prefix bits, embedded IPv4 prefixes and size of one address or
    network (policies/README.md, "Input document")."""
    network = parse_network(value)
    bits = prefix_bits(network)
    return {
        "value": _canonical(network),
        "version": network.version,
        "prefix_len": network.prefixlen,
        "bits": bits,
        "embedded": embedded_ipv4(bits) if network.version == 6 else [],
        "num_addresses": network.num_addresses,
    }
