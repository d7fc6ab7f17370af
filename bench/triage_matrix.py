"""A confusion matrix over the replay's SOURCES (benign vs attack) from the decided runs, and the load on people.

A source's outcome is the strongest over its incidents: contained alone when any of its containment actions
executes, waiting for approval when none executes but one waits for a vote, else nothing (recommended, denied,
or no containment proposed). "In front of a person": any of its incidents gives a person something to do
(bench/triage_decide.py `Outcome.for_person`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bench.triage_decide import Outcome

BENIGN, ATTACK = "normal", "anomalous"


@dataclass(frozen=True)
class Matrix:
    benign: int
    benign_alerted: int
    benign_contained_alone: int
    """The number that must be 0 at L3."""
    benign_to_person: int
    attack: int
    attack_alerted: int
    attack_contained_alone: int
    attack_waiting_approval: int
    attack_nothing: int
    alerts: int
    incidents: int
    incidents_for_person: int
    approvals: int
    """Actions waiting for a vote, over all incidents."""

    @property
    def alerts_per_incident(self) -> float | None:
        return round(self.alerts / self.incidents, 1) if self.incidents else None

    @property
    def for_person_per_1000_alerts(self) -> float | None:
        return round(1000 * self.incidents_for_person / self.alerts, 1) if self.alerts else None

    @property
    def reduction(self) -> float | None:
        """Alerts per item for a person (None when nothing reaches a person)."""
        return round(self.alerts / self.incidents_for_person, 1) if self.incidents_for_person else None

    @property
    def attack_handled_share(self) -> float | None:
        """Attack sources contained alone or waiting for approval."""
        handled = self.attack_contained_alone + self.attack_waiting_approval
        return round(handled / self.attack, 3) if self.attack else None

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "alerts_per_incident": self.alerts_per_incident,
            "for_person_per_1000_alerts": self.for_person_per_1000_alerts,
            "reduction": self.reduction,
            "attack_handled_share": self.attack_handled_share,
        }


def matrix(outcomes: list[Outcome], labels: Mapping[str, str]) -> Matrix:
    """`labels`: source -> "normal" | "anomalous" (the manifest's), every replay source, alerted or not."""
    by_source: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_source.setdefault(outcome.source, []).append(outcome)

    def count(label: str, containment: str | None = "*", person: bool | None = None) -> int:
        total = 0
        for source, of in labels.items():
            runs = by_source.get(source, [])
            if of != label:
                continue
            strongest = next((v for v in ("execute", "approve") if any(r.containment == v for r in runs)), None)
            if containment != "*" and strongest != containment:
                continue
            if person is not None and any(r.for_person for r in runs) != person:
                continue
            total += 1
        return total

    alerted = {source for source in by_source}
    return Matrix(
        benign=count(BENIGN),
        benign_alerted=sum(1 for s, of in labels.items() if of == BENIGN and s in alerted),
        benign_contained_alone=count(BENIGN, "execute"),
        benign_to_person=count(BENIGN, person=True),
        attack=count(ATTACK),
        attack_alerted=sum(1 for s, of in labels.items() if of == ATTACK and s in alerted),
        attack_contained_alone=count(ATTACK, "execute"),
        attack_waiting_approval=count(ATTACK, "approve"),
        attack_nothing=count(ATTACK, None),
        alerts=sum(o.alerts_total for o in outcomes),
        incidents=len(outcomes),
        incidents_for_person=sum(o.for_person for o in outcomes),
        approvals=sum(o.approvals for o in outcomes),
    )


COLUMNS = (
    ("level", 5),
    ("config", 11),
    ("benign alone", 12),
    ("benign->person", 14),
    ("attack alone", 12),
    ("attack approve", 14),
    ("attack nothing", 14),
    ("handled", 7),
    ("incidents", 9),
    ("for person", 10),
    ("/1k alerts", 10),
    ("reduction", 9),
)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(title: str, rows: list[tuple[str, str, Matrix]]) -> str:
    """A fixed-width table for people: one row per (level, config)."""
    lines = [title, "  ".join(name.rjust(width) for name, width in COLUMNS)]
    for level, config, m in rows:
        handled = f"{100 * m.attack_handled_share:.0f}%" if m.attack_handled_share is not None else "-"
        values = (
            level, config,
            f"{m.benign_contained_alone}/{m.benign}", f"{m.benign_to_person}/{m.benign}",
            f"{m.attack_contained_alone}/{m.attack}", f"{m.attack_waiting_approval}/{m.attack}",
            f"{m.attack_nothing}/{m.attack}", handled,
            m.incidents, m.incidents_for_person, m.for_person_per_1000_alerts,
            f"{m.reduction:g}x" if m.reduction is not None else "-",
        )  # fmt: skip
        lines.append("  ".join(_cell(v).rjust(width) for v, (_, width) in zip(values, COLUMNS, strict=True)))
    return "\n".join(lines)
