"""The steps up to the decision to act: alert evidence, proposal, risk, policy decision, approvals, pre-flight.

Each reads the action's ledger records and, when the run's history is at hand, adds how Temporal saw the same
step (the planning activity, the guard's local activity, the vote updates) and notes any disagreement.
"""

from __future__ import annotations

from collections.abc import Mapping

from autonomy_controller.controller.approver_keys import Ballot, RefusalCode, TokenRefused, verify_token
from autonomy_controller.controller.ledger import LedgerRecord, RecordKind
from autonomy_controller.controller.models import Provenance
from autonomy_controller.controller.oversight.trail.history import Update
from autonomy_controller.controller.oversight.trail.impact import impact_facts
from autonomy_controller.controller.oversight.trail.model import (
    STEP_TITLES,
    Cite,
    Fact,
    Grid,
    Mark,
    Step,
    StepKind,
    Tone,
    ledger_cite,
)
from autonomy_controller.controller.oversight.trail.runs import (
    MAX_ALERTS_SHOWN,
    SETTLEMENTS,
    VERDICT_TONES,
    ActionContext,
    activity_facts,
    as_json,
    duration,
    snippet,
    when,
)
from autonomy_controller.controller.oversight.trail.triage import triage_facts


def _planner_saw(ctx: ActionContext, alerts_by_id: Mapping[str, LedgerRecord]) -> tuple[list[LedgerRecord], Fact]:
    """The alerts behind the plan: exactly those in the planning activity's input when the history has it, else
    (ledger alone) those recorded before the run's plan, which is an inference and says so."""
    planned = ctx.history.planning(ctx.round) if ctx.history else None
    incident = planned.input if planned and isinstance(planned.input, Mapping) else {}
    if planned is not None and planned.name == "plan_round":
        incident = incident.get("incident") or {}
    given = incident.get("alerts") if isinstance(incident, Mapping) else None
    if planned is None or not isinstance(given, list):
        why = "no workflow history to say which the planner saw" if ctx.history is None else "not in the history"
        return ctx.run.alerts, Fact(
            text=f"which alerts: those recorded before this run's plan ({why})",
            marks=[Mark(text="inferred", tone=Tone.WARN)],
        )
    ids = [str(a.get("id")) for a in given if isinstance(a, Mapping)]
    for missing in [i for i in ids if i not in alerts_by_id]:
        ctx.disagree(f"the planner saw alert {missing}, which the ledger does not hold", *ctx.h(planned.scheduled))
    fact = Fact(
        text=f"which alerts: the {len(ids)} in the planner's input ({planned.name}, decision round {ctx.round})",
        cites=ctx.h(planned.scheduled),
    )
    return [alerts_by_id[i] for i in ids if i in alerts_by_id], fact


def _provenance_facts(alerts: list[LedgerRecord]) -> list[Fact]:
    """Who vouched for the alerts, when not every one came from a sensor's own format (docs/sensors.md,
    "Provenance"): a claim's facts were not read, a trusted feed's were on the operator's word."""
    facts = []
    for value, said in (
        (Provenance.CLAIM, "are claims (our Alert JSON no sensor vouched for): triage read none of their facts"),
        (Provenance.TRUSTED_FEED, "came from a trusted native feed: read as the sensor's facts on the operator's word"),
    ):
        found = [a for a in alerts if a.payload.get("provenance", Provenance.CLAIM.value) == value.value]
        if found:
            named = ", ".join(sorted({str(a.payload.get("source")) for a in found}))
            cites = [ledger_cite(a.seq) for a in found[:MAX_ALERTS_SHOWN]]
            facts.append(Fact(text=f"{len(found)} of them {said} (source {named})", cites=cites))
    return facts


def evidence_step(ctx: ActionContext, alerts_by_id: Mapping[str, LedgerRecord]) -> Step:
    """The alerts the action answers: the first thing "why did this run" must point at."""
    alerts, which = _planner_saw(ctx, alerts_by_id)
    payloads = [a.payload for a in alerts]
    rules = sorted({str(r) for p in payloads for r in p.get("rule_ids") or []})
    categories = sorted({str(p.get("category")) for p in payloads})
    sources = sorted({str(p.get("src_ip") or p.get("asset") or p.get("user") or "-") for p in payloads})
    ctx.evidence = (
        f"{len(alerts)} {'/'.join(categories) or '?'} alert(s) from {', '.join(sources) or '-'} "
        f"(rules {', '.join(rules) or '-'})"
    )
    blocked = "; the sensor blocked every one" if payloads and all(p.get("blocked") for p in payloads) else ""
    shown = alerts[:MAX_ALERTS_SHOWN]
    facts = [Fact(text=ctx.evidence + blocked, cites=[ledger_cite(a.seq) for a in shown]), which]
    facts.extend(_provenance_facts(alerts))
    if len(alerts) > len(shown):
        rest = alerts[len(shown) :]
        facts.append(Fact(text=f"{len(rest)} more alert(s) not listed: ledger seqs {rest[0].seq} to {rest[-1].seq}"))
    rows = [
        [
            str(r.seq),
            str(r.payload.get("id")),
            f"{r.payload.get('category')} {r.payload.get('severity')} {r.payload.get('confidence')}",
            f"{r.payload.get('src_ip') or '-'} → {r.payload.get('dst_ip') or r.payload.get('asset') or '-'}",
            ", ".join(map(str, r.payload.get("rule_ids") or [])) or "-",
            str(r.payload.get("observed_at")),
            snippet(r.payload.get("evidence")) or "-",
        ]
        for r in shown
    ]
    grid = Grid(
        headers=[
            "ledger seq",
            "alert",
            "category, severity, confidence",
            "from → to",
            "rules",
            "observed",
            "evidence",
        ],
        rows=rows,
        numeric=[0],
    )
    return Step(kind=StepKind.EVIDENCE, title=STEP_TITLES[StepKind.EVIDENCE], facts=facts, grid=grid)


def proposal_step(ctx: ActionContext) -> Step:
    """Who proposed the action and how (playbook or model, prompt hash, transcript): the proposer is never
    the one who may approve it, so the trail names it."""
    plan, proposed = ctx.plan(), ctx.proposed()
    step = Step(kind=StepKind.PROPOSAL, title=STEP_TITLES[StepKind.PROPOSAL], at=plan.created_at if plan else None)
    if plan is None:
        step.facts.append(
            Fact(text="the ledger holds no plan for this run", marks=[Mark(text="NO PLAN", tone=Tone.BAD)])
        )
        return step
    p, cite = plan.payload, [ledger_cite(plan.seq)]
    made = [f"mode {p.get('mode', 'select')}"]
    made += [f"playbook {p['playbook']}"] if p.get("playbook") else []
    made += [f"model {p['model']}"] if p.get("model") else []
    step.facts.append(
        Fact(
            text=f"{proposed.get('action', '?')} proposed by planner {p.get('planner')} ({', '.join(made)}), "
            f"confidence {proposed.get('confidence', '-')}",
            cites=cite,
        )
    )
    step.facts.append(Fact(text="params", code=as_json(proposed.get("params", {})), cites=cite))
    if proposed.get("rationale"):
        step.facts.append(Fact(text="rationale (the planner's words)", code=str(proposed["rationale"]), cites=cite))
    if p.get("prompt_hash"):
        step.facts.append(Fact(text=f"prompt hash {p['prompt_hash']}", cites=cite))
    transcript = p.get("transcript_seq") or (ctx.run.transcript.seq if ctx.run.transcript else None)
    if transcript:
        step.facts.append(Fact(text="LLM request and response kept in the ledger", cites=[ledger_cite(transcript)]))
    if p.get("planner_outcome"):
        why = "; ".join(str(p[k]) for k in ("planner_reason", "planner_error") if p.get(k))
        step.facts.append(
            Fact(text=f"planner outcome: {p['planner_outcome']}" + (f" ({why})" if why else ""), cites=cite)
        )
    if ctx.history is not None:
        planned = ctx.history.planning(ctx.round)
        if planned is None:
            ctx.disagree(
                f"the ledger holds this run's plan (round {ctx.round}), but the history never planned it", *cite
            )
        else:
            step.facts += activity_facts(ctx, planned, "planning")
    return step


def risk_step(ctx: ActionContext, decision: LedgerRecord) -> Step:
    """The score the policy weighed, factor by factor, so a reader can see which factor tipped the verdict."""
    risk = decision.payload.get("risk")
    step = Step(kind=StepKind.RISK, title=STEP_TITLES[StepKind.RISK], at=decision.created_at)
    if not risk:
        step.facts.append(Fact(text="not scored (denied before scoring)", cites=[ledger_cite(decision.seq)]))
        return step
    score = float(risk.get("score", 0))
    tone = Tone.BAD if score >= 60 else Tone.WARN if score >= 30 else Tone.OK
    step.marks.append(Mark(text=f"risk {score:g}", tone=tone))
    step.facts.append(
        Fact(
            text=f"risk score {score:g} of 100, from {len(risk.get('factors', []))} factors",
            cites=[ledger_cite(decision.seq)],
        )
    )
    step.grid = Grid(
        headers=["factor", "value", "weight", "points", "why"],
        rows=[
            [
                str(f.get("name")),
                f"{f.get('value')}",
                f"{f.get('weight')}",
                f"{f.get('contribution')}",
                str(f.get("why")),
            ]
            for f in risk.get("factors", [])
        ],
        numeric=[1, 2, 3],
    )
    return step


def decision_step(
    ctx: ActionContext, decision: LedgerRecord, alerts_by_id: Mapping[str, LedgerRecord] | None = None
) -> Step:
    """The verdict tied to the policy revision it was made under, the level (with why it was lowered), the
    triage the policy weighed with the factors behind it (controller/oversight/trail/triage.py), and the impact verdict
    with its evidence (controller/oversight/trail/impact.py)."""
    p, cite = decision.payload, [ledger_cite(decision.seq)]
    policy = p.get("policy") or {}
    verdict = str(p.get("verdict"))
    step = Step(kind=StepKind.DECISION, title=STEP_TITLES[StepKind.DECISION], at=decision.created_at)
    step.marks.append(Mark(text=verdict, tone=VERDICT_TONES.get(verdict, Tone.INFO)))
    if p.get("shadow"):
        step.marks.append(Mark(text="shadow: recorded, never run", tone=Tone.INFO))
    level = f"verdict {verdict} at effective level {p.get('effective_level')} (declared {p.get('declared_level')}"
    level += f", scope {p['scope']})" if p.get("scope") else ")"
    step.facts.append(Fact(text=level, cites=cite))
    if p.get("level_reasons"):
        step.facts.append(Fact(text="level lowered because: " + "; ".join(map(str, p["level_reasons"])), cites=cite))
    step.facts += [Fact(text=f"reason: {reason}", cites=cite) for reason in p.get("reasons", [])]
    triage, step.grid = triage_facts(ctx, decision)
    step.facts += triage
    step.facts += impact_facts(ctx, alerts_by_id or {})
    if p.get("error"):
        step.facts.append(Fact(text="guard failed, so everything was denied", code=str(p["error"]), cites=cite))
    step.facts.append(
        Fact(
            text=f"policy revision {p.get('policy_revision') or '-'}, engine {policy.get('engine', '-')}, "
            f"decision id {policy.get('decision_id', '-')}",
            cites=cite,
        )
    )
    if policy.get("approver_groups") or policy.get("quorum"):
        needs = [f"{r.get('quorum')} from {r.get('group')}" for r in policy.get("approval_requirements", [])]
        groups = ", ".join(policy.get("approver_groups", [])) or "-"
        step.facts.append(
            Fact(
                text=f"approvers: {groups}, quorum {policy.get('quorum', 0)}"
                + (f" ({'; '.join(needs)})" if needs else ""),
                cites=cite,
            )
        )
    if p.get("proposer"):
        step.facts.append(Fact(text=f"proposer {p['proposer']} (can never approve its own proposal)", cites=cite))
    for trial in p.get("trials", []):
        step.facts.append(
            Fact(
                text=f"shadow trial: at {trial.get('level')} (scope {trial.get('scope')}) it would have been "
                f"{trial.get('verdict')}",
                cites=cite,
            )
        )
    _join_guard(ctx, step, verdict, cite)
    return step


def _join_guard(ctx: ActionContext, step: Step, verdict: str, cite: list[Cite]) -> None:
    if ctx.history is None:
        return
    for marker in (m for m in ctx.history.local if m.name == "guard_plan"):
        items = marker.result if isinstance(marker.result, list) else []
        guarded = next((g for g in items if (g.get("action") or {}).get("id") == ctx.action_id), None)
        if guarded is None:
            continue
        seen = (guarded.get("decision") or {}).get("verdict")
        step.facts.append(
            Fact(
                text=f"Temporal: guard_plan (local activity, attempt {marker.attempt}) returned {seen}",
                cites=ctx.h(marker.marker),
            )
        )
        if seen != verdict:
            ctx.disagree(
                f"the ledger's verdict is {verdict}, the history's guard_plan returned {seen}",
                *cite,
                *ctx.h(marker.marker),
            )
        return
    ctx.disagree("the ledger holds a decision the history's guard_plan never returned", *cite)


def _vote_fact(ctx: ActionContext, record: LedgerRecord, updates: list[Update], markers: Mapping[int, int]) -> Fact:
    p = record.payload
    signed = bool(p.get("signed"))
    marks = [Mark(text="signed", tone=Tone.OK) if signed else Mark(text="UNSIGNED", tone=Tone.BAD)]
    if p.get("key_id"):
        marks.append(Mark(text=f"key {p['key_id']}", tone=Tone.INFO))
    comment = f', comment "{p["comment"]}"' if p.get("comment") else ""
    fact = Fact(
        text=f"{p.get('approver')} voted {p.get('choice')} at {when(record.created_at)}"
        + ("" if signed else " (no verified signed token: the identity is as typed)")
        + comment
        + (_recheck(ctx, record) if signed else ""),
        marks=marks,
        cites=[ledger_cite(record.seq)],
    )
    if ctx.history is None:
        return fact
    update = next((u for u in updates if (u.args or {}).get("approver") == p.get("approver")), None)
    if update is None:
        ctx.disagree(
            f"the ledger holds a vote by {p.get('approver')} that Temporal never accepted", ledger_cite(record.seq)
        )
        return fact
    fact.cites += ctx.h(update.accepted) + ctx.h(update.completed) + ctx.h(markers.get(record.seq))
    seen = update.args or {}
    seen_signed = bool(seen.get("token") or seen.get("signed"))  # `signed` in histories before the worker verified
    token_differs = signed and seen.get("token") is not None and seen.get("token") != p.get("token")
    if seen.get("choice") != p.get("choice") or seen_signed != signed or token_differs:
        ctx.disagree(
            f"{p.get('approver')}'s vote reads {p.get('choice')}/{'signed' if signed else 'unsigned'} in the ledger "
            f"but {seen.get('choice')}/{'signed' if seen_signed else 'unsigned'} in the history"
            + (" with another token" if token_differs else ""),
            ledger_cite(record.seq),
            *ctx.h(update.accepted),
        )
    return fact


def _recheck(ctx: ActionContext, record: LedgerRecord) -> str:
    """Re-verify a signed vote's stored token with today's keys, as of when it was recorded.

    The worker verified it then; re-checking lets an auditor trust the signature rather than the record's word.
    A key removed since (rotated or revoked) cannot re-verify: said, not flagged. A bad signature is flagged.
    """
    p = record.payload
    if ctx.keys is None:
        return "; signature not re-checked (no keys config given)"
    token = p.get("token")
    if not isinstance(token, str):
        ctx.disagree("the ledger says the vote was signed but holds no token to re-check", ledger_cite(record.seq))
        return "; no token stored to re-check"
    ballot = Ballot(ctx.incident_key, ctx.run_id, ctx.action_id, str(p.get("choice")), str(p.get("approver")))
    try:
        checked = verify_token(ctx.keys, token, ballot, record.created_at)
    except TokenRefused as exc:
        if exc.code in (RefusalCode.UNKNOWN_KEY, RefusalCode.UNKNOWN_APPROVER):
            return f"; signature not re-checked: {exc}"
        ctx.disagree(f"the stored token does not re-verify: {exc}", ledger_cite(record.seq))
        return f"; signature re-check FAILED: {exc}"
    return f"; signature re-verified now with {checked.approver}'s key {checked.key_id}"


def approval_step(ctx: ActionContext, decision: LedgerRecord | None) -> Step | None:
    """Every vote (refused ones too), the settlement and how long it took; an unsigned vote is marked as
    such, because its identity is only what the voter typed."""
    records = ctx.of(RecordKind.APPROVAL)
    verdict = decision.payload.get("verdict") if decision else None
    if not records and verdict != "approve":
        return None
    step = Step(
        kind=StepKind.APPROVAL, title=STEP_TITLES[StepKind.APPROVAL], at=records[0].created_at if records else None
    )
    updates = (
        [u for u in ctx.history.updates if u.name == "vote" and (u.args or {}).get("action_id") == ctx.action_id]
        if ctx.history
        else []
    )
    markers = ctx.history.cited_seqs() if ctx.history else {}
    for record in records:
        p = record.payload
        event = str(p.get("event"))
        if event == "vote":
            step.facts.append(_vote_fact(ctx, record, updates, markers))
        elif event == "vote_refused":
            # The service's own refusals (controller/service/refusals.py) name their channel; the workflow's do not.
            who = (
                f"the {p['channel']} refused it before any workflow saw it"
                if p.get("channel")
                else ("the workflow's validator refused it")
            )
            step.facts.append(
                Fact(
                    text=f"{p.get('approver')} tried to vote {p.get('choice')} at {when(record.created_at)}: refused "
                    f"({p.get('detail')}); {who}, so Temporal's history has no event for it",
                    marks=[Mark(text="refused", tone=Tone.WARN)],
                    cites=[ledger_cite(record.seq)],
                )
            )
        else:
            step.facts.append(_settlement_fact(ctx, record, decision, markers))
    for update in updates:
        voter = (update.args or {}).get("approver")
        if not any(r.payload.get("event") == "vote" and r.payload.get("approver") == voter for r in records):
            ctx.disagree(f"Temporal accepted a vote by {voter} that the ledger does not hold", *ctx.h(update.accepted))
    if not any(r.payload.get("event") in SETTLEMENTS for r in records):
        step.marks.append(Mark(text="not settled", tone=Tone.WARN))
        step.facts.append(Fact(text="no settlement recorded: awaiting approval (or the run ended first)"))
    return step


def _settlement_fact(
    ctx: ActionContext, record: LedgerRecord, decision: LedgerRecord | None, markers: Mapping[int, int]
) -> Fact:
    p = record.payload
    event = str(p.get("event"))
    tone = {"approved": Tone.OK, "veto_window_passed": Tone.WARN, "escalated": Tone.WARN}.get(event, Tone.BAD)
    text = f"{event.replace('_', ' ')}: {p.get('detail')}"
    cites = [ledger_cite(record.seq), *ctx.h(markers.get(record.seq))]
    if event in SETTLEMENTS and decision is not None:
        waited = (record.created_at - decision.created_at).total_seconds()
        text += f"; settled {duration(waited)} after the decision (ledger seq {decision.seq})"
    return Fact(text=text, marks=[Mark(text=event.replace("_", " "), tone=tone)], cites=cites)


def _preflight_action(result: Mapping[str, object]) -> object:
    """The action a preflight marker's result is about: its own field, or (histories before it) its decision's."""
    decision = result.get("decision")
    return result.get("action_id") or (decision.get("action_id") if isinstance(decision, Mapping) else None)


def preflight_step(ctx: ActionContext) -> Step | None:
    """The re-decision just before running: what made it go (or hold) at that moment, not at decision time."""
    records = ctx.of(RecordKind.PREFLIGHT)
    if not records:
        return None
    record = records[-1]
    p, cite = record.payload, [ledger_cite(record.seq)]
    go = bool(p.get("go"))
    step = Step(kind=StepKind.PREFLIGHT, title=STEP_TITLES[StepKind.PREFLIGHT], at=record.created_at)
    step.marks.append(Mark(text="go", tone=Tone.OK) if go else Mark(text="held", tone=Tone.WARN))
    step.facts.append(Fact(text=("go: " if go else "held: ") + "; ".join(map(str, p.get("reasons", []))), cites=cite))
    fresh = p.get("decision") or {}
    if fresh:
        step.facts.append(
            Fact(
                text=f"re-decided just before running: {fresh.get('verdict')} at {fresh.get('effective_level')}, "
                f"policy revision {fresh.get('policy_revision') or '-'}",
                cites=cite,
            )
        )
    if ctx.history is not None:
        found = [
            m for m in ctx.history.local if m.name == "preflight" and _preflight_action(m.result or {}) == ctx.action_id
        ]
        if not found and fresh:
            ctx.disagree("the ledger holds a pre-flight check the history's preflight never returned", *cite)
        for marker in found:
            seen = bool((marker.result or {}).get("go"))
            step.facts.append(
                Fact(
                    text=f"Temporal: preflight (local activity, attempt {marker.attempt}) returned "
                    f"{'go' if seen else 'held'}",
                    cites=ctx.h(marker.marker),
                )
            )
            if seen != go:
                ctx.disagree(
                    "the ledger's pre-flight and the history's disagree on go/held", *cite, *ctx.h(marker.marker)
                )
    return step
