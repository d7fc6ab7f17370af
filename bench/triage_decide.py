"""Decide a replay's incidents offline the way the workflow does, at every level, for a named config.

The workflow (workflows/incident.py) is one run per case (one attacker: `src:<address>`, controller/case/grouping.py):
it starts with the first alert, sleeps `settle_seconds`, then triages, plans and guards the alerts it has by
then; it decides again (`settle_seconds` after the alert that made it due) each time the case's evidence has
grown enough (controller/case/rounds.py: twice the alerts, or a new category; at most MAX_ROUNDS), until
`quiet_seconds` pass without an alert; an alert after that starts a new run. Here the clock is the alerts'
`observed_at` (the WAF's time stamp, whole seconds).

Per run: Guard.triage (with the source's history in the replay when asked: the other runs of the same address
that began before this one decides, their categories and sensors, and those already decided malicious), the
offline planner with the triage verdict, and Guard.decide_plan(triage=...) at each level.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from autonomy_controller.actions.registry import class_of
from autonomy_controller.controller.case import rounds as cases
from autonomy_controller.controller.case.grouping import incident_from_alerts, incident_key
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.runtime import open_guard
from autonomy_controller.controller.models import Alert, Category, GuardDecision, Incident, Level, Verdict
from autonomy_controller.controller.planning import OfflinePlanner
from autonomy_controller.controller.triage import SourceHistory
from autonomy_controller.workflows.contracts import IncidentStart

SETTLE_SECONDS = float(IncidentStart.model_fields["settle_seconds"].default)
QUIET_SECONDS = float(IncidentStart.model_fields["quiet_seconds"].default)
CONTAINMENT = frozenset({"contain_network", "contain_host", "contain_identity"})
# Strongest first: a source "contained alone" when any of its actions executes, and so on down.
VERDICT_ORDER = (Verdict.EXECUTE, Verdict.APPROVE, Verdict.RECOMMEND, Verdict.DENY)


@dataclass(frozen=True)
class Run:
    """One workflow run: the case as each decision round saw it (the first: the alerts within the settle window)
    and how many alerts it collects in all."""

    rounds: tuple[tuple[Incident, datetime], ...]
    alerts_total: int

    @property
    def incident(self) -> Incident:
        return self.rounds[0][0]

    @property
    def decided_at(self) -> datetime:
        return self.rounds[0][1]

    @property
    def source(self) -> str:
        return self.incident.src_ip or self.incident.key


def workflow_runs(alerts: Iterable[Alert], settle: float = SETTLE_SECONDS, quiet: float = QUIET_SECONDS) -> list[Run]:
    """The runs the workflow would make of these alerts, in the order they decide."""
    groups: dict[str, list[list[Alert]]] = {}
    for alert in sorted(alerts, key=lambda a: a.observed_at):  # stable: audit-log order within a second
        runs = groups.setdefault(incident_key(alert), [])
        if runs and (alert.observed_at - runs[-1][-1].observed_at).total_seconds() <= quiet:
            runs[-1].append(alert)
        else:
            runs.append([alert])
    result = []
    for key, runs in groups.items():
        for members in runs:
            result.append(Run(decision_rounds(key, members, settle), len(members)))
    return sorted(result, key=lambda r: (r.decided_at, r.incident.key))


def decision_rounds(key: str, members: list[Alert], settle: float) -> tuple[tuple[Incident, datetime], ...]:
    """When the run decides and on which alerts: settle after the first alert, then settle after each alert that
    makes the case due again (controller/case/rounds.py), as the workflow's `_next_round` does."""
    rounds: list[tuple[Incident, datetime]] = []
    at = members[0].observed_at + timedelta(seconds=settle)
    while True:
        seen = [a for a in members if a.observed_at <= at]
        rounds.append((incident_from_alerts(key, seen), at))
        decided = (len(seen), frozenset(a.category for a in seen))
        categories: set[Category] = set(decided[1])
        trigger = None
        for count, alert in enumerate(members, 1):
            categories.add(alert.category)
            if alert.observed_at > at and cases.due(count, categories, decided, len(rounds)):
                trigger = alert.observed_at
                break
        if trigger is None:
            return tuple(rounds)
        at = trigger + timedelta(seconds=settle)


@dataclass(frozen=True)
class Outcome:
    """What one run got at one level: the triage, the playbook, and what happens to its actions."""

    key: str
    source: str
    alerts: int
    alerts_total: int
    verdict: str
    confidence: float
    score: float
    playbook: str | None
    containment: str | None
    """The strongest verdict any containment action got (execute > approve > recommend > deny); None: none."""
    for_person: bool
    """A person has something to do: an action waits for a vote or is only recommended, or a ticket is opened."""
    approvals: int
    rounds: int = 1
    """How often the run decided (controller/case/rounds.py)."""


def outcome_of(
    run: Run, incident: Incident, triage: tuple[str, float, float], playbook: str | None, decisions: list[GuardDecision]
) -> Outcome:
    contained = {d.verdict for d in decisions if class_of(d.action) in CONTAINMENT}
    ticket = any(class_of(d.action) == "ticket" and d.verdict in (Verdict.EXECUTE, Verdict.APPROVE) for d in decisions)
    asks = any(d.verdict in (Verdict.APPROVE, Verdict.RECOMMEND) for d in decisions)
    return Outcome(
        key=incident.key,
        source=run.source,
        alerts=len(incident.alerts),
        alerts_total=run.alerts_total,
        verdict=triage[0],
        confidence=triage[1],
        score=triage[2],
        playbook=playbook,
        containment=next((v.value for v in VERDICT_ORDER if v in contained), None),
        for_person=asks or ticket,
        approvals=sum(d.verdict is Verdict.APPROVE for d in decisions),
    )


@dataclass
class _History:
    """The replay's runs so far, per source, for SourceHistory: what the ledger would hold at decision time."""

    runs: dict[str, list[tuple[Run, str]]] = field(default_factory=dict)

    def of(self, run: Run, everything: list[Run]) -> SourceHistory:
        others = [o for o in everything if o.source == run.source and o is not run]
        begun = [o for o in others if o.incident.first_seen <= run.decided_at]
        decided = self.runs.get(run.source, [])
        return SourceHistory(
            prior_incidents=len(begun),
            prior_alerts=sum(len(o.incident.alerts) for o in begun),
            prior_malicious=sum(
                1 for o, verdict in decided if verdict == "malicious" and o.decided_at < run.decided_at
            ),
            categories=frozenset(o.incident.category for o in begun),
            sensors=frozenset(a.source for o in begun for a in o.incident.alerts),
        )

    def add(self, run: Run, verdict: str) -> None:
        self.runs.setdefault(run.source, []).append((run, verdict))


@dataclass(frozen=True)
class Variant:
    """A config to decide with: its settings (levels, policies, playbooks) and whether triage sees history."""

    name: str
    settings: Settings
    history: bool
    what: str


@contextmanager
def deciding(variant: Variant) -> Iterator[tuple[Guard, OfflinePlanner]]:
    with open_guard(variant.settings) as guard:
        if isinstance(guard, UnavailableGuard):
            raise RuntimeError(f"{variant.name}: the guard could not load its config: {guard.reason}")
        yield guard, OfflinePlanner(variant.settings.playbooks_dir, asset_groups=guard.asset_groups)


def decide_runs(runs: list[Run], variant: Variant, levels: list[Level]) -> dict[Level, list[Outcome]]:
    """Every run at every level with this variant's config (one guard and planner for all of them); a run's
    outcome is the strongest any of its rounds reached (a later round's approval replaces an earlier one's)."""
    outcomes: dict[Level, list[Outcome]] = {level: [] for level in levels}
    history = _History()
    with deciding(variant) as (guard, planner):
        for run in runs:
            past = history.of(run, runs) if variant.history else None
            per_level: dict[Level, list[Outcome]] = {level: [] for level in levels}
            verdict = "noise"
            for incident, _ in run.rounds:
                incident = guard.enrich(incident)
                result = guard.triage(incident, past)
                verdict = result.verdict.value
                summary = guard.triage_summary(result)
                plan = planner.plan(incident, summary.verdict)
                triage = (result.verdict.value, result.confidence, result.score)
                for level in levels:
                    decisions = guard.decide_plan(incident, plan, level=level, triage=summary, now=incident.last_seen)
                    per_level[level].append(outcome_of(run, incident, triage, plan.playbook, decisions))
            history.add(run, verdict)
            for level in levels:
                outcomes[level].append(strongest(per_level[level]))
    return outcomes


def strongest(rounds: list[Outcome]) -> Outcome:
    """One run's outcome over its rounds: the strongest containment, a person asked if any round asked, the most
    approvals any one round asked for, and the last round's triage."""
    rank = {v.value: n for n, v in enumerate(VERDICT_ORDER)}
    contained = [o.containment for o in rounds if o.containment is not None]
    last = rounds[-1]
    return replace(
        last,
        containment=min(contained, key=rank.__getitem__) if contained else None,
        for_person=any(o.for_person for o in rounds),
        approvals=max(o.approvals for o in rounds),
        rounds=len(rounds),
    )
