"""Scorecards: what autonomy did, per scope and level, from the ledger (`autonomy scorecard`).

A security lead tuning levels needs the after-the-fact side of `simulate`: how much the controller handled
alone, how much it asked people and how they answered (and how fast), what it had to undo, and how long
containment took. Each figure is a count over ledger episodes (controller/ledger/outcomes.py), so it can be checked.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from autonomy_controller.controller.decision.levels import DEFAULT_SCOPE
from autonomy_controller.controller.ledger.outcomes import Episode, IncidentEpisodes

TRIAGE_ORDER = ("malicious", "suspicious", "noise", "none")
OUTCOMES = ("ran alone", "approved", "rejected", "timed out", "failed", "not run")
"""How a decided action ended, each in exactly one bucket (outcome_of), so the buckets add up to `decided`."""
SCOPE_WORDS = {
    "declared": "level given at submit (--level)",
    DEFAULT_SCOPE: "everything no scope names (default level)",
    "asset_group": "asset group {}",
    "user_group": "users in group {}",
    "environment": "assets in environment {}",
    "category": "{} alerts",
}


def scope_words(scope: str) -> str:
    """A scope name (levels/scopes.yaml: `default`, `kind:value`, or `declared`) as a newcomer reads it, with the
    name itself after a `kind:value` (what `--scope` and scopes.yaml take)."""
    kind, sep, value = scope.partition(":")
    words = SCOPE_WORDS.get(kind if sep else scope)
    if words is None:
        return scope
    return f"{words.format(value)} ({scope})" if sep else words


def outcome_of(episode: Episode) -> str:
    """The one OUTCOMES bucket an episode ends in. A failed execution is `failed` whoever allowed it: an action
    the controller tried and could not carry out is never "not run"."""
    if episode.execution_failed and not episode.executed:
        return "failed"
    if episode.auto_executed:
        return "ran alone"
    if episode.settlement == "approved":
        return "approved"
    if episode.settlement == "rejected":
        return "rejected"
    if episode.settlement == "timed_out":
        return "timed out"
    return "not run"  # denied, recommended, held, shadow, waiting for a person, or a veto window still open


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Scorecard:
    scope: str
    level: str
    decided: int = 0
    shadow: int = 0
    executed: int = 0
    """Executions that succeeded."""
    failed: int = 0
    """Executions that were tried and failed (no adapter, the enforcement point refused, a timeout)."""
    auto_executed: int = 0
    approvals_requested: int = 0
    granted: int = 0
    rejected: int = 0
    timed_out: int = 0
    veto_window_runs: int = 0
    held: int = 0
    votes: int = 0
    unsigned_votes: int = 0
    verification_failures: int = 0
    compensations: int = 0
    reverts: int = 0
    approval_latencies: list[float] = field(default_factory=list)
    """Seconds from the decision to a person's approval or rejection (timeouts are not latencies)."""
    contain_seconds: list[float] = field(default_factory=list)
    """Per incident whose first verified containment fell in this scope and level: first alert -> verified."""
    triage_mix: dict[str, int] = field(default_factory=dict)
    """Decisions per triage verdict the guard decided on (malicious, suspicious, noise; none: made without one)."""
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    """Decided actions per OUTCOMES bucket: they add up to `decided`."""

    def add(self, episode: Episode) -> None:
        self.decided += 1
        self.outcomes[outcome_of(episode)] += 1
        self.shadow += episode.shadow
        self.executed += episode.executed
        self.failed += episode.execution_failed and not episode.executed
        self.auto_executed += episode.auto_executed
        self.held += episode.held
        self.votes += len(episode.votes)
        self.unsigned_votes += sum(not vote.signed for vote in episode.votes)
        self.verification_failures += episode.verification_failed
        self.compensations += episode.compensated
        self.reverts += episode.reverted
        verdict = episode.triage_verdict or "none"
        self.triage_mix[verdict] = self.triage_mix.get(verdict, 0) + 1
        if episode.verdict == "approve" and not episode.shadow:
            self.approvals_requested += 1
        if episode.settlement == "approved":
            self.granted += 1
        elif episode.settlement == "rejected":
            self.rejected += 1
        elif episode.settlement in ("timed_out", "veto_window_passed"):
            self.timed_out += 1
            self.veto_window_runs += episode.settlement == "veto_window_passed"
        if episode.settlement in ("approved", "rejected") and episode.settled_at is not None:
            self.approval_latencies.append((episode.settled_at - episode.decided_at).total_seconds())

    @property
    def auto_share(self) -> float:
        """Share of decided actions the controller carried out without a person's approval."""
        return self.auto_executed / self.decided if self.decided else 0.0

    def summary(self) -> dict[str, Any]:
        latencies, contain = self.approval_latencies, self.contain_seconds
        return {
            "scope": self.scope,
            "level": self.level,
            "decided": self.decided,
            "shadow": self.shadow,
            "executed": self.executed,
            "failed": self.failed,
            "outcomes": dict(self.outcomes),
            "auto_executed": self.auto_executed,
            "auto_share": round(self.auto_share, 4),
            "approvals_requested": self.approvals_requested,
            "granted": self.granted,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
            "veto_window_runs": self.veto_window_runs,
            "held": self.held,
            "votes": self.votes,
            "unsigned_votes": self.unsigned_votes,
            "verification_failures": self.verification_failures,
            "compensations": self.compensations,
            "reverts": self.reverts,
            "approval_latency_p50_s": _round(statistics.median(latencies) if latencies else None),
            "approval_latency_p95_s": _round(_percentile(latencies, 0.95)),
            "incidents_contained": len(contain),
            "mttc_s": _round(statistics.fmean(contain) if contain else None),
            "ttc_p50_s": _round(statistics.median(contain) if contain else None),
            "triage_mix": dict(sorted(self.triage_mix.items(), key=lambda kv: TRIAGE_ORDER.index(kv[0]))),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


CardKey = Callable[[Episode], tuple[str, str]]


def by_scope_and_level(episode: Episode) -> tuple[str, str]:
    return episode.scope, episode.effective_level


def build_scorecards(
    incidents: Iterable[IncidentEpisodes], scope: str | None = None, key: CardKey = by_scope_and_level
) -> list[Scorecard]:
    """One scorecard per (scope, effective level) seen, sorted by scope then level; `scope` keeps only that one.
    `key` groups otherwise: a constant key gives one card of totals."""
    cards: dict[tuple[str, str], Scorecard] = {}

    def card(episode: Episode) -> Scorecard:
        scope_name, level = key(episode)
        return cards.setdefault((scope_name, level), Scorecard(scope=scope_name, level=level))

    for incident in incidents:
        kept = [e for e in incident.episodes if scope is None or e.scope == scope]
        for episode in kept:
            card(episode).add(episode)
        seconds = incident.seconds_to_contain
        if seconds is None:
            continue
        first = min(
            (e for e in kept if e.containment and e.verified_at is not None),
            key=lambda e: e.verified_at or e.decided_at,
            default=None,
        )
        if first is not None:
            card(first).contain_seconds.append(seconds)
    return [cards[key] for key in sorted(cards)]


@dataclass
class ApproverCard:
    """One person's approvals: how many, how they voted, how fast, and how many carried no verified signature."""

    approver: str
    approved: int = 0
    rejected: int = 0
    unsigned: int = 0
    latencies: list[float] = field(default_factory=list)
    """Seconds from the decision that asked for approval to this person's vote."""

    def summary(self) -> dict[str, Any]:
        votes = self.approved + self.rejected
        return {
            "approver": self.approver,
            "votes": votes,
            "approved": self.approved,
            "rejected": self.rejected,
            "unsigned": self.unsigned,
            "signed_share": round((votes - self.unsigned) / votes, 4) if votes else None,
            "vote_latency_p50_s": _round(statistics.median(self.latencies) if self.latencies else None),
        }


def build_approver_cards(incidents: Iterable[IncidentEpisodes], scope: str | None = None) -> list[ApproverCard]:
    """Per approver, over the kept episodes' counted votes; sorted by most votes, then name."""
    cards: dict[str, ApproverCard] = {}
    for incident in incidents:
        for episode in incident.episodes:
            if scope is not None and episode.scope != scope:
                continue
            for vote in episode.votes:
                card = cards.setdefault(vote.approver, ApproverCard(vote.approver))
                card.approved += vote.choice == "approve"
                card.rejected += vote.choice == "reject"
                card.unsigned += not vote.signed
                card.latencies.append((vote.at - episode.decided_at).total_seconds())
    return sorted(cards.values(), key=lambda c: (-(c.approved + c.rejected), c.approver))


@dataclass
class RuleCard:
    """People's answers on containment proposed for incidents whose alerts carry this rule: the false-positive
    signal per rule (the same answers that discount the rule in triage: outcomes.PeopleAnswer)."""

    rule_id: str
    containment: int = 0
    """Containment actions decided on incidents carrying the rule (shadow ones excluded)."""
    approved: int = 0
    rejected: int = 0
    reverted: int = 0
    """Approved or run, and later undone by a person's restore."""
    answered: int = 0
    """People approved, rejected or reverted it (the share's denominator)."""

    @property
    def overridden(self) -> int:
        return self.rejected + self.reverted

    def summary(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "containment": self.containment,
            "approved": self.approved,
            "rejected": self.rejected,
            "reverted": self.reverted,
            "override_share": round(self.overridden / self.answered, 4) if self.answered else None,
        }


def build_rule_cards(incidents: Iterable[IncidentEpisodes], scope: str | None = None) -> list[RuleCard]:
    """Per rule id, over the kept containment episodes; rules people overrode most first, then most approved."""
    cards: dict[str, RuleCard] = {}
    for incident in incidents:
        kept = [e for e in incident.episodes if e.containment and not e.shadow and (scope is None or e.scope == scope)]
        for rule in incident.rule_ids:
            for episode in kept:
                card = cards.setdefault(rule, RuleCard(rule))
                card.containment += 1
                card.approved += episode.settlement == "approved"
                answer = episode.people_answer
                card.rejected += answer == "rejected"
                card.reverted += answer == "reverted"
                card.answered += answer is not None or episode.settlement == "approved"
    return sorted(cards.values(), key=lambda c: (-c.overridden, -c.approved, c.rule_id))
