"""The ledger side of the join: records grouped per workflow run and per action, and what every step
builder shares (the action's context, citing helpers, formatting of times and literals)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autonomy_controller.controller.approver_keys import ApproverKeys
from autonomy_controller.controller.ledger import LedgerRecord, RecordKind
from autonomy_controller.controller.oversight.trail.history import Activity, RunHistory
from autonomy_controller.controller.oversight.trail.model import Cite, Disagreement, Fact, Mark, Tone, history_cite

MAX_ALERTS_SHOWN = 12
"""Per action, alerts listed one by one; a storm's rest is counted (every alert stays in the ledger)."""
SNIPPET_CHARS = 160
"""Evidence is attacker-controlled and may be long: enough to recognise the request, not a payload dump."""


@dataclass
class RunRecords:
    """One workflow run's records: an incident key that comes back after closing is a new run, with action
    ids (a1, a2...) that repeat, so an action is only identified by (run, action id)."""

    run_id: str | None
    plan: LedgerRecord | None = None
    later_plans: list[LedgerRecord] = field(default_factory=list)
    """The plans of a case's later decision rounds (controller/case/rounds.py), in order."""
    transcript: LedgerRecord | None = None
    actions: dict[str, list[LedgerRecord]] = field(default_factory=dict)
    other: list[LedgerRecord] = field(default_factory=list)
    alerts: list[LedgerRecord] = field(default_factory=list)


def run_of(record: LedgerRecord, incident_key: str) -> str | None:
    """The run id inside a workflow-written idempotency key (<workflow id>/<run id>/...), if any."""
    key = record.idempotency_key or ""
    prefix = f"{incident_key}/"
    if not key.startswith(prefix):
        return None
    run_id = key[len(prefix) :].split("/", 1)[0]
    return run_id or None


def action_of(record: LedgerRecord) -> str | None:
    """The action a record is about: notes carry `action_id`, executions carry it in their request."""
    p = record.payload
    action_id = p.get("action_id") or (p.get("request") or {}).get("action_id")
    return str(action_id) if action_id else None


def group_by_run(incident_key: str, records: list[LedgerRecord]) -> list[RunRecords]:
    """Records per run, in ledger order. Records without a run in their key (a refused vote: the CLI writes
    it) belong to the run in progress when they were written; alerts to the run whose plan followed them."""
    runs: dict[str | None, RunRecords] = {}
    current: RunRecords | None = None
    pending_alerts: list[LedgerRecord] = []
    for record in records:
        if record.kind is RecordKind.ALERT:
            pending_alerts.append(record)
            continue
        run_id = run_of(record, incident_key)
        run = current if run_id is None and current is not None else runs.setdefault(run_id, RunRecords(run_id))
        current = run
        if record.kind is RecordKind.PLAN and run.plan is None and "error" not in record.payload:
            run.plan, run.alerts, pending_alerts = record, pending_alerts, []
        elif record.kind is RecordKind.PLAN and "error" not in record.payload:
            run.later_plans.append(record)
        elif record.kind is RecordKind.TRANSCRIPT:
            run.transcript = record
        elif (action_id := action_of(record)) is not None:
            run.actions.setdefault(action_id, []).append(record)
        else:
            run.other.append(record)
    if pending_alerts and current is not None:
        current.alerts += pending_alerts  # alerts that arrived after the last plan joined that run's incident
    return list(runs.values())


# -- what the step builders share ---------------------------------------------------------------------


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else "-"


def as_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def snippet(text: object) -> str:
    value = " ".join(str(text or "").split())
    return value if len(value) <= SNIPPET_CHARS else value[: SNIPPET_CHARS - 3] + "..."


SETTLEMENTS = {"approved", "rejected", "timed_out", "veto_window_passed"}

VERDICT_TONES = {"execute": Tone.OK, "approve": Tone.WARN, "recommend": Tone.INFO, "deny": Tone.BAD}


@dataclass
class ActionContext:
    """What the step builders share for one action: its records, its run's history, and the findings."""

    incident_key: str
    run: RunRecords
    action_id: str
    records: list[LedgerRecord]
    history: RunHistory | None
    timer_labels: dict[int, str]
    """Timers attributed so far in this run (started event id -> what it was for), shared by its actions."""
    keys: ApproverKeys | None = None
    """The approver keys config, to re-verify signed votes' tokens offline; None: not re-verified."""
    disagreements: list[Disagreement] = field(default_factory=list)
    evidence: str = ""
    """The evidence in one phrase, set by the evidence step for the action's summary."""

    @property
    def run_id(self) -> str:
        return self.run.run_id or "-"

    def h(self, event_id: int | None) -> list[Cite]:
        return [history_cite(event_id, self.run_id)] if event_id else []

    def of(self, *kinds: RecordKind) -> list[LedgerRecord]:
        return [r for r in self.records if r.kind in kinds]

    def decision(self) -> LedgerRecord | None:
        return next(iter(self.of(RecordKind.DECISION)), None)

    def plan(self) -> LedgerRecord | None:
        """The plan that proposed this action: the run's first, or a later round's."""
        for plan in [self.run.plan, *self.run.later_plans] if self.run.plan else []:
            if any(a.get("id") == self.action_id for a in plan.payload.get("actions", [])):
                return plan
        return self.run.plan

    @property
    def round(self) -> int:
        plan = self.plan()
        return int(plan.payload.get("round", 1)) if plan else 1

    def proposed(self) -> dict[str, Any]:
        plan = self.plan()
        actions = plan.payload.get("actions", []) if plan else []
        return next((a for a in actions if a.get("id") == self.action_id), {})

    def disagree(self, text: str, *cites: Cite) -> None:
        self.disagreements.append(Disagreement(text=text, cites=list(cites)))


def activity_facts(ctx: ActionContext, activity: Activity, what: str) -> list[Fact]:
    """How Temporal ran one activity: its events, its attempts and any failure, each with its event id."""
    limit = f" of {activity.max_attempts}" if activity.max_attempts else ""
    started = f", started attempt {activity.attempt}{limit}" if activity.started else ", never started"
    closed = f", {activity.state} at {when(activity.closed_at)}" if activity.closed else f", {activity.state}"
    marks: list[Mark] = []
    if activity.attempt > 1:
        marks.append(Mark(text=f"retried: {activity.attempt} attempts", tone=Tone.WARN))
    if activity.state in ("failed", "timed out", "cancelled"):
        marks.append(Mark(text=activity.state.upper(), tone=Tone.BAD))
    seq = f"; its result cites ledger seq {activity.ledger_seq}" if activity.ledger_seq is not None else ""
    facts = [
        Fact(
            text=f"Temporal: {what} ({activity.name}) scheduled{started}{closed}{seq}",
            marks=marks,
            cites=ctx.h(activity.scheduled) + ctx.h(activity.started) + ctx.h(activity.closed),
        )
    ]
    if activity.last_failure:
        facts.append(
            Fact(
                text=f"Temporal: attempt {activity.attempt - 1} failed, then retried",
                code=activity.last_failure,
                cites=ctx.h(activity.started),
            )
        )
    if activity.failure:
        facts.append(Fact(text="Temporal: the activity failed", code=activity.failure, cites=ctx.h(activity.closed)))
    return facts
