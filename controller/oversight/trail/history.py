"""Reading a workflow history (Temporal's JSON export, as `workflow_histories` fetches it) into what the
trail joins on: activities with their attempts, local-activity markers, vote updates, timers and signals.

The workflow's own results carry ledger seqs (execute_action and verify_action return `ledger_seq`; the
`record` local activity returns the seq it wrote), so the join with the ledger is exact, not by time.
Payloads are read only when written by the plain JSON converter: a codec's ciphertext reads as None.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_FRACTION = re.compile(r"(\.\d{6})\d+")


def _time(value: object) -> datetime | None:
    """History times carry nanoseconds, which datetime cannot hold: cut to microseconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds(value: object) -> float | None:
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return float(value[:-1])
    except ValueError:
        return None


def _payload(payload: Mapping[str, Any]) -> Any:
    """One payload as the workflow wrote it; None when it is not plain JSON (a codec's ciphertext, null)."""
    try:
        encoding = base64.b64decode(str((payload.get("metadata") or {}).get("encoding", ""))).decode()
        if encoding != "json/plain":
            return None
        return json.loads(base64.b64decode(str(payload.get("data", ""))))
    except (ValueError, binascii.Error):
        return None


def _payloads(container: object) -> list[Any]:
    if not isinstance(container, Mapping):
        return []
    return [_payload(p) for p in container.get("payloads") or [] if isinstance(p, Mapping)]


def _first(container: object) -> Any:
    values = _payloads(container)
    return values[0] if values else None


def _failure_text(failure: object) -> str | None:
    """A Temporal failure's message with its causes, the way an operator would read it in the UI."""
    parts: list[str] = []
    while isinstance(failure, Mapping) and len(parts) < 4:
        if failure.get("message"):
            parts.append(str(failure["message"]))
        failure = failure.get("cause")
    return ": ".join(parts) if parts else None


@dataclass
class Activity:
    """One scheduled activity with what became of it; STARTED carries the last attempt and the failure
    before it (Temporal writes one STARTED per activity, not one per attempt)."""

    name: str
    scheduled: int
    input: Any
    max_attempts: int | None
    started: int | None = None
    attempt: int = 0
    last_failure: str | None = None
    closed: int | None = None
    state: str = "scheduled"
    closed_at: datetime | None = None
    result: Any = None
    failure: str | None = None

    @property
    def target(self) -> tuple[str | None, str | None]:
        """The (action id, purpose) an execute_action or verify_action call was about."""
        request = self.input if isinstance(self.input, Mapping) else {}
        if self.name == "verify_action":
            request = request.get("execution") or {}
        return request.get("action_id"), request.get("purpose")

    @property
    def ledger_seq(self) -> int | None:
        seq = self.result.get("ledger_seq") if isinstance(self.result, Mapping) else None
        return seq if isinstance(seq, int) else None


@dataclass
class LocalActivity:
    marker: int
    name: str
    attempt: int
    result: Any
    failure: str | None


@dataclass
class Update:
    accepted: int
    name: str
    args: Any
    accepted_at: datetime | None
    completed: int | None = None
    failure: str | None = None


@dataclass
class Timer:
    timer_id: str
    started: int
    seconds: float | None
    task: int
    """The workflow task that started it: links the timer to what the workflow had just learned."""
    started_at: datetime | None
    ended: int | None = None
    ended_at: datetime | None = None
    fired: bool | None = None
    """True fired, False cancelled, None still pending."""


@dataclass
class RunHistory:
    run_id: str
    status: str
    events: int = 0
    started_at: datetime | None = None
    closed_at: datetime | None = None
    activities: list[Activity] = field(default_factory=list)
    local: list[LocalActivity] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    signalled_alerts: list[tuple[int, str]] = field(default_factory=list)
    start: dict[str, Any] = field(default_factory=dict)
    """The workflow's input (IncidentStart): a level given at submission overrides the scopes."""

    def activities_for(self, name: str, action_id: str, purpose: str | None = None) -> list[Activity]:
        return [
            a
            for a in self.activities
            if a.name == name and a.target[0] == action_id and (purpose is None or a.target[1] == purpose)
        ]

    def first_activity(self, name: str) -> Activity | None:
        return next((a for a in self.activities if a.name == name), None)

    def planning(self, round_: int = 1) -> Activity | None:
        """The activity that planned a decision round: plan_incident (a single-round run) or plan_round."""
        for activity in self.activities:
            if activity.name == "plan_incident" and round_ == 1:
                return activity
            given = activity.input if isinstance(activity.input, Mapping) else {}
            if activity.name == "plan_round" and given.get("round", 1) == round_:
                return activity
        return None

    def cited_seqs(self) -> dict[int, int]:
        """Ledger seqs the history vouches for (an activity's or a ledger note's result), by event id."""
        cited: dict[int, int] = {}
        for activity in self.activities:
            if activity.state == "completed" and activity.ledger_seq is not None and activity.closed is not None:
                cited[activity.ledger_seq] = activity.closed
        for local in self.local:
            if local.name == "record" and isinstance(local.result, int):
                cited[local.result] = local.marker
        return cited


_CLOSED = {
    "WORKFLOW_EXECUTION_COMPLETED",
    "WORKFLOW_EXECUTION_FAILED",
    "WORKFLOW_EXECUTION_TERMINATED",
    "WORKFLOW_EXECUTION_CANCELED",
    "WORKFLOW_EXECUTION_TIMED_OUT",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
}
_ACTIVITY_END = {
    "ACTIVITY_TASK_COMPLETED": "completed",
    "ACTIVITY_TASK_FAILED": "failed",
    "ACTIVITY_TASK_TIMED_OUT": "timed out",
    "ACTIVITY_TASK_CANCELED": "cancelled",
}


def _attributes(event: Mapping[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("EventAttributes") and isinstance(v, dict)), {})


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


class _HistoryReader:
    """Folds one run's events into activities, local activities, updates, timers and signals."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run = RunHistory(run_id=run_id, status=status)
        self.activities: dict[int, Activity] = {}
        self.timers: dict[int, Timer] = {}
        self.updates: dict[str, Update] = {}

    def read(self, events: Iterable[Mapping[str, Any]]) -> RunHistory:
        for event in events:
            self.run.events += 1
            kind = str(event.get("eventType", "")).removeprefix("EVENT_TYPE_")
            self._event(kind, _int(event.get("eventId")), _time(event.get("eventTime")), _attributes(event))
        return self.run

    def _event(self, kind: str, event_id: int, at: datetime | None, attrs: dict[str, Any]) -> None:
        if kind == "WORKFLOW_EXECUTION_STARTED":
            self.run.started_at = at
            start = _first(attrs.get("input"))
            self.run.start = dict(start) if isinstance(start, Mapping) else {}
        elif kind in _CLOSED:
            self.run.closed_at = at
        elif kind == "WORKFLOW_EXECUTION_SIGNALED" and attrs.get("signalName") == "add_alerts":
            batch = _first(attrs.get("input")) or {}
            alerts = batch.get("alerts", []) if isinstance(batch, Mapping) else []
            self.run.signalled_alerts += [(event_id, str(a.get("id"))) for a in alerts if isinstance(a, Mapping)]
        elif kind.startswith("ACTIVITY_TASK_"):
            self._activity(kind, event_id, at, attrs)
        elif kind == "MARKER_RECORDED" and attrs.get("markerName") == "core_local_activity":
            self._marker(event_id, attrs)
        elif kind.startswith("WORKFLOW_EXECUTION_UPDATE_"):
            self._update(kind, event_id, at, attrs)
        elif kind.startswith("TIMER_"):
            self._timer(kind, event_id, at, attrs)

    def _activity(self, kind: str, event_id: int, at: datetime | None, attrs: dict[str, Any]) -> None:
        if kind == "ACTIVITY_TASK_SCHEDULED":
            retry = attrs.get("retryPolicy") or {}
            activity = Activity(
                name=str((attrs.get("activityType") or {}).get("name", "?")),
                scheduled=event_id,
                input=_first(attrs.get("input")),
                max_attempts=_int(retry.get("maximumAttempts")) or None,
            )
            self.activities[event_id] = activity
            self.run.activities.append(activity)
            return
        found = self.activities.get(_int(attrs.get("scheduledEventId")))
        if found is None:
            return
        activity = found
        if kind == "ACTIVITY_TASK_STARTED":
            activity.started, activity.attempt = event_id, _int(attrs.get("attempt")) or 1
            activity.last_failure = _failure_text(attrs.get("lastFailure"))
            activity.state = "started"
        elif kind in _ACTIVITY_END:
            activity.closed, activity.closed_at, activity.state = event_id, at, _ACTIVITY_END[kind]
            activity.result = _first(attrs.get("result"))
            activity.failure = _failure_text(attrs.get("failure"))

    def _marker(self, event_id: int, attrs: dict[str, Any]) -> None:
        details = attrs.get("details") or {}
        data = _first(details.get("data")) or {}
        self.run.local.append(
            LocalActivity(
                marker=event_id,
                name=str(data.get("activity_type", "?")) if isinstance(data, Mapping) else "?",
                attempt=_int(data.get("attempt")) if isinstance(data, Mapping) else 0,
                result=_first(details.get("result")),
                failure=_failure_text(attrs.get("failure")),
            )
        )

    def _update(self, kind: str, event_id: int, at: datetime | None, attrs: dict[str, Any]) -> None:
        if kind == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED":
            request = attrs.get("acceptedRequest") or {}
            update_input = request.get("input") or {}
            update_id = str((request.get("meta") or {}).get("updateId") or attrs.get("protocolInstanceId"))
            update = Update(
                accepted=event_id,
                name=str(update_input.get("name", "?")),
                args=_first(update_input.get("args")),
                accepted_at=at,
            )
            self.updates[update_id] = update
            self.run.updates.append(update)
        elif kind == "WORKFLOW_EXECUTION_UPDATE_COMPLETED":
            found = self.updates.get(str((attrs.get("meta") or {}).get("updateId")))
            if found is not None:
                found.completed = event_id
                found.failure = _failure_text((attrs.get("outcome") or {}).get("failure"))

    def _timer(self, kind: str, event_id: int, at: datetime | None, attrs: dict[str, Any]) -> None:
        if kind == "TIMER_STARTED":
            timer = Timer(
                timer_id=str(attrs.get("timerId")),
                started=event_id,
                seconds=_seconds(attrs.get("startToFireTimeout")),
                task=_int(attrs.get("workflowTaskCompletedEventId")),
                started_at=at,
            )
            self.timers[event_id] = timer
            self.run.timers.append(timer)
            return
        ended = self.timers.get(_int(attrs.get("startedEventId")))
        if ended is not None and kind in ("TIMER_FIRED", "TIMER_CANCELED"):
            ended.ended, ended.ended_at, ended.fired = event_id, at, kind == "TIMER_FIRED"


def read_histories(document: Mapping[str, Any]) -> list[RunHistory]:
    """The runs of a `workflow_histories` document (or an audit export's "temporal" part), oldest first."""
    runs = []
    for run in document.get("runs") or []:
        events = (run.get("history") or {}).get("events") or []
        runs.append(_HistoryReader(str(run.get("run_id")), str(run.get("status", "UNKNOWN"))).read(events))
    return runs
