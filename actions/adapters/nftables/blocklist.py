"""Blocking and unblocking addresses: the blocklist's elements, who owns each, and the handover between owners.

Each element's comment is the owner comment of the action that added it (ownership.py), so a repeat answers
ALREADY_DONE and says whose element it is. `ttl_seconds` becomes the element's timeout: the kernel drops the
element itself, and the workflow's later revert finds it gone (ALREADY_DONE).

One address, several incidents: the incident whose need ends last owns the block. A request whose TTL outlasts
an exact element's remaining expiry takes that element over (delete + create in one batch: our comment, our
timeout), and an undo (TTL revert, compensation) removes only the element its own block created, so the first
incident's revert leaves a block the second still needs (ALREADY_DONE, `left_in_place`). Reading, deciding and
writing elements runs under a lock file per table (lock.py), because nft has no compare-and-swap for elements.
"""

from __future__ import annotations

import contextlib
from typing import Any

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionStatus, AdapterError, TransientAdapterError
from autonomy_controller.actions.adapters.nftables.blocklist_table import BlocklistTable
from autonomy_controller.actions.adapters.nftables.lock import serialized
from autonomy_controller.actions.adapters.nftables.nft import FAMILY, NftCommandError, first_line, prefix_value, where
from autonomy_controller.actions.adapters.nftables.ownership import Undo, owner_comment, whose
from autonomy_controller.actions.adapters.nftables.state import IPNetwork, SetElement, TableState, show

DECIDE_ATTEMPTS = 3
"""How often `block` reads and decides again when nft refused its batch because the element changed meanwhile."""
CHANGED_MARKERS = ("does not exist", "No such file", "File exists", "overlaps")
"""nft's words for a batch refused because an element is no longer (or already) there: userspace's cache check
("element does not exist"), or the kernel's ENOENT / EEXIST, whichever saw the change first."""


class ElementChanged(Exception):
    """nft refused a batch because the element it names changed since our read: read again and decide again.

    Not an AdapterError on purpose: it never leaves the adapter (the caller retries or turns it into one)."""

    def __init__(self, error: NftCommandError) -> None:
        super().__init__(str(error))
        self.stderr_line = first_line(error.stderr)


class Blocklist(BlocklistTable):
    """The blocklist table in the enforcement namespace: ensure it, add/remove elements, read them back."""

    def serialized(self) -> contextlib.AbstractContextManager[None]:
        """The lock around every read-decide-write of this table's elements (see `lock.serialized` for why)."""
        return serialized(f"{self.config.netns or '-'}.{self.config.table}", self.config.command_timeout_seconds)

    def block(self, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None) -> ActionOutcome:
        """Make sure `network` is blocked at least until this request's TTL ends, and say whose element does it.

        "The incident whose need ends last owns the block": a new element is ours (DONE, mine). An exact element
        of someone else's that expires before our TTL would is taken over (DONE, mine, `took_over_from`): the
        owner whose need ended first must not lift, at its TTL, a block another incident still needs. One that
        lasts long enough, has no expiry (an operator's), or covers `network` as part of a wider network is left
        as it is (ALREADY_DONE, not mine): a revert from here would lift more, or longer, than this request set.

        Whatever is decided is decided on a read taken under the table's lock, and written in one batch that
        fails whole when the element changed anyway (expired, removed by hand): then we read and decide again."""
        with self.serialized():
            # The table is completed in a batch of its own: nft 1.0.6 answers "File exists" to a `create element`
            # into an interval set made in the same batch. A failure between the two leaves an empty, complete
            # table, never a partial block; the element itself is still one atomic batch.
            state, _ = self._ensure(self.read())
            changes: list[str] = []
            for _ in range(DECIDE_ATTEMPTS):
                try:
                    return self._block_once(state, network, idempotency_key, ttl_seconds)
                except ElementChanged as exc:
                    changes.append(exc.stderr_line)
                    state = self.read()
        raise TransientAdapterError(
            f"{show(network)} in {self.set_name(network)} ({where(self.config.netns)}) changed under every one of "
            f"{DECIDE_ATTEMPTS} attempts to block it ({'; '.join(changes)}): nothing applied, try again"
        )

    def _block_once(
        self, state: TableState | None, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None
    ) -> ActionOutcome:
        """One decision on `state`; ElementChanged when nft refused the batch because the set moved meanwhile."""
        found = self.matching(state, network)
        covering = next((element for element in found if element.covers(network)), None)
        if covering is not None:
            if self._outlived_by(covering, network, idempotency_key, ttl_seconds):
                return self._take_over(network, covering, idempotency_key, ttl_seconds)
            return self._already_blocked(network, covering, idempotency_key)
        if found:
            raise AdapterError(self._overlap_message(network, found))
        comment = owner_comment(idempotency_key)
        # `create`, so an element that appeared since our read makes nft refuse instead of silently updating its
        # timeout (`add` on an existing element does).
        elem = [self._element(network, comment, ttl_seconds)]
        create = {"create": {"element": self._base(name=self.set_name(network), elem=elem)}}
        try:
            self.nft.apply([create], f"block {show(network)}")
        except NftCommandError as exc:
            if "File exists" not in exc.stderr and "overlaps" not in exc.stderr:
                raise
            raise ElementChanged(exc) from None
        return self._blocked(network, comment, ttl_seconds)

    @staticmethod
    def _element(network: IPNetwork, comment: str, ttl_seconds: int | None) -> dict[str, Any]:
        element: dict[str, Any] = {"val": prefix_value(network), "comment": comment}
        if ttl_seconds:
            element["timeout"] = ttl_seconds
        return {"elem": element}

    @staticmethod
    def _for(ttl_seconds: int | None) -> str:
        return f"for {ttl_seconds} s (nftables expires it)" if ttl_seconds else "with no expiry"

    @staticmethod
    def _outlived_by(element: SetElement, network: IPNetwork, idempotency_key: str, ttl_seconds: int | None) -> bool:
        """Whether this request needs the block longer than `element` will hold it, so it should own it.

        Only an exact element (never a wider network: its other addresses are not ours to extend or lift), not
        our own (a retried execute must not stretch its block), and only one that expires by itself (one without
        expiry is an operator's or an explicit permanent block: it outlasts any need). `expires` is nft's
        countdown in whole seconds, rounded down: a tie at equal TTLs goes to the later request, which is right."""
        if not element.exactly(network) or element.comment == owner_comment(idempotency_key):
            return False
        if element.timeout is None or element.expires is None:
            return False
        return not ttl_seconds or element.expires < ttl_seconds

    def _take_over(
        self, network: IPNetwork, element: SetElement, idempotency_key: str, ttl_seconds: int | None
    ) -> ActionOutcome:
        """Replace `element` by ours, with our comment and timeout, in one batch: there is no moment without the
        block, and a delete of an element that no longer exists (expired, lifted by hand) fails the batch whole,
        so a changed element is never half-replaced (ElementChanged: the caller reads and decides again)."""
        comment = owner_comment(idempotency_key)
        set_name = self.set_name(network)
        batch = [
            {"delete": {"element": self._base(name=set_name, elem=[element.val])}},
            {"create": {"element": self._base(name=set_name, elem=[self._element(network, comment, ttl_seconds)])}},
        ]
        try:
            self.nft.apply(batch, f"take over the block of {show(network)}")
        except NftCommandError as exc:
            if not any(marker in exc.stderr for marker in CHANGED_MARKERS):
                raise
            raise ElementChanged(exc) from None
        previous = whose(element.comment, idempotency_key)
        return self._blocked(
            network,
            comment,
            ttl_seconds,
            f", taking the element over from {previous}, which would have expired in {element.expires} s: that "
            "owner's revert now leaves it in place",
            took_over_from=element.evidence(),
        )

    def _blocked(
        self, network: IPNetwork, comment: str, ttl_seconds: int | None, how: str = "", **evidence: Any
    ) -> ActionOutcome:
        """DONE: `network` is blocked by an element this request owns, created now or taken over."""
        set_name = self.set_name(network)
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"blocked {show(network)} in {set_name} ({where(self.config.netns)}) {self._for(ttl_seconds)}{how}",
            reference=f"{FAMILY} {self.config.table} {set_name} {show(network)}",
            evidence={
                **self._evidence(network),
                **{"element": show(network), "comment": comment, "timeout": ttl_seconds, "mine": True},
                **evidence,
            },
        )

    def _already_blocked(self, network: IPNetwork, element: SetElement, idempotency_key: str) -> ActionOutcome:
        inside = "" if element.exactly(network) else f" (inside {element.label})"
        expiry = f"expires in {element.expires} s" if element.expires is not None else "no expiry"
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"{show(network)} is already blocked{inside} by {whose(element.comment, idempotency_key)}; "
            f"{expiry}; nothing added",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {element.label}",
            evidence={**self._evidence(network), **element.evidence(), "mine": self._mine(element, idempotency_key)},
        )

    @staticmethod
    def _mine(element: SetElement, idempotency_key: str) -> bool:
        """Whether this key added the element: a revert or compensation may want to leave others' alone."""
        return element.comment == owner_comment(idempotency_key)

    def _overlap_message(self, network: IPNetwork, found: list[SetElement]) -> str:
        """nft's interval sets refuse overlapping elements; say which ones, rather than merging other owners'."""
        listed = ", ".join(element.describe() for element in found)
        return (
            f"cannot block {show(network)}: it overlaps {listed} in {self.set_name(network)} "
            f"({where(self.config.netns)}); unblock those first or block them and the rest separately"
        )

    def unblock(self, network: IPNetwork, idempotency_key: str, undo: Undo | None = None) -> ActionOutcome:
        """Remove exactly `network`'s element; an address still matched by another element is refused.

        Run as an undo (`undo`: a TTL revert or a compensation, from the request's purpose and undoes), it
        removes only the element the undone block created: one that another incident took over since, or that
        somebody else added, is left in place (ALREADY_DONE, `left_in_place`), because that owner still needs it
        and lifts it itself. Run as an action of its own (`undo` None: a person's or a plan's explicit unblock,
        guarded and maybe approved as such), it removes the element whoever owns it: lifting the block is then
        the decision, and the outcome names the owner it overrode."""
        with self.serialized():
            state = self.read()
            found = self.matching(state, network)
            if not found:
                return ActionOutcome(
                    status=ActionStatus.ALREADY_DONE,
                    detail=f"{show(network)} is not in the blocklist ({where(self.config.netns)}): "
                    "expired or never blocked",
                    reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {show(network)}",
                    evidence={**self._evidence(network), "table_present": state is not None},
                )
            if undo is not None and not any(
                element.exactly(network) and undo.created(element.comment) for element in found
            ):
                return self._left_in_place(network, found, undo)
            others = [element for element in found if not element.exactly(network)]
            if others:
                listed = ", ".join(element.describe() for element in others)
                raise AdapterError(
                    f"cannot unblock {show(network)} alone: {listed} still matches it; "
                    "unblock that by its own address or network"
                )
            element = found[0]
            delete = {"delete": {"element": self._base(name=self.set_name(network), elem=[element.val])}}
            try:
                self.nft.apply([delete], f"unblock {show(network)}")
            except NftCommandError as exc:
                if "does not exist" not in exc.stderr and "No such file" not in exc.stderr:
                    raise
                return ActionOutcome(
                    status=ActionStatus.ALREADY_DONE,
                    detail=f"{show(network)} expired from the blocklist while being unblocked",
                    evidence=self._evidence(network),
                )
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"unblocked {show(network)} ({where(self.config.netns)}): removed {element.describe()}",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {show(network)}",
            evidence={**self._evidence(network), "removed": element.evidence()},
        )

    def _left_in_place(self, network: IPNetwork, found: list[SetElement], undo: Undo) -> ActionOutcome:
        """An undo that finds the address blocked by an element that is not the undone block's own."""
        holder = next((element for element in found if element.exactly(network)), found[0])
        who = f"incident/key {holder.comment!r}" if holder.comment else "an element added outside the controller"
        if holder.expires is not None:
            why = f"{who} took it over (or blocked it since) and lifts it at its own TTL ({holder.expires} s left)"
        else:
            why = f"{who} holds it with no expiry, and an undo never lifts someone else's block"
        inside = "" if holder.exactly(network) else f" (inside {holder.label})"
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"left {show(network)}{inside} in place: {why}; {undo.missing('element')}",
            reference=f"{FAMILY} {self.config.table} {self.set_name(network)} {holder.label}",
            evidence={
                **self._evidence(network),
                "left_in_place": True,
                "owner": holder.comment,
                "undoes": undo.comment,
                "holder": holder.evidence(),
            },
        )
