"""Triage in the what-if replay: how the incidents' triage verdicts split, and what a triage change does.

Triage does not depend on the level, so each config triages an incident once (controller/oversight/simulate.py passes
that triage to the planner, whose playbooks match on it, and to the guard at every level, as the workflow
does). Counted here is the summary the guard was given (TriageSummary: the controller's verdict, without
points the request's own text earned), because that is what moves the action verdicts.

With a candidate config whose levels/triage.yaml differs, an incident whose triage changed in what the policy
reads (verdict or confidence) becomes one `TriageChange`, listing the decisions that changed *because of it*:
those the candidate would have decided as the base did had it been given the base's triage (a counterfactual
run of the candidate, so a threshold or policy change made in the same candidate is not blamed on triage).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from autonomy_controller.controller.models import TRIAGE_RANK, Incident, TriageSummary

TRIAGE_VERDICTS: list[str] = sorted(TRIAGE_RANK, key=TRIAGE_RANK.__getitem__, reverse=True)
"""Most to least malicious: the order of every table and bar."""


def _shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {v: (counts[v] / total if total else 0.0) for v in TRIAGE_VERDICTS}


@dataclass
class TriageTally:
    """One config's triage verdicts: how many incidents, and how many of their alerts, got each."""

    incidents: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)

    def add(self, incident: Incident, triage: TriageSummary) -> None:
        self.incidents[triage.verdict] += 1
        self.alerts[triage.verdict] += len(incident.alerts)

    def incident_shares(self) -> dict[str, float]:
        return _shares(self.incidents)

    def alert_shares(self) -> dict[str, float]:
        return _shares(self.alerts)

    def as_json(self) -> dict[str, Any]:
        return {
            "incidents": {v: self.incidents[v] for v in TRIAGE_VERDICTS},
            "alerts": {v: self.alerts[v] for v in TRIAGE_VERDICTS},
            "incident_shares": self.incident_shares(),
            "alert_shares": self.alert_shares(),
        }


@dataclass(frozen=True)
class TriageReading:
    """What one config's triage said about an incident: the policy reads verdict and confidence."""

    verdict: str
    confidence: float
    score: float | None

    @classmethod
    def of(cls, summary: TriageSummary) -> TriageReading:
        return cls(summary.verdict, summary.confidence, summary.score)

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "confidence": self.confidence, "score": self.score}

    def __str__(self) -> str:
        score = "" if self.score is None else f", score {self.score:g}"
        return f"{self.verdict} ({self.confidence:g}{score})"


def triage_changed(old: TriageSummary | None, new: TriageSummary | None) -> bool:
    """Whether the policy was given a different triage (a score that moves without moving verdict or
    confidence changes no decision, and would flood the diff)."""
    if old is None or new is None:
        return False
    return (old.verdict, old.confidence) != (new.verdict, new.confidence)


@dataclass(frozen=True)
class CausedChange:
    """A decision whose verdict the triage change flipped."""

    level: str
    action_id: str
    action: str
    old_verdict: str | None
    new_verdict: str | None

    def __str__(self) -> str:
        return (
            f"{self.level} {self.action_id} {self.action}: {self.old_verdict or 'none'} -> {self.new_verdict or 'none'}"
        )


@dataclass(frozen=True)
class TriageChange:
    """One incident whose triage differs between the base and the candidate config, and what that flipped."""

    incident: str
    first_seen: str
    category: str
    alerts: int
    old: TriageReading
    new: TriageReading
    caused: list[CausedChange]

    @property
    def verdict_changed(self) -> bool:
        """The triage verdict itself changed (not only its confidence)."""
        return self.old.verdict != self.new.verdict

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "triage_diff",
            "incident": self.incident,
            "first_seen": self.first_seen,
            "category": self.category,
            "alerts": self.alerts,
            "old": self.old.as_json(),
            "new": self.new.as_json(),
            "triage_verdict_changed": self.verdict_changed,
            "decisions_changed": [
                {
                    "level": c.level,
                    "action_id": c.action_id,
                    "action": c.action,
                    "old_verdict": c.old_verdict,
                    "new_verdict": c.new_verdict,
                }
                for c in self.caused
            ],
        }
