"""Promotion check: does a scope's shadow trial meet the target level's declared criteria?

A trial (levels/scopes.yaml `trials: {scope: level}`) records, beside each live decision, what the candidate
level would have decided. Its verdicts are weighed against what then happened to the live action:
- an action the candidate would have run alone that a person *rejected* is an override: the candidate would
  have done something a human refused;
- one a person approved is agreement; one nobody answered in time tells nothing and is counted apart;
- one that ran live and failed verification (or was compensated) counts against the candidate too.
Not enough evidence is a "not ready", never a pass: a check without human decisions to compare cannot pass
`max_override_share`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from autonomy_controller.controller.decision.levels import PromotionCriteria
from autonomy_controller.controller.ledger.outcomes import Episode, IncidentEpisodes

EXAMPLES_KEPT = 10


@dataclass(frozen=True)
class Criterion:
    name: str
    required: str
    measured: str
    met: bool


@dataclass
class TrialEvidence:
    """The trial's episodes for one scope and candidate level, counted."""

    scope: str
    level: str
    decisions: int = 0
    first_at: datetime | None = None
    would_run_alone: int = 0
    agreed: int = 0
    overridden: int = 0
    unanswered: int = 0
    failures: int = 0
    candidate_stricter: int = 0
    overrides: list[dict[str, Any]] = field(default_factory=list)

    def add(self, episode: Episode, trial: dict[str, Any]) -> None:
        self.decisions += 1
        self.first_at = episode.decided_at if self.first_at is None else min(self.first_at, episode.decided_at)
        if trial.get("verdict") != "execute":
            self.candidate_stricter += episode.verdict == "execute"
            return
        self.would_run_alone += 1
        if episode.settlement == "approved":
            self.agreed += 1
        elif episode.settlement == "rejected":
            self.overridden += 1
            if len(self.overrides) < EXAMPLES_KEPT:
                self.overrides.append(
                    {
                        "incident": episode.incident_key,
                        "action_id": episode.action_id,
                        "action": episode.action,
                        "decision_seq": episode.decision_seq,
                        "detail": episode.settled_by,
                    }
                )
        elif episode.settlement in ("timed_out", "veto_window_passed"):
            self.unanswered += 1
        self.failures += episode.executed and (episode.verification_failed or episode.compensated)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "first_at": self.first_at.isoformat() if self.first_at else None}

    def days(self, now: datetime) -> float:
        return 0.0 if self.first_at is None else (now - self.first_at).total_seconds() / 86_400

    @property
    def override_share(self) -> float | None:
        decided = self.agreed + self.overridden
        return self.overridden / decided if decided else None


def gather(incidents: Iterable[IncidentEpisodes], scope: str, level: str) -> TrialEvidence:
    evidence = TrialEvidence(scope=scope, level=level)
    for incident in incidents:
        for episode in incident.episodes:
            trial = episode.trial(scope, level)
            if trial is not None:
                evidence.add(episode, trial)
    return evidence


def judge(evidence: TrialEvidence, criteria: PromotionCriteria, now: datetime | None = None) -> list[Criterion]:
    """Each declared criterion with the measured value and whether it holds."""
    now = now or datetime.now(UTC)
    days = evidence.days(now)
    share = evidence.override_share
    people = evidence.agreed + evidence.overridden
    return [
        Criterion(
            "days in shadow", f">= {criteria.min_days_in_shadow:g}", f"{days:.1f}", days >= criteria.min_days_in_shadow
        ),
        Criterion(
            "trial decisions",
            f">= {criteria.min_decisions}",
            str(evidence.decisions),
            evidence.decisions >= criteria.min_decisions,
        ),
        Criterion(
            "override share",
            f"<= {criteria.max_override_share:.1%}",
            "no human decisions to compare" if share is None else f"{share:.1%} ({evidence.overridden}/{people})",
            share is not None and share <= criteria.max_override_share,
        ),
        Criterion(
            "verification failures",
            f"<= {criteria.max_verification_failures}",
            str(evidence.failures),
            evidence.failures <= criteria.max_verification_failures,
        ),
    ]
