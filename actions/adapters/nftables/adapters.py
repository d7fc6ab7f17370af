"""The four nftables adapters (`execute`/`verify` per action) and the factory that builds them.

network.block_ip / network.unblock_ip run on the blocklist (blocklist.py), host.isolate / host.release on
host isolation (isolation.py). Whether an unblock or a release is an undo (and of which execution) is the
request's purpose and undoes (ownership.undo_of), never the format of its idempotency key.

They exist only when the enforcement file configures them (config.py): without it the four actions have no
adapter and fail closed, and a broken file yields adapters that fail with its error.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

from autonomy_controller.actions.adapters._common import check_action, parse_params
from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, Adapter, AdapterError, VerifyOutcome
from autonomy_controller.actions.adapters.nftables.blocklist import Blocklist
from autonomy_controller.actions.adapters.nftables.config import EnforcementConfigError, NftFirewall, load_enforcement
from autonomy_controller.actions.adapters.nftables.isolation import Isolation
from autonomy_controller.actions.adapters.nftables.ownership import undo_of
from autonomy_controller.actions.adapters.nftables.state import IPNetwork
from autonomy_controller.actions.params import BlockIpParams, HostParams, UnblockIpParams

log = logging.getLogger(__name__)

BLOCK_ACTIONS = ("network.block_ip", "network.unblock_ip")
HOST_ACTIONS = ("host.isolate", "host.release")


def to_network(text: str) -> IPNetwork:
    """Params are canonical already (one address or a network without host bits); this only types them."""
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise AdapterError(f"not an address or network: {text!r} ({exc})") from None


class BlockIpAdapter:
    action: str = "network.block_ip"

    def __init__(self, config: NftFirewall) -> None:
        self.blocklist = Blocklist(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, BlockIpParams)
        return self.blocklist.block(to_network(params.ip), request.idempotency_key, params.ttl_seconds)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        params = parse_params(request, BlockIpParams)
        return self.blocklist.verify_blocked(to_network(params.ip), request.idempotency_key)


class UnblockIpAdapter:
    action: str = "network.unblock_ip"

    def __init__(self, config: NftFirewall) -> None:
        self.blocklist = Blocklist(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, UnblockIpParams)
        return self.blocklist.unblock(to_network(params.ip), request.idempotency_key, undo_of(request))

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        network = to_network(parse_params(request, UnblockIpParams).ip)
        return self.blocklist.verify_unblocked(network, undo_of(request), outcome)


class IsolateHostAdapter:
    action: str = "host.isolate"

    def __init__(self, config: NftFirewall) -> None:
        self.config = config

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        return Isolation(self.config, parse_params(request, HostParams).host).isolate(request.idempotency_key)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        isolation = Isolation(self.config, parse_params(request, HostParams).host)
        return isolation.verify_isolated(request.idempotency_key)


class ReleaseHostAdapter:
    action: str = "host.release"

    def __init__(self, config: NftFirewall) -> None:
        self.config = config

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        isolation = Isolation(self.config, parse_params(request, HostParams).host)
        return isolation.release(request.idempotency_key, undo_of(request))

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        return Isolation(self.config, parse_params(request, HostParams).host).verify_released(undo_of(request), outcome)


class MisconfiguredAdapter:
    """Stands in for an nftables adapter when the enforcement file is broken: the action fails with the file's
    error (in the ledger and report) instead of silently having no adapter, and the worker still starts."""

    def __init__(self, action: str, error: EnforcementConfigError) -> None:
        self.action, self.error = action, error

    def execute(self, request: ActionRequest) -> ActionOutcome:
        raise EnforcementConfigError(str(self.error))

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        return VerifyOutcome(ok=False, detail=str(self.error))


def nftables_adapters(config: NftFirewall) -> list[Adapter]:
    return [BlockIpAdapter(config), UnblockIpAdapter(config), IsolateHostAdapter(config), ReleaseHostAdapter(config)]


def enforcement_adapters(path: Path) -> list[Adapter]:
    """The adapters the enforcement file configures: none without the file or without its `nftables:` key."""
    try:
        loaded = load_enforcement(path)
    except EnforcementConfigError as exc:
        log.error("enforcement adapters disabled: %s", exc)
        return [MisconfiguredAdapter(action, exc) for action in (*BLOCK_ACTIONS, *HOST_ACTIONS)]
    if loaded is None or loaded.nftables is None:
        return []
    return nftables_adapters(loaded.nftables)
