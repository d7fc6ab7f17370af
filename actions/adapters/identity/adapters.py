"""identity.disable_user / identity.enable_user on a real directory, and the factory that builds them.

Whether an enable is an undo (TTL revert or compensation of a disable, and of which execution) is the request's
purpose and undoes (ownership.undo_of), never the format of its idempotency key. The adapters exist only when
the enforcement file has an `identity:` section: without it both actions have no adapter and fail closed, and a
broken file yields adapters that fail with its error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from autonomy_controller.actions.adapters._common import check_action, parse_params
from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, Adapter, VerifyOutcome
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory
from autonomy_controller.actions.adapters.identity.lockout import Lockout
from autonomy_controller.actions.adapters.nftables.adapters import MisconfiguredAdapter
from autonomy_controller.actions.adapters.nftables.config import EnforcementConfigError, load_enforcement
from autonomy_controller.actions.adapters.nftables.ownership import undo_of
from autonomy_controller.actions.params import UserParams

log = logging.getLogger(__name__)

IDENTITY_ACTIONS = ("identity.disable_user", "identity.enable_user")


class DisableUserAdapter:
    action: str = "identity.disable_user"

    def __init__(self, config: IdentityDirectory) -> None:
        self.lockout = Lockout(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        return self.lockout.disable(parse_params(request, UserParams).user, request.idempotency_key)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        user = parse_params(request, UserParams).user
        return self.lockout.verify_disabled(user, request.idempotency_key, outcome)


class EnableUserAdapter:
    action: str = "identity.enable_user"

    def __init__(self, config: IdentityDirectory) -> None:
        self.lockout = Lockout(config)

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        return self.lockout.enable(parse_params(request, UserParams).user, undo_of(request))

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        check_action(request, self.action)
        return self.lockout.verify_enabled(parse_params(request, UserParams).user, undo_of(request), outcome)


def identity_adapters(path: Path) -> list[Adapter]:
    """The adapters the enforcement file's `identity:` section configures: none without it."""
    try:
        loaded = load_enforcement(path)
    except EnforcementConfigError as exc:
        log.error("identity adapters disabled: %s", exc)
        return [MisconfiguredAdapter(action, exc) for action in IDENTITY_ACTIONS]
    if loaded is None or loaded.identity is None:
        return []
    return [DisableUserAdapter(loaded.identity), EnableUserAdapter(loaded.identity)]
