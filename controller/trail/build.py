"""Assembling the trail: each action's steps in order, the incident-level notes, the runs Temporal kept,
and the ledger's own verification of the incident's chain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from autonomy_controller.controller.approver_keys import ApproverKeys
from autonomy_controller.controller.ledger import LedgerRecord, RecordKind, VerifyReport
from autonomy_controller.controller.oversight.reports import record_summary
from autonomy_controller.controller.oversight.trail.act import (
    cross_check,
    execution_steps,
    must_be_cited,
    outcome_of,
    undo_step,
)
from autonomy_controller.controller.oversight.trail.decide import (
    approval_step,
    decision_step,
    evidence_step,
    preflight_step,
    proposal_step,
    risk_step,
)
from autonomy_controller.controller.oversight.trail.history import RunHistory, read_histories
from autonomy_controller.controller.oversight.trail.model import (
    ActionTrail,
    Disagreement,
    Fact,
    HistoryInfo,
    LedgerCheck,
    Mark,
    RunInfo,
    Step,
    StepKind,
    Tone,
    Trail,
    history_cite,
    ledger_cite,
)
from autonomy_controller.controller.oversight.trail.runs import ActionContext, RunRecords, duration, group_by_run, when

ALERT_KINDS = (RecordKind.ALERT, RecordKind.ACCESS)


def _summary(ctx: ActionContext, decision: LedgerRecord | None, outcome: str, steps: list[Step]) -> str:
    """The answer to "why did this run" in one paragraph, each clause taken from a step below."""
    name = ctx.proposed().get("action") or (decision.payload.get("action") if decision else "?")
    plan = ctx.run.plan.payload if ctx.run.plan else {}
    how = plan.get("playbook") or plan.get("model") or plan.get("mode") or "?"
    parts = [f"On {ctx.evidence or 'no recorded alerts'}, planner {plan.get('planner', '?')} ({how}) proposed {name}."]
    if decision is not None:
        p = decision.payload
        reasons = "; ".join(map(str, p.get("level_reasons", []) + p.get("reasons", []))) or "no reason given"
        risk = (p.get("risk") or {}).get("score")
        triage = p.get("triage")
        given = (
            f"triage {triage.get('verdict')} at {triage.get('confidence')}" if isinstance(triage, dict) else "no triage"
        )
        proposing = ctx.plan()
        impact = proposing.payload.get("impact") if proposing else None
        given += f", impact {impact.get('verdict')}" if isinstance(impact, dict) else ""
        parts.append(
            f"Policy revision {str(p.get('policy_revision') or '-')[:19]}... said {p.get('verdict')} at "
            f"{p.get('effective_level')}, risk {risk if risk is not None else 'not scored'}, {given}: {reasons}."
        )
    votes = [r.payload for r in ctx.of(RecordKind.APPROVAL) if r.payload.get("event") == "vote"]
    if votes:
        said = ", ".join(
            f"{v.get('approver')} {v.get('choice')} ({'signed' if v.get('signed') else 'UNSIGNED'})" for v in votes
        )
        parts.append(f"Votes: {said}.")
    preflight = ctx.of(RecordKind.PREFLIGHT)
    if preflight:
        parts.append(f"Pre-flight: {'go' if preflight[-1].payload.get('go') else 'held'}.")
    parts.append(f"Outcome: {outcome}.")
    return " ".join(parts)


def _action_trail(ctx: ActionContext, alerts_by_id: Mapping[str, LedgerRecord]) -> ActionTrail:
    decision = ctx.decision()
    steps = [evidence_step(ctx, alerts_by_id), proposal_step(ctx)]
    if decision is not None:
        steps += [risk_step(ctx, decision), decision_step(ctx, decision, alerts_by_id)]
    approval, preflight = approval_step(ctx, decision), preflight_step(ctx)
    steps += [s for s in (approval, preflight) if s is not None]
    steps += execution_steps(ctx)
    steps += [
        s
        for s in (undo_step(ctx, "compensate", StepKind.COMPENSATION), undo_step(ctx, "revert", StepKind.REVERT))
        if s is not None
    ]
    cross_check(ctx)
    outcome, tone = outcome_of(ctx, decision)
    name = ctx.proposed().get("action") or (decision.payload.get("action") if decision else None) or "?"
    return ActionTrail(
        run_id=ctx.run.run_id,
        action_id=ctx.action_id,
        action=str(name),
        verdict=str(decision.payload.get("verdict")) if decision else None,
        outcome=outcome,
        outcome_tone=tone,
        summary=_summary(ctx, decision, outcome, steps),
        steps=steps,
        disagreements=ctx.disagreements,
    )


def _timer_label(run: RunHistory, index: int, labels: Mapping[int, str]) -> str:
    """What a timer was for, where that is certain: a TTL the action joined, or the first sleep (settling)."""
    timer = run.timers[index]
    if timer.started in labels:
        return labels[timer.started]
    if index == 0 and timer.seconds == run.start.get("settle_seconds"):
        return "settle: collect alerts before planning"
    return ""


def _run_info(run: RunHistory, labels: Mapping[int, str]) -> RunInfo:
    timers = []
    for index, timer in enumerate(run.timers):
        state = "pending" if timer.fired is None else "fired" if timer.fired else "cancelled"
        cites = [history_cite(timer.started, run.run_id)]
        cites += [history_cite(timer.ended, run.run_id)] if timer.ended else []
        label = _timer_label(run, index, labels)
        timers.append(
            Fact(
                text=f"timer {timer.timer_id}{f' ({label})' if label else ''}: {duration(timer.seconds or 0)} "
                f"from {when(timer.started_at)}, {state}",
                cites=cites,
            )
        )
    start = run.start
    requested = f"level {start.get('level') or 'from the scopes'}, settle {start.get('settle_seconds')} s, "
    requested += f"quiet {start.get('quiet_seconds')} s"
    return RunInfo(
        requested=requested if start else None,
        run_id=run.run_id,
        status=run.status,
        events=run.events,
        started_at=run.started_at,
        closed_at=run.closed_at,
        alerts_signalled=len(run.signalled_alerts),
        timers=timers,
    )


def _note(record: LedgerRecord, history: RunHistory | None) -> tuple[Fact, Disagreement | None]:
    """An incident-level record (a report, a planner or guard failure) with its history counterpart."""
    cites = [ledger_cite(record.seq)]
    problem = None
    if history is not None and must_be_cited(record):
        event = history.cited_seqs().get(record.seq)
        if event is None:
            problem = Disagreement(
                text=f"ledger seq {record.seq} ({record.kind.value}) has no counterpart in run "
                f"{history.run_id}'s history",
                cites=cites,
            )
        else:
            cites.append(history_cite(event, history.run_id))
    if "error" in record.payload:
        fact = Fact(text=f"{record.kind.value} step failed", code=str(record.payload["error"]), cites=cites)
        fact.marks.append(Mark(text="error", tone=Tone.BAD))
        return fact, problem
    if record.kind is RecordKind.REPORT:
        p = record.payload
        return Fact(
            text=f"incident report written: {p.get('markdown')} (sha256 {p.get('sha256')})", cites=cites
        ), problem
    return Fact(text=record_summary(record), cites=cites), problem


def _run_notes(run: RunRecords, history: RunHistory | None) -> tuple[list[Fact], list[Disagreement]]:
    notes, problems = [], []
    if run.plan is not None and run.plan.payload.get("hold_reason"):
        notes.append(
            Fact(
                text=f"the planner held the incident for a person: {run.plan.payload['hold_reason']}",
                marks=[Mark(text="held for a person", tone=Tone.WARN)],
                cites=[ledger_cite(run.plan.seq)],
            )
        )
    for record in run.other:
        fact, problem = _note(record, history)
        notes.append(fact)
        problems += [problem] if problem else []
    return notes, problems


def _history_info(
    document: Mapping[str, Any], runs: list[RunHistory], labels: Mapping[str, dict[int, str]]
) -> HistoryInfo:
    if not document.get("available"):
        reason = str(document.get("reason") or "no workflow history was given")
        return HistoryInfo(available=False, reason=reason, address=document.get("address"))
    infos = [_run_info(r, labels.get(r.run_id, {})) for r in runs]
    return HistoryInfo(available=True, address=document.get("address"), runs=infos)


def _run_disagreements(ledger_runs: list[RunRecords], histories: dict[str, RunHistory]) -> list[Disagreement]:
    problems = []
    for run in ledger_runs:
        if run.run_id is None or run.run_id in histories:
            continue
        seqs = [r.seq for records in run.actions.values() for r in records] + [r.seq for r in run.other]
        seqs += [run.plan.seq] if run.plan else []
        problems.append(
            Disagreement(
                text=f"the ledger holds {len(seqs)} record(s) of run {run.run_id}, which Temporal does not have "
                "(deleted, or past the namespace's retention): those actions are told from the ledger alone",
                cites=[ledger_cite(s) for s in sorted(seqs)[:3]],
            )
        )
    known = {r.run_id for r in ledger_runs}
    for run_id, history in histories.items():
        if run_id not in known and history.planning() is not None:
            problems.append(
                Disagreement(text=f"Temporal has run {run_id}, which planned, but the ledger holds nothing of it")
            )
    return problems


def build_trail(
    incident_key: str,
    records: list[LedgerRecord],
    histories: Mapping[str, Any],
    verified: VerifyReport,
    now: datetime | None = None,
    keys: ApproverKeys | None = None,
    observed: Sequence[LedgerRecord] = (),
) -> Trail:
    """The incident's trail from its ledger records, the `workflow_histories` document (available or not)
    and the ledger's verification of the incident's chain; with `keys`, signed votes are re-verified.
    `observed` are the source's access-log records (controller/ledger/observations.py), which impact evidence cites."""
    runs = read_histories(histories) if histories.get("available") else []
    by_run = {run.run_id: run for run in runs}
    alerts_by_id = {str(r.payload.get("id")): r for r in [*observed, *records] if r.kind in ALERT_KINDS}
    ledger_runs = group_by_run(incident_key, records)
    actions, notes, problems = [], [], []
    labels: dict[str, dict[int, str]] = {}
    for run in ledger_runs:
        history = by_run.get(run.run_id) if run.run_id else None
        run_labels = labels.setdefault(run.run_id or "-", {})
        planned = [str(a.get("id")) for a in (run.plan.payload.get("actions", []) if run.plan else [])]
        for action_id in planned + [a for a in run.actions if a not in planned]:
            ctx = ActionContext(
                incident_key, run, action_id, run.actions.get(action_id, []), history, run_labels, keys=keys
            )
            actions.append(_action_trail(ctx, alerts_by_id))
        run_notes, run_problems = _run_notes(run, history)
        notes += run_notes
        problems += run_problems
    if histories.get("available"):
        problems += _run_disagreements(ledger_runs, by_run)
    return Trail(
        incident_key=incident_key,
        generated_at=now or datetime.now(UTC),
        records=len(records),
        history=_history_info(histories, runs, labels),
        actions=actions,
        notes=notes,
        disagreements=problems,
        ledger=LedgerCheck(
            ok=verified.ok,
            summary=verified.summary(),
            checked=verified.checked,
            head_seq=verified.head_seq,
            head_hash=verified.head_hash,
        ),
    )
