"""network.block_ip / network.unblock_ip / host.isolate / host.release on nftables: real enforcement.

Configured by the enforcement file (Settings.enforcement_file, YAML), and only then: without that file the four
actions have no adapter and fail closed, so nothing ever touches a machine's firewall by default.

One concept per module, each importing only the ones listed above it (never this package itself):

- state: a listed table read back (TableState, SetElement) and how addresses are named.
- nft: talking to nftables inside a network namespace (nft's JSON API, one atomic batch per change).
- lock: the per-table lock file around every read-decide-write of a table's elements.
- ownership: whose element or isolation it is (owner comments, what an undo may remove).
- config: the enforcement file's `nftables:` section, its models and its loader.
- probe: reachability probes that check an effect by trying to connect.
- blocklist_table: the blocklist table as it must be (ensure) and as it is (read, verify).
- blocklist: block / unblock, with the handover between owners, under the lock.
- isolation: host isolation, a table of its own per host namespace, with the same owner rule, under the lock.
- adapters: the four adapters (`execute`/`verify` per action) and the factory from the enforcement file.

This package re-exports the names its importers used from the former single module.
"""

from __future__ import annotations

from autonomy_controller.actions.adapters.nftables.adapters import (
    BlockIpAdapter,
    IsolateHostAdapter,
    MisconfiguredAdapter,
    ReleaseHostAdapter,
    UnblockIpAdapter,
    enforcement_adapters,
)
from autonomy_controller.actions.adapters.nftables.blocklist import Blocklist
from autonomy_controller.actions.adapters.nftables.config import (
    EnforcementConfigError,
    HostTarget,
    NftFirewall,
    Probe,
    load_enforcement,
)
from autonomy_controller.actions.adapters.nftables.ownership import COMMENT_MAX_BYTES, owner_comment

__all__ = [
    "COMMENT_MAX_BYTES",
    "BlockIpAdapter",
    "Blocklist",
    "EnforcementConfigError",
    "HostTarget",
    "IsolateHostAdapter",
    "MisconfiguredAdapter",
    "NftFirewall",
    "Probe",
    "ReleaseHostAdapter",
    "UnblockIpAdapter",
    "enforcement_adapters",
    "load_enforcement",
    "owner_comment",
]
