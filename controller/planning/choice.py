"""Which planner makes an incident's plan: Claude when configured, else the offline playbooks.

One home for the choice, so `autonomy evaluate` and the workflow's plan activity agree on it, including what
happens when Claude fails: the incident's level says (`planner_fallback`: the offline playbooks, or hold the
incident for a person).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.models import ControllerTriage, ImpactSummary, Incident, Plan, verdict_of
from autonomy_controller.controller.planning.offline import OfflinePlanner
from autonomy_controller.controller.triage import TriageFactor

if TYPE_CHECKING:  # the anthropic SDK loads only when Claude is configured (CLI start-up: bench/cli_startup.py)
    from autonomy_controller.controller.planning.claude import ClaudePlanner, ClaudeResult


@dataclass(frozen=True)
class PlanChoice:
    plan: Plan
    claude: ClaudeResult | None = None
    """What Claude said, when it was asked: outcome, reason, usage and the transcript for the ledger."""


def planner_fallback(guard: Guard | UnavailableGuard, incident: Incident) -> Literal["offline", "hold"]:
    """The incident's level's rule for a failed LLM planner; without a guard, hold for a person."""
    if not isinstance(guard, Guard):
        return "hold"
    levels = guard.bundle.levels
    return levels.levels[guard.incident_resolution(guard.facts(incident)).effective].planner_fallback


def make_plan(
    guard: Guard | UnavailableGuard,
    incident: Incident,
    offline: OfflinePlanner,
    claude: ClaudePlanner | None,
    triage: ControllerTriage | None = None,
    factors: Sequence[TriageFactor] = (),
    impact: ImpactSummary | None = None,
) -> PlanChoice:
    """Plan an (enriched) incident. A hold is an empty plan whose `hold_reason` says why.

    `triage` is the controller's: its summary (what the guard will decide on) and `factors` the triage's
    factors, both told to Claude; playbooks match on the verdict. A bare verdict still works (callers
    without the summary), but then Claude is not told the controller's triage.
    """
    if claude is None:
        return PlanChoice(offline.plan(incident, verdict_of(triage), impact.verdict if impact else None))
    result = claude.plan(incident, fallback=planner_fallback(guard, incident), triage=triage, factors=factors)
    plan = result.plan
    if result.outcome == "hold":
        plan = plan.model_copy(update={"hold_reason": result.reason or "the LLM planner gave no usable plan"})
    return PlanChoice(plan, result)
