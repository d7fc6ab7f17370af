"""Host isolation: host.isolate / host.release for the hosts the enforcement file names.

Isolation is a table of its own per host namespace (`autonomy_isolation`: input, output and forward chains with
policy drop, loopback and the management allowlist accepted). Its presence is the isolation, so isolating is one
atomic `create table` batch and releasing is one `delete table`. The comment on the input chain's last rule
names the owner (ownership.py).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from actions.adapters.base import ActionOutcome, ActionStatus, AdapterError, VerifyOutcome
from actions.adapters.nftables.config import NftFirewall
from actions.adapters.nftables.nft import FAMILY, Nft, NftCommandError, payload_match, prefix_value, where
from actions.adapters.nftables.ownership import owner_comment, whose
from actions.adapters.nftables.probe import ReachabilityProbe
from actions.adapters.nftables.state import TableState


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

    def isolate(self, idempotency_key: str) -> ActionOutcome:
        state = self.read()
        if state is not None:
            return self._already_isolated(state, idempotency_key)
        try:
            self.nft.apply(self.commands(owner_comment(idempotency_key)), f"isolate {self.host}")
        except NftCommandError as exc:
            state = self.read() if "File exists" in exc.stderr else None
            if state is None:
                raise
            return self._already_isolated(state, idempotency_key)
        allowed = ", ".join(self.target.management) or "nothing else"
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"isolated {self.place}: all traffic dropped but loopback and management ({allowed})",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner_comment(idempotency_key)),
        )

    def _already_isolated(self, state: TableState, idempotency_key: str) -> ActionOutcome:
        owner = self.owner(state)
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"{self.place} is already isolated by {whose(owner, idempotency_key)}: nothing applied again",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner),
        )

    def release(self, idempotency_key: str) -> ActionOutcome:
        state = self.read()
        if state is None:
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE, detail=f"{self.place} is not isolated", evidence=self._evidence()
            )
        owner = self.owner(state)
        delete = {"delete": {"table": {"family": FAMILY, "name": self.config.isolation_table}}}
        try:
            self.nft.apply([delete], f"release {self.host}")
        except NftCommandError as exc:
            if "No such file" not in exc.stderr:
                raise
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE,
                detail=f"{self.place} was released meanwhile",
                evidence=self._evidence(),
            )
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"released {self.place}: removed the isolation set by {whose(owner, idempotency_key)}",
            reference=f"{FAMILY} {self.config.isolation_table}",
            evidence=self._evidence(owner=owner),
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

    def verify_released(self) -> VerifyOutcome:
        if self.read() is not None:
            return VerifyOutcome(ok=False, detail=f"{self.place} still has its isolation table", evidence={})
        verdict = ReachabilityProbe(self.config, self.target.probe).observe_restored(None)
        return VerifyOutcome(
            ok=True, detail=f"{self.place} is not isolated; {verdict.detail}", evidence={"probe": verdict.evidence}
        )
