"""Host isolation: host.isolate / host.release for the hosts the enforcement file names.

Isolation is a table of its own per host namespace (`autonomy_isolation`: input, output and forward chains with
policy drop, loopback and the management allowlist accepted). Its presence is the isolation, so isolating is one
atomic `create table` batch and releasing is one `delete table`. The comment on the input chain's last rule
names the owner (ownership.py).

One host, several incidents: the same ownership rule as blocks (blocklist.py), adapted to an effect without
expiry. An isolation never times out (host.isolate has no TTL, and the table none), so no later need can be
told to outlast it and it is never taken over: the incident that created it owns it, and a second incident
isolating the host gets ALREADY_DONE, not mine (its workflow then never undoes it). An undo (compensation,
revert: the request's purpose) removes only the isolation its own execution created; one somebody else holds
is left in place (ALREADY_DONE, `left_in_place`, naming the holder). A person's or a plan's explicit
host.release (purpose execute) is the decision to lift it and removes it whoever holds it, naming that owner.
Reading, deciding and writing run under the isolation table's lock file (lock.py), and the delete names the
table by the handle that was read, so a table deleted and created again meanwhile is never the one removed.
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import Any

from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.adapters.nftables.config import NftFirewall
from autonomy_controller.actions.adapters.nftables.lock import serialized
from autonomy_controller.actions.adapters.nftables.nft import (
    FAMILY,
    Nft,
    NftCommandError,
    first_line,
    payload_match,
    prefix_value,
    where,
)
from autonomy_controller.actions.adapters.nftables.ownership import Undo, owner_comment, whose
from autonomy_controller.actions.adapters.nftables.probe import ReachabilityProbe
from autonomy_controller.actions.adapters.nftables.state import TableState

DECIDE_ATTEMPTS = 3
"""How often `release` reads and decides again when the table it read was deleted or replaced meanwhile."""


class Isolation:
    """The isolation table in one inventory host's namespace: present = isolated."""

    def __init__(self, config: NftFirewall, host: str) -> None:
        target = config.hosts.get(host)
        if target is None:
            known = ", ".join(sorted(config.hosts)) or "none"
            raise AdapterError(
                f"host {host!r} is not in the enforcement file's nftables.hosts (known: {known}): the adapter "
                "isolates only hosts it is told where to find"
            )
        self.config, self.host, self.target = config, host, target
        self.nft = Nft(config.ns(target.netns), config.nft)

    @property
    def place(self) -> str:
        return f"{self.host} ({where(self.target.netns)})"

    def read(self) -> TableState | None:
        items = self.nft.list_table(FAMILY, self.config.isolation_table)
        return None if items is None else TableState.parse(items)

    def owner(self, state: TableState) -> str | None:
        """The comment on the input chain's last rule (a bare counter of what the policy then drops)."""
        rules = state.rules.get("input", [])
        return rules[-1].get("comment") if rules else None

    def _rule(self, chain: str, expr: list[dict[str, Any]], comment: str) -> dict[str, Any]:
        rule = {"family": FAMILY, "table": self.config.isolation_table, "chain": chain, "expr": expr}
        return {"add": {"rule": {**rule, "comment": comment}}}

    def _chain_rules(self, chain: str, owner: str) -> list[dict[str, Any]]:
        """Loopback and management accepted (both directions), then a counter carrying the owner; policy drop."""
        rules: list[dict[str, Any]] = []
        if chain in ("input", "output"):
            key, field = ("iifname", "saddr") if chain == "input" else ("oifname", "daddr")
            lo = {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": "lo"}}
            rules.append(self._rule(chain, [lo, {"accept": None}], "loopback"))
            for text in self.target.management:
                network = ipaddress.ip_network(text)
                protocol = "ip" if network.version == 4 else "ip6"
                rules.append(
                    self._rule(chain, [payload_match(protocol, field, prefix_value(network)), {"accept": None}], "mgmt")
                )
        rules.append(self._rule(chain, [{"counter": None}], owner))
        return rules

    def commands(self, owner: str) -> list[dict[str, Any]]:
        table = self.config.isolation_table
        commands: list[dict[str, Any]] = [{"create": {"table": {"family": FAMILY, "name": table}}}]
        for chain in ("input", "output", "forward"):
            body = {"family": FAMILY, "table": table, "name": chain, "type": "filter", "hook": chain}
            commands.append({"add": {"chain": {**body, "prio": self.config.isolation_priority, "policy": "drop"}}})
            commands += self._chain_rules(chain, owner)
        return commands

    def serialized(self) -> contextlib.AbstractContextManager[None]:
        """The lock around every read-decide-write of this host's isolation (see `lock.serialized` for why)."""
        return serialized(
            f"{self.target.netns or '-'}.{self.config.isolation_table}", self.config.command_timeout_seconds
        )

    def isolate(self, idempotency_key: str) -> ActionOutcome:
        """Isolate the host, or say whose isolation is already there (ALREADY_DONE; `mine` only for this key's).

        An isolation has no expiry, so there is nothing to hand over: an existing one stays its creator's, and
        `mine` False tells the workflow that this incident's undo must never lift it."""
        with self.serialized():
            state = self.read()
            if state is not None:
                return self._already_isolated(state, idempotency_key)
            try:
                self.nft.apply(self.commands(owner_comment(idempotency_key)), f"isolate {self.host}")
            except NftCommandError as exc:  # `create table`: someone outside the lock was quicker
                state = self.read() if "File exists" in exc.stderr else None
                if state is None:
                    raise
                return self._already_isolated(state, idempotency_key)
        allowed = ", ".join(self.target.management) or "nothing else"
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"isolated {self.place}: all traffic dropped but loopback and management ({allowed})",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner_comment(idempotency_key), mine=True),
        )

    def _already_isolated(self, state: TableState, idempotency_key: str) -> ActionOutcome:
        owner = self.owner(state)
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"{self.place} is already isolated by {whose(owner, idempotency_key)}: nothing applied again",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner, mine=owner is not None and owner == owner_comment(idempotency_key)),
        )

    def release(self, idempotency_key: str, undo: Undo | None = None) -> ActionOutcome:
        """Lift the isolation, unless this is an undo and the isolation is not the one the undone execution made.

        `undo` (from the request's purpose and undoes) set: only the isolation carrying the undone execution's
        owner comment is removed; any other (another incident's, an operator's, one without a comment) is left
        in place, because its holder still relies on it. `undo` None (an explicit host.release): the isolation is
        removed whoever holds it, and the outcome names the owner it overrode. The decision is taken under the
        lock on a fresh read; a table deleted or replaced meanwhile by someone outside the lock makes the delete
        by handle fail, and the decision is taken again on a new read."""
        changes: list[str] = []
        with self.serialized():
            for _ in range(DECIDE_ATTEMPTS):
                state = self.read()
                if state is None:
                    return ActionOutcome(
                        status=ActionStatus.ALREADY_DONE,
                        detail=f"{self.place} is not isolated" + (" (released meanwhile)" if changes else ""),
                        evidence=self._evidence(),
                    )
                owner = self.owner(state)
                if undo is not None and not undo.created(owner):
                    return self._left_in_place(owner, undo)
                try:
                    self.nft.apply([self._delete(state)], f"release {self.host}")
                except NftCommandError as exc:
                    if "No such file" not in exc.stderr:
                        raise
                    changes.append(first_line(exc.stderr))
                    continue
                return self._released(owner, idempotency_key, undo)
        raise TransientAdapterError(
            f"the isolation of {self.place} changed under every one of {DECIDE_ATTEMPTS} attempts to release it "
            f"({'; '.join(changes)}): nothing removed, try again"
        )

    def _delete(self, state: TableState) -> dict[str, Any]:
        """Delete exactly the table that was read: by its handle (a recreated table has another one)."""
        if state.handle is None:
            raise AdapterError(f"nft listed {FAMILY} {self.config.isolation_table} in {self.place} without a handle")
        return {"delete": {"table": {"family": FAMILY, "handle": state.handle}}}

    def _released(self, owner: str | None, idempotency_key: str, undo: Undo | None) -> ActionOutcome:
        if undo is not None:
            how = f"the isolation this {undo.purpose} undoes ({owner!r})"
            evidence = self._evidence(owner=owner, undoes=undo.comment)
        else:
            how = (
                f"the isolation set by {whose(owner, idempotency_key)} (an explicit release lifts it whoever holds it)"
            )
            evidence = self._evidence(owner=owner, overrode=owner)
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"released {self.place}: removed {how}",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=evidence,
        )

    @staticmethod
    def _holder(owner: str | None) -> str:
        return (
            f"incident/key {owner!r}"
            if owner
            else "an isolation without an owner comment (made outside the controller)"
        )

    def _left_in_place(self, owner: str | None, undo: Undo) -> ActionOutcome:
        """An undo that finds the host isolated by an isolation that is not the undone execution's own."""
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"left {self.place} isolated: {self._holder(owner)} holds the isolation, and an undo never lifts "
            f"someone else's; {undo.missing('isolation')}",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(left_in_place=True, owner=owner, undoes=undo.comment),
        )

    def _evidence(self, **more: Any) -> dict[str, Any]:
        return {
            "host": self.host,
            "netns": self.target.netns,
            "table": f"{FAMILY} {self.config.isolation_table}",
        } | more

    def verify_isolated(self, idempotency_key: str) -> VerifyOutcome:
        state = self.read()
        if state is None:
            return VerifyOutcome(ok=False, detail=f"{self.place} has no isolation table", evidence=self._evidence())
        problems = [
            f"chain {chain} is missing, not on its hook or not policy drop"
            for chain in ("input", "output", "forward")
            if not ((found := state.chains.get(chain)) and found.get("hook") == chain and found.get("policy") == "drop")
        ]
        owner = self.owner(state)
        evidence = self._evidence(owner=owner, dropped_in=state.counter("input", owner) if owner else None)
        if problems:
            return VerifyOutcome(ok=False, detail=f"{self.place}: " + "; ".join(problems), evidence=evidence)
        verdict = ReachabilityProbe(self.config, self.target.probe).expect_cut_off(None)
        evidence["probe"] = verdict.evidence
        detail = f"{self.place} is isolated ({whose(owner, idempotency_key)}); {verdict.detail}"
        return VerifyOutcome(ok=verdict.ok, detail=detail, evidence=evidence)

    def verify_released(self, undo: Undo | None = None, outcome: ActionOutcome | None = None) -> VerifyOutcome:
        """The isolation table is gone (a probe result is added as evidence only: a host that is down must not
        make the controller isolate it again by compensation).

        For an undo whose outcome said it left the isolation in place, the question is whether the undone
        execution's own isolation is gone: the host staying isolated by someone else's is then what should be,
        and the probe is skipped. The undone execution's own isolation still there fails, as does any isolation
        after an outcome that claimed removal, or after an undo that names no execution it undoes."""
        state = self.read()
        if state is None:
            verdict = ReachabilityProbe(self.config, self.target.probe).observe_restored(None)
            return VerifyOutcome(
                ok=True,
                detail=f"{self.place} is not isolated; {verdict.detail}",
                evidence=self._evidence(probe=verdict.evidence),
            )
        owner = self.owner(state)
        evidence = self._evidence(owner=owner)
        if undo is not None and undo.created(owner):
            return VerifyOutcome(
                ok=False,
                detail=f"{self.place} is still isolated by the isolation this {undo.purpose} had to remove ({owner!r})",
                evidence=evidence,
            )
        left = outcome is not None and outcome.evidence.get("left_in_place") is True
        if undo is not None and undo.comment is not None and left:
            return VerifyOutcome(
                ok=True,
                detail=f"{self.place} stays isolated by {self._holder(owner)}, not the undone isolation "
                f"({undo.comment!r}): left in place as the undo said; probe skipped",
                evidence={**evidence, "left_in_place": True},
            )
        return VerifyOutcome(
            ok=False,
            detail=f"{self.place} still has its isolation table ({self._holder(owner)})",
            evidence=evidence,
        )
