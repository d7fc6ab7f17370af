"""A case over time: when a growing case is decided again, and which of a new round's actions are already in hand.

One attacker is one case (controller/case/grouping.py), so a case that began with one stray WAF hit may, a minute
later, hold a tool's hundred payloads. The workflow decides a case again when its evidence has grown enough to
change the answer (twice the alerts, or an attack category it did not have), at most `MAX_ROUNDS` times. A new
round proposes the whole response again; what an earlier round already holds is not proposed twice:

- an effect in place (executing, verified, waiting for its revert) that lasts at least as long as asked;
- an action a person rejected: a person said no to it for this case, and a machine round must not overrule
  that (the person can still act by hand);
- an action in shadow mode: it would only be recorded again.

An earlier action still waiting for approval is not in hand: the new round's decision on the same effect, made
on more evidence, replaces it (the workflow ends the wait as superseded). Everything else (denied, timed out,
failed, reverted) is decided again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from autonomy_controller.actions.registry import UnknownActionError, get_spec
from autonomy_controller.controller.models import Category, ProposedAction, stage_rank

MAX_ROUNDS = 8
"""Decisions per case: with doubling evidence, 8 rounds reach 128 times the first round's alerts."""
GROWTH = 2
"""A new round when the case holds this many times the alerts it was last decided on."""
ESCALATES_FROM = stage_rank("exploitation_attempt")
"""A stage rise decides the case again once it reaches exploitation (recon alone changes no plan)."""

LIVE = frozenset({"executing", "verified", "awaiting_revert"})
KEPT = frozenset({"rejected", "shadow"})


class InHand(BaseModel):
    """An earlier round's action as a new round's planning sees it."""

    action_id: str
    action: str
    target: str | None = None
    ttl_seconds: int | None = Field(default=None, description="None on a live effect: it holds until undone")
    status: str


def effect_key(action: str, params: dict[str, object]) -> tuple[str, str | None]:
    """What an action does to what: its name and its target's value (None for a ticket or a message, of which
    a case has one). An action the registry does not know has no target (the guard refuses it anyway)."""
    try:
        target = get_spec(action).target_param
    except UnknownActionError:
        return action, None
    value = params.get(target) if target else None
    return action, None if value is None else str(value)


def ttl_of(params: dict[str, object]) -> int | None:
    ttl = params.get("ttl_seconds")
    return ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None


def due(
    alerts_now: int,
    categories_now: Iterable[Category],
    decided: tuple[int, frozenset[Category]],
    rounds: int,
    stage: tuple[int, int] = (0, 0),
) -> bool:
    """Whether the case's evidence grew enough since its last decision to decide it again. `stage` is the
    kill-chain stage rank (controller/attackers) the case was decided at and holds now: an attacker reaching
    exploitation or possible success is due a stronger answer without doubling its alerts."""
    alerts_then, categories_then = decided
    if rounds >= MAX_ROUNDS or alerts_now <= alerts_then:
        return False
    stage_then, stage_now = stage
    if stage_now > stage_then and stage_now >= ESCALATES_FROM:
        return True
    return alerts_now >= GROWTH * alerts_then or not set(categories_now) <= categories_then


def holding(earlier: InHand, action: ProposedAction) -> bool:
    """Whether an earlier round's action already covers this proposal (see the module docstring)."""
    if (earlier.action, earlier.target) != effect_key(action.action, action.params):
        return False
    if earlier.status in KEPT:
        return True
    if earlier.status not in LIVE:
        return False
    wanted = ttl_of(action.params)
    return earlier.ttl_seconds is None or (wanted is not None and wanted <= earlier.ttl_seconds)


def split_in_hand(
    actions: Sequence[ProposedAction], in_hand: Sequence[InHand]
) -> tuple[list[ProposedAction], list[dict[str, str]]]:
    """The proposals still to decide, and a note per proposal an earlier action holds (for the plan record)."""
    fresh: list[ProposedAction] = []
    notes: list[dict[str, str]] = []
    for action in actions:
        holder = next((e for e in reversed(in_hand) if holding(e, action)), None)
        if holder is None:
            fresh.append(action)
        else:
            notes.append({"action": action.action, "held_by": holder.action_id, "status": holder.status})
    return fresh, notes
