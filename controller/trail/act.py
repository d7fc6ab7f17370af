"""The steps after the decision: execution, verification, compensation and the TTL revert, the cross-check of
the action's ledger records against the history, and the action's final outcome."""

from __future__ import annotations

from datetime import timedelta

from autonomy_controller.controller.ledger import LedgerRecord, RecordKind
from autonomy_controller.controller.oversight.trail.model import (
    STEP_TITLES,
    Fact,
    Mark,
    Step,
    StepKind,
    Tone,
    ledger_cite,
)
from autonomy_controller.controller.oversight.trail.runs import (
    SETTLEMENTS,
    ActionContext,
    activity_facts,
    as_json,
    duration,
    when,
)

_PURPOSES = {RecordKind.EXECUTION: "execute", RecordKind.COMPENSATION: "compensate", RecordKind.REVERT: "revert"}


def _purpose_of(record: LedgerRecord) -> str | None:
    """execute, compensate or revert; a failure the workflow noted is an `execution` record whatever the
    purpose, which only its key's last step (`revert-error`...) tells."""
    if record.kind not in _PURPOSES:
        return None
    if "error" in record.payload:
        step = (record.idempotency_key or "").rsplit("/", 1)[-1]
        return step.removesuffix("-error") if step.endswith("-error") else "execute"
    return str((record.payload.get("request") or {}).get("purpose") or _PURPOSES[record.kind])


def _purpose_records(ctx: ActionContext, purpose: str) -> tuple[list[LedgerRecord], list[LedgerRecord]]:
    """The action records of one purpose (execute, compensate, revert): what ran, then its verifications."""
    ran = [r for r in ctx.records if _purpose_of(r) == purpose]
    verified = [r for r in ctx.of(RecordKind.VERIFICATION) if r.payload.get("purpose", "execute") == purpose]
    return ran, verified


def _ran_facts(ctx: ActionContext, purpose: str, records: list[LedgerRecord]) -> list[Fact]:
    facts: list[Fact] = []
    for record in records:
        p, cite = record.payload, [ledger_cite(record.seq)]
        if "error" in p:
            facts.append(
                Fact(
                    text=f"{purpose} failed after its retries at {when(record.created_at)}",
                    code=str(p["error"]),
                    marks=[Mark(text="FAILED", tone=Tone.BAD)],
                    cites=cite,
                )
            )
            continue
        request, outcome = p.get("request") or {}, p.get("outcome") or {}
        status = str(outcome.get("status"))
        tone = Tone.BAD if status == "failed" else Tone.OK
        reference = f", reference {outcome['reference']}" if outcome.get("reference") else ""
        facts.append(
            Fact(
                text=f"ran {request.get('action')} at {when(record.created_at)}: {status}: "
                f"{outcome.get('detail')}{reference}",
                marks=[Mark(text=status, tone=tone)],
                cites=cite,
            )
        )
        facts.append(Fact(text="params", code=as_json(request.get("params", {})), cites=cite))
        facts.append(Fact(text=f"idempotency key {request.get('idempotency_key')}", cites=cite))
        if (outcome.get("evidence") or {}).get("mine") is False:
            facts.append(
                Fact(text="the effect was already in place (another incident's): never undone from here", cites=cite)
            )
    if ctx.history is not None:
        for activity in ctx.history.activities_for("execute_action", ctx.action_id, purpose):
            facts += activity_facts(ctx, activity, purpose)
    return facts


def _verified_facts(ctx: ActionContext, purpose: str, records: list[LedgerRecord]) -> list[Fact]:
    facts = []
    for record in records:
        p = record.payload
        ok = bool(p.get("ok"))
        facts.append(
            Fact(
                text=f"checked {p.get('action')} at {when(record.created_at)}: {p.get('detail')}",
                marks=[Mark(text="verified" if ok else "VERIFICATION FAILED", tone=Tone.OK if ok else Tone.BAD)],
                cites=[ledger_cite(record.seq)],
            )
        )
    if ctx.history is not None:
        for activity in ctx.history.activities_for("verify_action", ctx.action_id, purpose):
            facts += activity_facts(ctx, activity, f"verify after {purpose}")
    return facts


def execution_steps(ctx: ActionContext) -> list[Step]:
    """What ran and whether it took effect, as two steps: an execution that "succeeded" is not yet a fact."""
    ran, verified = _purpose_records(ctx, "execute")
    steps = []
    ran_facts = _ran_facts(ctx, "execute", ran)
    if ran_facts:
        step = Step(
            kind=StepKind.EXECUTION, title=STEP_TITLES[StepKind.EXECUTION], at=ran[0].created_at if ran else None
        )
        step.facts = ran_facts
        step.marks = ran_facts[0].marks[:1]
        steps.append(step)
    verified_facts = _verified_facts(ctx, "execute", verified)
    if verified_facts:
        step = Step(
            kind=StepKind.VERIFICATION,
            title=STEP_TITLES[StepKind.VERIFICATION],
            at=verified[0].created_at if verified else None,
        )
        step.facts = verified_facts
        step.marks = verified_facts[0].marks[:1]
        steps.append(step)
    return steps


def undo_step(ctx: ActionContext, purpose: str, kind: StepKind) -> Step | None:
    """Compensation or TTL revert (with its timer): the undo is an action of its own, with its own evidence."""
    ran, verified = _purpose_records(ctx, purpose)
    facts = _ttl_facts(ctx) if purpose == "revert" else []
    facts += _ran_facts(ctx, purpose, ran) + _verified_facts(ctx, purpose, verified)
    if not ran and not verified and not any(f.cites for f in facts):
        return None
    step = Step(kind=kind, title=STEP_TITLES[kind], at=ran[0].created_at if ran else None, facts=facts)
    if verified:
        step.marks.append(_undo_mark(verified[-1]))
    return step


def _undo_mark(record: LedgerRecord) -> Mark:
    ok = bool(record.payload.get("ok"))
    return Mark(text="undone and verified" if ok else "UNDO NOT VERIFIED", tone=Tone.OK if ok else Tone.BAD)


def _ttl_facts(ctx: ActionContext) -> list[Fact]:
    """The durable timer that holds a reversible action until its TTL: started by the workflow task that
    learned the action was verified, with the TTL as its duration."""
    ttl = (ctx.proposed().get("params") or {}).get("ttl_seconds")
    if ctx.history is None or not ttl:
        return []
    checks = [a for a in ctx.history.activities_for("verify_action", ctx.action_id, "execute") if a.closed]
    if not checks:
        return []
    after = checks[-1].closed or 0
    timer = next(
        (
            t
            for t in sorted(ctx.history.timers, key=lambda t: t.started)
            if t.task > after and t.seconds == float(ttl) and t.started not in ctx.timer_labels
        ),
        None,
    )
    if timer is None:
        return []
    ctx.timer_labels[timer.started] = f"TTL of {ctx.action_id} {ctx.proposed().get('action', '')}".rstrip()
    due = timer.started_at + timedelta(seconds=timer.seconds or 0) if timer.started_at else None
    if timer.fired is None:
        end = f"pending: fires at {when(due)}"
    else:
        end = f"{'fired' if timer.fired else 'cancelled'} at {when(timer.ended_at)}"
    return [
        Fact(
            text=f"Temporal: TTL timer of {duration(timer.seconds or 0)} started at {when(timer.started_at)}, {end}",
            marks=[] if timer.fired is not False else [Mark(text="timer cancelled", tone=Tone.WARN)],
            cites=ctx.h(timer.started) + ctx.h(timer.ended),
        )
    ]


# -- cross-checks and the whole action ---------------------------------------------------------------------


def must_be_cited(record: LedgerRecord) -> bool:
    """Records an activity or a workflow ledger note wrote, whose seq the history therefore returns."""
    if record.kind in (RecordKind.EXECUTION, RecordKind.COMPENSATION, RecordKind.REVERT, RecordKind.VERIFICATION):
        return True
    if record.kind is RecordKind.REPORT or "error" in record.payload:
        return True
    return record.kind is RecordKind.APPROVAL and record.payload.get("event") not in ("vote", "vote_refused")


def cross_check(ctx: ActionContext) -> None:
    """Every step the ledger says the workflow took must show in its history, and every ledger seq the
    history's results cite must be this action's record: either gap is what an auditor must see first."""
    if ctx.history is None:
        return
    cited = ctx.history.cited_seqs()
    verdict = (
        "Temporal has not seen this step finish (yet: the run is still open)"
        if ctx.history.status == "RUNNING"
        else "Temporal never saw this step finish"
    )
    for record in ctx.records:
        if must_be_cited(record) and record.seq not in cited:
            what = record.payload.get("event") or (record.payload.get("request") or {}).get("purpose") or ""
            ctx.disagree(
                f"ledger seq {record.seq} ({record.kind.value} {what}".rstrip() + ") has no completed activity or "
                f"ledger note in run {ctx.run_id}'s history: {verdict}",
                ledger_cite(record.seq),
            )
    mine = {r.seq for r in ctx.records}
    for name in ("execute_action", "verify_action"):
        for activity in ctx.history.activities_for(name, ctx.action_id):
            if activity.state == "completed" and activity.ledger_seq is not None and activity.ledger_seq not in mine:
                ctx.disagree(
                    f"history event {activity.closed} says {name} ({activity.target[1]}) completed and wrote "
                    f"ledger seq {activity.ledger_seq}, but the ledger holds no such record for this action",
                    *ctx.h(activity.closed),
                )


def outcome_of(ctx: ActionContext, decision: LedgerRecord | None) -> tuple[str, Tone]:
    """What finally happened, judged from the last step the ledger records."""
    for purpose, done in (("revert", "reverted"), ("compensate", "compensated")):
        ran, verified = _purpose_records(ctx, purpose)
        if verified:
            ok = bool(verified[-1].payload.get("ok"))
            return (done, Tone.OK) if ok else (f"{purpose} not verified", Tone.BAD)
        if ran:
            return f"{purpose} attempted, not verified", Tone.BAD
    ran, verified = _purpose_records(ctx, "execute")
    if verified:
        return ("verified", Tone.OK) if verified[-1].payload.get("ok") else ("verification failed", Tone.BAD)
    if ran:
        p = ran[-1].payload
        if "error" in p or (p.get("outcome") or {}).get("status") == "failed":
            return "failed", Tone.BAD
        return "executed, not verified yet", Tone.WARN
    preflight = ctx.of(RecordKind.PREFLIGHT)
    if preflight and not preflight[-1].payload.get("go"):
        return ("shadow" if preflight[-1].payload.get("shadow") else "held at pre-flight"), Tone.WARN
    events = [r.payload.get("event") for r in ctx.of(RecordKind.APPROVAL)]
    for event, tone in (("rejected", Tone.BAD), ("timed_out", Tone.BAD)):
        if event in events:
            return event.replace("_", " "), tone
    if decision is None:
        return "undecided", Tone.WARN
    verdict = decision.payload.get("verdict")
    if decision.payload.get("shadow"):
        return f"shadow: would {verdict}", Tone.INFO
    if verdict in ("deny", "recommend"):
        return f"not run ({verdict})", Tone.INFO
    if verdict == "approve" and not SETTLEMENTS & set(events):
        return "awaiting approval", Tone.WARN
    return "decided, not run yet", Tone.WARN
