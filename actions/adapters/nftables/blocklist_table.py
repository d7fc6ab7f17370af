"""The blocklist table: what it must contain (`ensure`), what it holds (`read`), and whether it blocks (verify).

Blocks are elements of two interval sets with timeouts (`blocklist4`, `blocklist6`: addresses and networks),
matched by a drop rule in chains on the input (and forward) hook at priority -10, all in `table inet <table>`
(ours alone: the host's own tables are never touched). Verifying reads that back: the element, the drop rules,
their counters, and, when configured, a reachability probe from the blocked source.
"""

from __future__ import annotations

from typing import Any

from autonomy_controller.actions.adapters.base import ActionOutcome, AdapterError, TransientAdapterError, VerifyOutcome
from autonomy_controller.actions.adapters.nftables.config import NftFirewall
from autonomy_controller.actions.adapters.nftables.nft import FAMILY, Nft, NftCommandError, payload_match, where
from autonomy_controller.actions.adapters.nftables.ownership import Undo, whose
from autonomy_controller.actions.adapters.nftables.probe import ReachabilityProbe
from autonomy_controller.actions.adapters.nftables.state import IPNetwork, SetElement, TableState, show

ENSURE_ATTEMPTS = 3


class BlocklistTable:
    """The blocklist table in the enforcement namespace, as it should be and as it is: ensure it, read it back,
    verify it. Blocklist (blocklist.py) adds the writes to its elements."""

    def __init__(self, config: NftFirewall) -> None:
        self.config = config
        self.nft = Nft(config.ns(config.netns), config.nft)

    # desired objects -------------------------------------------------------------------------------------

    def _base(self, **fields: Any) -> dict[str, Any]:
        return {"family": FAMILY, "table": self.config.table, **fields}

    def set_name(self, network: IPNetwork) -> str:
        return self.config.set4 if network.version == 4 else self.config.set6

    def _set_object(self, name: str, kind: str) -> dict[str, Any]:
        return self._base(name=name, type=kind, flags=["interval", "timeout"])

    def _chain_object(self, hook: str) -> dict[str, Any]:
        return self._base(name=hook, type="filter", hook=hook, prio=self.config.priority, policy="accept")

    def rule_comment(self, protocol: str) -> str:
        name = self.config.set4 if protocol == "ip" else self.config.set6
        return f"autonomy: drop {protocol} saddr in @{name}"

    def _rules(self, hook: str) -> list[dict[str, Any]]:
        return [
            self._base(
                chain=hook,
                comment=self.rule_comment(protocol),
                expr=[payload_match(protocol, "saddr", f"@{name}"), {"counter": None}, {"drop": None}],
            )
            for protocol, name in (("ip", self.config.set4), ("ip6", self.config.set6))
        ]

    # ensure ----------------------------------------------------------------------------------------------

    def read(self) -> TableState | None:
        items = self.nft.list_table(FAMILY, self.config.table)
        return None if items is None else TableState.parse(items)

    def ensure_commands(self, state: TableState | None) -> list[dict[str, Any]]:
        """What makes the table complete: nothing when it is. Missing objects are `create`d, so of two workers
        completing a fresh table at once one batch fails whole ("File exists") instead of both appending the
        drop rules. Objects that exist with other properties are refused, not replaced (replacing a set would
        drop every active block in it)."""
        commands: list[dict[str, Any]] = []
        if state is None:
            commands.append({"create": {"table": {"family": FAMILY, "name": self.config.table}}})
            state = TableState()
        for name, kind in ((self.config.set4, "ipv4_addr"), (self.config.set6, "ipv6_addr")):
            existing = state.sets.get(name)
            if existing is None:
                commands.append({"create": {"set": self._set_object(name, kind)}})
            elif existing.get("type") != kind or not {"interval", "timeout"} <= set(existing.get("flags", [])):
                raise AdapterError(
                    f"set {FAMILY} {self.config.table} {name} in {where(self.config.netns)} has type "
                    f"{existing.get('type')} flags {existing.get('flags', [])}; the adapter needs {kind} with flags "
                    f"interval,timeout: delete that set or configure another name"
                )
        for hook in self.config.hooks:
            commands += self._chain_commands(state, hook)
        return commands

    def _chain_commands(self, state: TableState, hook: str) -> list[dict[str, Any]]:
        """A missing chain is added with its rules; a chain whose rules differ is flushed and refilled in the
        same batch (no moment without the drop rule); a chain hooked differently is refused."""
        wanted = self._chain_object(hook)
        existing = state.chains.get(hook)
        rules = [{"add": {"rule": rule}} for rule in self._rules(hook)]
        if existing is None:
            return [{"create": {"chain": wanted}}, *rules]
        differing = [key for key in ("type", "hook", "prio", "policy") if existing.get(key) != wanted[key]]
        if differing:
            found = ", ".join(f"{key} {existing.get(key)!r}" for key in differing)
            raise AdapterError(
                f"chain {FAMILY} {self.config.table} {hook} in {where(self.config.netns)} has {found}; expected "
                f"type filter hook {hook} priority {self.config.priority} policy accept: delete the chain to let "
                "the adapter recreate it"
            )
        if state.rule_comments(hook) == [rule["add"]["rule"]["comment"] for rule in rules]:
            return []
        return [{"flush": {"chain": self._base(name=hook)}}, *rules]

    def ensure(self) -> list[dict[str, Any]]:
        """Create (or repair) table, sets, chains and drop rules; returns the commands applied (none when whole).
        Touches nothing outside `table inet <table>`, so the host's own ruleset stays as it is."""
        return self._ensure(self.read())[1]

    def _ensure(self, state: TableState | None) -> tuple[TableState | None, list[dict[str, Any]]]:
        """Apply what `state` lacks; when another worker completed the table meanwhile, read it and retry."""
        for _ in range(ENSURE_ATTEMPTS):
            commands = self.ensure_commands(state)
            try:
                self.nft.apply(commands, f"ensure table {FAMILY} {self.config.table}")
                return state, commands
            except NftCommandError as exc:
                if "File exists" not in exc.stderr:
                    raise
                state = self.read()
        raise TransientAdapterError(f"table {FAMILY} {self.config.table} kept changing while being completed")

    # elements --------------------------------------------------------------------------------------------

    def matching(self, state: TableState | None, network: IPNetwork) -> list[SetElement]:
        """Elements that share at least one address with `network`."""
        if state is None:
            return []
        return [element for element in state.elements(self.set_name(network)) if element.intersects(network)]

    def _evidence(self, network: IPNetwork) -> dict[str, Any]:
        return {"netns": self.config.netns, "table": f"{FAMILY} {self.config.table}", "set": self.set_name(network)}

    # verify ----------------------------------------------------------------------------------------------

    def missing_rules(self, state: TableState) -> list[str]:
        """What keeps set elements from dropping anything: a chain or drop rule that is not there."""
        problems = []
        for hook in self.config.hooks:
            chain = state.chains.get(hook)
            if chain is None or chain.get("hook") != hook:
                problems.append(f"chain {hook} is missing or not on the {hook} hook")
                continue
            present = state.rule_comments(hook)
            problems += [
                f"chain {hook} lacks the rule {comment!r}"
                for comment in (self.rule_comment("ip"), self.rule_comment("ip6"))
                if comment not in present
            ]
        return problems

    def counters(self, state: TableState, network: IPNetwork) -> dict[str, int | None]:
        protocol = "ip" if network.version == 4 else "ip6"
        return {hook: state.counter(hook, self.rule_comment(protocol)) for hook in self.config.hooks}

    def verify_blocked(self, network: IPNetwork, idempotency_key: str) -> VerifyOutcome:
        """The element (or one covering it) is in the set, the drop rules are in place, and, when a probe is
        configured and its source is inside `network`, that source cannot connect while a bystander can."""
        state = self.read()
        if state is None:
            return VerifyOutcome(ok=False, detail=f"table {FAMILY} {self.config.table} is gone", evidence={})
        covering = next((e for e in self.matching(state, network) if e.covers(network)), None)
        evidence = {**self._evidence(network), "drop_counters": self.counters(state, network)}
        if covering is None:
            return VerifyOutcome(
                ok=False, detail=f"{show(network)} is not in {self.set_name(network)}", evidence=evidence
            )
        evidence.update(covering.evidence())
        problems = self.missing_rules(state)
        if problems:
            return VerifyOutcome(ok=False, detail="element present but " + "; ".join(problems), evidence=evidence)
        found = f"{covering.label} is in {self.set_name(network)} ({whose(covering.comment, idempotency_key)})"
        probe = ReachabilityProbe(self.config, self.config.probe)
        verdict = probe.expect_cut_off(network)
        evidence["probe"] = verdict.evidence
        if verdict.evidence.get("blocked"):  # the probe's SYNs were dropped by now: the counters show it
            after = self.read()
            evidence["drop_counters"] = self.counters(after, network) if after else None
        return VerifyOutcome(ok=verdict.ok, detail=f"{found}; {verdict.detail}", evidence=evidence)

    def verify_unblocked(
        self, network: IPNetwork, undo: Undo | None = None, outcome: ActionOutcome | None = None
    ) -> VerifyOutcome:
        """No element matches any address of `network` any more (a probe result is added as evidence only:
        a target that is down must not make the controller block again by compensation).

        For an undo (`undo`: from the request's purpose and undoes) whose outcome said it left the element in
        place (another owner holds it), the question is whether the undone block's own element is gone: the
        address staying blocked by someone else's element is then what should be, and the probe is skipped (it
        would only show that block working). The undone block's own element still there fails, as does anything
        matching after an outcome that claimed removal, or after an undo that names no execution it undoes."""
        state = self.read()
        found = self.matching(state, network)
        evidence: dict[str, Any] = {**self._evidence(network), "matching": [e.evidence() for e in found]}
        if found:
            listed = ", ".join(element.describe() for element in found)
            own = undo.comment if undo is not None else None
            if undo is not None and any(undo.created(element.comment) for element in found):
                return VerifyOutcome(
                    ok=False,
                    detail=f"{show(network)} is still blocked by the element this undo had to remove: {listed}",
                    evidence=evidence,
                )
            if own is not None and outcome is not None and outcome.evidence.get("left_in_place") is True:
                return VerifyOutcome(
                    ok=True,
                    detail=f"{show(network)} stays blocked by {listed}, which is not the undone block's "
                    f"({own!r}): left in place as the undo said; probe skipped",
                    evidence={**evidence, "left_in_place": True},
                )
            return VerifyOutcome(ok=False, detail=f"{show(network)} is still matched by {listed}", evidence=evidence)
        verdict = ReachabilityProbe(self.config, self.config.probe).observe_restored(network)
        evidence["probe"] = verdict.evidence
        return VerifyOutcome(
            ok=True, detail=f"{show(network)} is in no blocklist element; {verdict.detail}", evidence=evidence
        )
