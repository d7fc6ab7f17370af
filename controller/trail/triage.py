"""The triage behind a decision: what the policy was given (the DECISION record's `triage`) and the factors
that made it (the PLAN record's `triage_detail`), each line citing the record it reads.

A level's triage bar decides whether containment runs alone, so an auditor asking "why did this run" needs the
verdict and confidence the policy weighed, who lowered it, and every factor with its trust (sensor, ledger,
people, or the request's own text, which may only raise a score).
"""

from __future__ import annotations

from typing import Any

from autonomy_controller.controller.ledger import LedgerRecord
from autonomy_controller.controller.oversight.trail.model import Fact, Grid, Mark, Tone, ledger_cite
from autonomy_controller.controller.oversight.trail.runs import ActionContext
from autonomy_controller.controller.render import triage_view

TRIAGE_TONES = {"malicious": Tone.BAD, "suspicious": Tone.WARN, "noise": Tone.INFO}


def _plan_triage(plan: LedgerRecord | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The plan record's full triage and its summary, where it holds them."""
    if plan is None:
        return None, None
    detail, summary = plan.payload.get("triage_detail"), plan.payload.get("triage")
    return (detail if isinstance(detail, dict) else None), (summary if isinstance(summary, dict) else None)


def triage_facts(ctx: ActionContext, decision: LedgerRecord) -> tuple[list[Fact], Grid | None]:
    """Facts for the decision step, and the factor table when the plan record holds the factors."""
    given, cite = decision.payload.get("triage"), [ledger_cite(decision.seq)]
    if not isinstance(given, dict):
        return [
            Fact(
                text="triage given to the policy: none, so no level's triage bar was met (a person looks)",
                marks=[Mark(text="no triage", tone=Tone.WARN)],
                cites=cite,
            )
        ], None
    verdict = str(given.get("verdict"))
    facts = [
        Fact(
            text=f"triage given to the policy: {triage_view.verdict_text(given)}, "
            f"model revision {given.get('model_revision') or '-'}",
            marks=[Mark(text=f"triage {verdict}", tone=TRIAGE_TONES.get(verdict, Tone.INFO))],
            cites=cite,
        )
    ]
    plan = ctx.run.plan
    detail, summary = _plan_triage(plan)
    plan_cite = [ledger_cite(plan.seq)] if plan else []
    lowered = triage_view.lowered_text(given)
    if lowered:
        facts.append(Fact(text=lowered, marks=[Mark(text="lowered by the planner", tone=Tone.WARN)], cites=cite))
        own = plan.payload.get("planner_triage") if plan else None
        if isinstance(own, dict):
            facts.append(
                Fact(
                    text=f"the planner's own triage: {triage_view.verdict_text(own)}; rationale (its words)",
                    code=str(own.get("rationale") or ""),
                    cites=plan_cite,
                )
            )
    facts.append(
        Fact(text=f"ATT&CK techniques: {triage_view.techniques_text(detail or given)}", cites=plan_cite or cite)
    )
    if summary is not None and not _matches_plan(summary, given):
        facts.append(
            Fact(
                text=f"the plan's triage reads {triage_view.verdict_text(summary)}, not what the decision says the "
                "controller gave",
                marks=[Mark(text="differs from the plan", tone=Tone.BAD)],
                cites=[*plan_cite, *cite],
            )
        )
    if detail is None:
        facts.append(
            Fact(
                text="the plan record holds no triage factors",
                marks=[Mark(text="factors missing", tone=Tone.WARN)],
                cites=plan_cite,
            )
        )
        return facts, None
    evidence = triage_view.evidence_text(detail)
    facts.append(
        Fact(
            text=f"triage score {detail.get('score')} from {len(detail.get('factors') or [])} factors"
            + (f"; evidence: {evidence}" if evidence else ""),
            cites=plan_cite,
        )
    )
    differs = triage_view.guard_differs(detail, summary) if summary is not None and not lowered else None
    if differs:
        facts.append(Fact(text=differs, cites=plan_cite))
    grid = Grid(
        headers=triage_view.FACTOR_HEADERS, rows=triage_view.factor_rows(detail), numeric=triage_view.FACTOR_NUMERIC
    )
    return facts, grid


def _matches_plan(summary: dict[str, Any], given: dict[str, Any]) -> bool:
    """Whether the decision's triage is the plan's (the controller's), allowing for a planner's lowering, which
    keeps the controller's verdict in `controller_verdict` (its confidence is not kept: only the verdict is
    compared then)."""
    if given.get("lowered_by"):
        return summary.get("verdict") == given.get("controller_verdict")
    return (summary.get("verdict"), summary.get("confidence")) == (given.get("verdict"), given.get("confidence"))
