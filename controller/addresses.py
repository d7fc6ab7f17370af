"""Address facts for policies: prefix bit strings that let Rego match networks without `net.*` built-ins.

regopy lacks the `net.*` family, and a policy must decide the same in both engines, so the controller turns
every address or network (targets in the input, allowlisted ranges in the data) into the same canonical facts.
Two same-version ranges overlap iff one's `bits` starts with the other's.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def address_facts(value: str) -> dict[str, Any]:
    """Canonical value, version, prefix length, prefix bits and size of one address or network."""
    network = ipaddress.ip_network(value.strip(), strict=True)
    width = network.max_prefixlen
    bits = format(int(network.network_address), f"0{width}b")[: network.prefixlen]
    canonical = str(network.network_address) if network.num_addresses == 1 else str(network)
    return {
        "value": canonical,
        "version": network.version,
        "prefix_len": network.prefixlen,
        "bits": bits,
        "num_addresses": network.num_addresses,
    }
