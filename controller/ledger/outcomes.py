"""What happened to each decided action, read back from the ledger: the evidence scorecards and promotion use.

An *episode* is one guard decision on one action and everything the ledger says followed it (approvals,
pre-flight, execution, verification, compensation, revert). An incident that reopens gets a new decision for
the same action id, so a DECISION record always starts a new episode. Only the ledger is read: the figures a
security lead sees can be re-derived by an auditor from the same hash-chained records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from autonomy_controller.actions.registry import SPECS, class_of
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import ActionClass, TargetKind, canonical_ip

SETTLEMENTS = frozenset({"approved", "rejected", "timed_out", "veto_window_passed"})
"""APPROVAL events that end an approval (workflows/incident.py); votes and escalations do not."""

SUCCESS = frozenset({"done", "already_done"})

PeopleAnswer = Literal["rejected", "reverted", "confirmed"]
"""People's word on a containment action, the false-positive signal (docs/triage.md, Feedback):
- rejected: a person voted it down (a timeout is not a judgement);
- reverted: a person approved the registry's undo of it on the same target later (`network.unblock_ip` after a
  block), in any incident. A TTL expiry or a compensation after failed verification is the machine's doing, not
  people's feedback;
- confirmed: a person approved it and nobody reverted it."""


class RecordLike(Protocol):
    """What the fold reads of a record: full LedgerRecords, or excerpts (controller/ledger/excerpts.py)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> RecordKind: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def created_at(self) -> datetime: ...


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
    """Undone when its TTL ran out (the machine's revert, not a person's)."""
    target: str | None = None
    """The action's target (registry target_param) from the plan that proposed it; addresses canonical."""
    triage_verdict: str | None = None
    """The triage the guard decided on (malicious, suspicious, noise); None for decisions made without one."""
    reverted_by_person: bool = False
    """A person approved its undo on the same target afterwards (see PeopleReverts)."""

    @property
    def auto_executed(self) -> bool:
        """Ran on the controller's own decision: no person approved it (a veto window that passed counts)."""
        return self.executed and self.settlement in (None, "veto_window_passed")

    @property
    def containment(self) -> bool:
        return self.action_class.startswith("contain_")

    @property
    def people_answer(self) -> PeopleAnswer | None:
        """People's feedback on this action (PeopleAnswer); None for other classes, shadow or unanswered."""
        if not self.containment or self.shadow:
            return None
        if self.reverted_by_person:
            return "reverted"
        if self.settlement == "rejected":
            return "rejected"
        return "confirmed" if self.settlement == "approved" else None

    @property
    def person_restore(self) -> bool:
        """A restore a person approved: their explicit undo of an earlier containment."""
        return self.action_class == ActionClass.RESTORE.value and self.settlement == "approved" and not self.shadow

    @property
    def took_effect(self) -> bool:
        """Approved by a person, or executed and verified: containment that stood."""
        return self.settlement == "approved" or (self.executed and self.verified_at is not None)

    def trial(self, scope: str, level: str) -> dict[str, Any] | None:
        return next((t for t in self.trials if t.get("scope") == scope and t.get("level") == level), None)


class PeopleReverts:
    """Which containment a person's restore undoes: the latest earlier containment whose registry undo is the
    restore's action, on the same target, that took effect and is not reverted yet (across incidents: the
    restore is often proposed in another incident than the block)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], list[Episode]] = {}

    def add(self, episode: Episode) -> None:
        spec = SPECS.get(episode.action)
        if episode.containment and not episode.shadow and episode.target and spec and spec.undo_action:
            self._open.setdefault((spec.undo_action, episode.target), []).append(episode)

    def restore(self, restore: Episode) -> Episode | None:
        """Mark and return the containment `restore` undoes, if any."""
        if not restore.person_restore or restore.target is None:
            return None
        for episode in reversed(self._open.get((restore.action, restore.target), [])):
            if episode.decision_seq < restore.decision_seq and episode.took_effect and not episode.reverted_by_person:
                episode.reverted_by_person = True
                return episode
        return None


def attribute_people_reverts(incidents: Iterable[IncidentEpisodes]) -> None:
    """Set `reverted_by_person` on every episode a person's restore undid, over the whole set, in ledger order."""
    episodes = sorted((e for i in incidents for e in i.episodes), key=lambda e: e.decision_seq)
    reverts = PeopleReverts()
    for episode in episodes:
        reverts.add(episode)
        reverts.restore(episode)


def action_target(action: str, params: Any) -> str | None:
    """The registry's target parameter of a proposed action, addresses canonical (so they compare)."""
    spec = SPECS.get(action)
    if spec is None or spec.target_param is None or not isinstance(params, Mapping):
        return None
    value = params.get(spec.target_param)
    if not isinstance(value, str) or not value:
        return None
    if spec.target_kind is TargetKind.IP:
        try:
            return canonical_ip(value)
        except ValueError:
            return value  # a network: compared as written
    return value


def plan_targets(payload: Mapping[str, Any]) -> dict[str, str]:
    """Action id -> target, from a PLAN record's proposed actions."""
    targets: dict[str, str] = {}
    for action in payload.get("actions") or []:
        if isinstance(action, Mapping):
            target = action_target(str(action.get("action")), action.get("params"))
            if target is not None:
                targets[str(action.get("id"))] = target
    return targets


@dataclass
class IncidentEpisodes:
    incident_key: str
    first_alert_at: datetime | None
    episodes: list[Episode]
    rule_ids: set[str] = field(default_factory=set)
    """Rule ids of the incident's alerts: what people's answers on its containment say something about."""

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


def _action_id(record: RecordLike) -> str | None:
    payload = record.payload
    return payload.get("action_id") or (payload.get("request") or {}).get("action_id")


def _first_alert_at(record: RecordLike) -> datetime:
    observed = record.payload.get("observed_at")
    try:
        return datetime.fromisoformat(observed) if isinstance(observed, str) else record.created_at
    except ValueError:
        return record.created_at


def start_episode(key: str, record: RecordLike, targets: Mapping[str, str]) -> Episode:
    """A DECISION record starts an episode; `targets` are the latest plan's (plan_targets)."""
    p = record.payload
    triage = p.get("triage")
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
        target=targets.get(str(p.get("action_id"))),
        triage_verdict=str(triage.get("verdict")) if isinstance(triage, dict) and triage.get("verdict") else None,
    )


def apply_record(episode: Episode, record: RecordLike) -> None:
    """Fold one of the episode's later records (approval, pre-flight, execution, verification, undo) into it."""
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


def incident_outcome(key: str, records: Iterable[RecordLike]) -> IncidentEpisodes:
    """Fold one incident's records (in ledger order) into its episodes."""
    first_alert: datetime | None = None
    current: dict[str, Episode] = {}
    episodes: list[Episode] = []
    rule_ids: set[str] = set()
    targets: dict[str, str] = {}
    for record in records:
        if record.kind is RecordKind.ALERT:
            at = _first_alert_at(record)
            first_alert = at if first_alert is None else min(first_alert, at)
            rule_ids.update(str(r) for r in record.payload.get("rule_ids") or [])
            continue
        if record.kind is RecordKind.PLAN:
            targets = plan_targets(record.payload)
            continue
        if record.kind is RecordKind.DECISION:
            episode = start_episode(key, record, targets)
            current[episode.action_id] = episode
            episodes.append(episode)
            continue
        action_id = _action_id(record)
        if action_id in current:
            apply_record(current[action_id], record)
    return IncidentEpisodes(incident_key=key, first_alert_at=first_alert, episodes=episodes, rule_ids=rule_ids)


def outcomes(ledger: Ledger, since: datetime | None = None) -> Iterator[IncidentEpisodes]:
    """Every incident's outcome (least recently written first); `since` drops decisions taken before it.

    People's reverts are attributed over the whole ledger first (a restore in one incident undoes a block in
    another), so this reads every incident before yielding the first.
    """
    every = [incident_outcome(h.incident_key, ledger.records(h.incident_key)) for h in ledger.incidents()]
    attribute_people_reverts(every)
    for outcome in every:
        if since is not None:
            outcome.episodes = [e for e in outcome.episodes if e.decided_at >= since]
        if outcome.episodes:
            yield outcome
