"""What happened to each decided action, read back from the ledger: the evidence scorecards and promotion use.

An *episode* is one guard decision on one action and everything the ledger says followed it (approvals,
pre-flight, execution, verification, compensation, revert). An incident that reopens gets a new decision for
the same action id, so a DECISION record always starts a new episode. Only the ledger is read: the figures a
security lead sees can be re-derived by an auditor from the same hash-chained records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actions.registry import class_of
from controller.ledger import Ledger, LedgerRecord, RecordKind

SETTLEMENTS = frozenset({"approved", "rejected", "timed_out", "veto_window_passed"})
"""APPROVAL events that end an approval (workflows/incident.py); votes and escalations do not."""

SUCCESS = frozenset({"done", "already_done"})


@dataclass(frozen=True)
class Vote:
    """A counted vote (refused ones are not votes): who, what, whether a verified token carried it, and when."""

    approver: str
    choice: str
    signed: bool
    at: datetime


@dataclass
class Episode:
    incident_key: str
    action_id: str
    action: str
    action_class: str
    scope: str
    effective_level: str
    verdict: str
    decided_at: datetime
    decision_seq: int
    shadow: bool = False
    trials: list[dict[str, Any]] = field(default_factory=list)
    settlement: str | None = None
    """approved, rejected, timed_out or veto_window_passed; None when no approval was asked or it is open."""
    settled_at: datetime | None = None
    settled_by: str = ""
    votes: list[Vote] = field(default_factory=list)
    held: bool = False
    executed: bool = False
    execution_failed: bool = False
    verified_at: datetime | None = None
    verification_failed: bool = False
    compensated: bool = False
    reverted: bool = False

    @property
    def auto_executed(self) -> bool:
        """Ran on the controller's own decision: no person approved it (a veto window that passed counts)."""
        return self.executed and self.settlement in (None, "veto_window_passed")

    @property
    def containment(self) -> bool:
        return self.action_class.startswith("contain_")

    def trial(self, scope: str, level: str) -> dict[str, Any] | None:
        return next((t for t in self.trials if t.get("scope") == scope and t.get("level") == level), None)


@dataclass
class IncidentEpisodes:
    incident_key: str
    first_alert_at: datetime | None
    episodes: list[Episode]

    @property
    def contained_at(self) -> datetime | None:
        """When the first containment action was verified: the end of "time to contain"."""
        times = [e.verified_at for e in self.episodes if e.containment and e.verified_at is not None]
        return min(times) if times else None

    @property
    def seconds_to_contain(self) -> float | None:
        contained = self.contained_at
        if contained is None or self.first_alert_at is None:
            return None
        return max(0.0, (contained - self.first_alert_at).total_seconds())


def _action_id(record: LedgerRecord) -> str | None:
    payload = record.payload
    return payload.get("action_id") or (payload.get("request") or {}).get("action_id")


def _first_alert_at(record: LedgerRecord) -> datetime:
    observed = record.payload.get("observed_at")
    try:
        return datetime.fromisoformat(observed) if isinstance(observed, str) else record.created_at
    except ValueError:
        return record.created_at


def _start(key: str, record: LedgerRecord) -> Episode:
    p = record.payload
    return Episode(
        incident_key=key,
        action_id=str(p.get("action_id")),
        action=str(p.get("action")),
        action_class=class_of(str(p.get("action"))),
        scope=str(p.get("scope") or "unknown"),
        effective_level=str(p.get("effective_level")),
        verdict=str(p.get("verdict")),
        decided_at=record.created_at,
        decision_seq=record.seq,
        shadow=bool(p.get("shadow")),
        trials=list(p.get("trials") or []),
    )


def _apply(episode: Episode, record: LedgerRecord) -> None:
    p = record.payload
    kind = record.kind
    if kind is RecordKind.APPROVAL and p.get("event") == "vote":
        vote = Vote(str(p.get("approver")), str(p.get("choice")), bool(p.get("signed")), record.created_at)
        episode.votes.append(vote)
    elif kind is RecordKind.APPROVAL and p.get("event") in SETTLEMENTS and episode.settlement is None:
        episode.settlement, episode.settled_at = str(p["event"]), record.created_at
        episode.settled_by = str(p.get("detail") or "")
    elif kind is RecordKind.PREFLIGHT and not p.get("go"):
        episode.held = True
    elif kind is RecordKind.EXECUTION:
        ok = (p.get("outcome") or {}).get("status") in SUCCESS
        episode.executed, episode.execution_failed = episode.executed or ok, episode.execution_failed or not ok
    elif kind is RecordKind.VERIFICATION and p.get("purpose", "execute") == "execute":
        if p.get("ok") and episode.verified_at is None:
            episode.verified_at = record.created_at
        elif not p.get("ok"):
            episode.verification_failed = True
    elif kind is RecordKind.COMPENSATION:
        episode.compensated = True
    elif kind is RecordKind.REVERT and (p.get("outcome") or {}).get("status") in SUCCESS:
        episode.reverted = True


def incident_outcome(key: str, records: list[LedgerRecord]) -> IncidentEpisodes:
    """Fold one incident's records (in ledger order) into its episodes."""
    first_alert: datetime | None = None
    current: dict[str, Episode] = {}
    episodes: list[Episode] = []
    for record in records:
        if record.kind is RecordKind.ALERT:
            at = _first_alert_at(record)
            first_alert = at if first_alert is None else min(first_alert, at)
            continue
        if record.kind is RecordKind.DECISION:
            episode = _start(key, record)
            current[episode.action_id] = episode
            episodes.append(episode)
            continue
        action_id = _action_id(record)
        if action_id in current:
            _apply(current[action_id], record)
    return IncidentEpisodes(incident_key=key, first_alert_at=first_alert, episodes=episodes)


def outcomes(ledger: Ledger, since: datetime | None = None) -> Iterator[IncidentEpisodes]:
    """Every incident's outcome (least recently written first); `since` drops decisions taken before it."""
    for head in ledger.incidents():
        outcome = incident_outcome(head.incident_key, ledger.records(head.incident_key))
        if since is not None:
            outcome.episodes = [e for e in outcome.episodes if e.decided_at >= since]
        if outcome.episodes:
            yield outcome
