"""A stand-in enforcement point for workflow tests: the firewall / EDR / IdP at the edge of the product.

The workflow tests are about the workflow (approvals, pre-flight, compensation, TTL revert, exactly-once), so
they need an enforcement point whose state they can read and break on purpose. The real ones (nftables,
issue 4) are tested in the lab's end-to-end tests. This double honours the adapter contract: effects keyed
by idempotency key, ALREADY_DONE on repeats, verify reads the effect back.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, ActionStatus, Adapter, VerifyOutcome

# action -> (target param, effect kind, True to add / False to remove)
_EFFECTS = {
    "network.block_ip": ("ip", "blocked", True),
    "network.unblock_ip": ("ip", "blocked", False),
    "host.isolate": ("host", "isolated", True),
    "host.release": ("host", "isolated", False),
    "identity.disable_user": ("user", "disabled", True),
    "identity.enable_user": ("user", "disabled", False),
}


@dataclass
class FakeEnforcement:
    state: set[tuple[str, str]] = field(default_factory=set)
    applied_keys: set[str] = field(default_factory=set)
    effects: Counter[str] = field(default_factory=Counter)
    """Effects applied, per action: what "executed exactly once" is counted on."""
    fail_verify: set[str] = field(default_factory=set)
    """Actions whose effect silently does not stick (verify must notice)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def adapters(self) -> dict[str, Adapter]:
        return {name: _Bound(self, name) for name in _EFFECTS}


@dataclass
class _Bound:
    point: FakeEnforcement
    action: str

    def execute(self, request: ActionRequest) -> ActionOutcome:
        param, kind, add = _EFFECTS[self.action]
        target = (kind, str(request.params[param]))
        with self.point.lock:
            if request.idempotency_key in self.point.applied_keys:
                return ActionOutcome(status=ActionStatus.ALREADY_DONE, detail=f"{target} already applied")
            if add and target in self.point.state:  # someone else's effect is already there: not ours to undo
                return ActionOutcome(
                    status=ActionStatus.ALREADY_DONE, detail=f"{target} already applied", evidence={"mine": False}
                )
            self.point.applied_keys.add(request.idempotency_key)
            self.point.effects[self.action] += 1
            if self.action not in self.point.fail_verify:
                (self.point.state.add if add else self.point.state.discard)(target)
        return ActionOutcome(status=ActionStatus.DONE, detail=f"{self.action} {target[1]}", reference=target[1])

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        param, kind, add = _EFFECTS[self.action]
        present = (kind, str(request.params[param])) in self.point.state
        ok = present if add else not present
        return VerifyOutcome(ok=ok, detail=f"{kind} {request.params[param]}: {'present' if present else 'absent'}")
