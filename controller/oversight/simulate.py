"""What-if replay: historical alerts through candidate configs (levels + policies), nothing executed.

`autonomy simulate` answers "what would the controller have done with last month's alerts at L3, or with this
policy change?" without Temporal, adapters or a ledger: ingest -> bounded grouping -> offline planner -> guard,
per config and per level. Only counters and bounded buffers are kept, so a year of alerts replays in flat
memory:

- grouping is `stream_incidents`, not `group_alerts` (which buffers the whole input): an incident stays open
  while its key keeps seeing alerts and is closed (planned, judged, dropped) once `window` alerts have passed
  without one for it, when more than `max_open` incidents are open (the least recently active closes), or when
  it reaches `max_alerts` alerts (a storm is judged in slices of that size, each a fresh incident with the same
  key). An alert count window, not a time window, because replayed files are often not in time order and a
  count bounds memory directly; in time-ordered input a long idle gap simply splits an incident in two, which
  is what the live loop would see as a second storm anyway.
- every (config, level) pair is a `Tally` of verdict counts by action class and by alert category, plus the
  approvals (and approver votes) the analysts would have had to give.
- with a second ("against") config, every decision whose verdict or reasons differ becomes one `DiffRow`,
  yielded to the caller and not kept here; an incident whose triage differs becomes one `TriageChange`
  (controller/oversight/simulate_triage.py), yielded just before its decisions' rows.

Triage and the planner run once per incident and config (neither depends on the level); the guard decides
that plan once per level, given that triage, as the workflow does (without the ledger's history of the
source: a replay has none).
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autonomy_controller.actions.registry import class_of
from autonomy_controller.controller.attackers.impact import case_impact
from autonomy_controller.controller.case.grouping import incident_from_alerts, incident_key
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.models import (
    Alert,
    Category,
    GuardDecision,
    Incident,
    Level,
    Provenance,
    Severity,
    TriageSummary,
    Verdict,
)
from autonomy_controller.controller.oversight.simulate_triage import (
    CausedChange,
    TriageChange,
    TriageReading,
    TriageTally,
    triage_changed,
)
from autonomy_controller.controller.planning import OfflinePlanner

SCOPED = "scoped"
"""The level label of decisions taken at each scope's own assigned level (levels/scopes.yaml)."""

DEFAULT_WINDOW = 5_000
DEFAULT_MAX_OPEN = 10_000
DEFAULT_MAX_ALERTS = 1_000


def stream_incidents(
    alerts: Iterable[Alert],
    window: int = DEFAULT_WINDOW,
    max_open: int = DEFAULT_MAX_OPEN,
    max_alerts: int = DEFAULT_MAX_ALERTS,
) -> Iterator[Incident]:
    """Incidents from a stream of alerts, holding at most `max_open` incidents of at most `max_alerts` alerts.

    Same key as `group_alerts` (one case per source address, else asset, user or sensor rule); see the module
    docstring for when an incident closes. Everything still open is flushed at the end, in order of last activity.
    """
    if window < 1 or max_open < 1 or max_alerts < 1:
        raise ValueError("window, max_open and max_alerts must be at least 1")
    open_groups: OrderedDict[str, tuple[int, list[Alert]]] = OrderedDict()  # least recently active first
    for seen, alert in enumerate(alerts):
        key = incident_key(alert)
        members = open_groups.pop(key, (seen, []))[1]
        members.append(alert)
        if len(members) >= max_alerts:
            yield incident_from_alerts(key, members)
        else:
            open_groups[key] = (seen, members)
        while open_groups:
            oldest_key, (last_seen, oldest) = next(iter(open_groups.items()))
            if seen - last_seen < window and len(open_groups) <= max_open:
                break
            del open_groups[oldest_key]
            yield incident_from_alerts(oldest_key, oldest)
    for key, (_, members) in open_groups.items():
        yield incident_from_alerts(key, members)


@dataclass
class Tally:
    """Counters for one (config, level): how many decisions of each verdict, by action class and by category."""

    incidents: int = 0
    decisions: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    by_class: dict[str, Counter[str]] = field(default_factory=dict)
    by_category: dict[str, Counter[str]] = field(default_factory=dict)
    approvals: int = 0
    """Decisions with verdict `approve`: each is an analyst's task."""
    approver_votes: int = 0
    """The sum of those decisions' quorums: how many people have to vote in all."""

    def add(self, incident: Incident, decisions: list[GuardDecision]) -> None:
        self.incidents += 1
        for decision in decisions:
            verdict = decision.verdict.value
            self.decisions += 1
            self.verdicts[verdict] += 1
            self.by_class.setdefault(class_of(decision.action), Counter())[verdict] += 1
            self.by_category.setdefault(incident.category.value, Counter())[verdict] += 1
            if decision.verdict is Verdict.APPROVE:
                self.approvals += 1
                self.approver_votes += decision.policy.quorum if decision.policy else 1

    def shares(self) -> dict[str, float]:
        """Each verdict's share of all decisions (0 when there were none)."""
        return {v.value: (self.verdicts[v.value] / self.decisions if self.decisions else 0.0) for v in Verdict}

    def as_json(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "decisions": self.decisions,
            "verdicts": {v.value: self.verdicts[v.value] for v in Verdict},
            "shares": self.shares(),
            "by_class": {k: dict(c) for k, c in sorted(self.by_class.items())},
            "by_category": {k: dict(c) for k, c in sorted(self.by_category.items())},
            "approvals": self.approvals,
            "approver_votes": self.approver_votes,
        }


@dataclass(frozen=True)
class SimConfig:
    """A candidate configuration: a name for reports and the settings pointing at its levels and policies."""

    name: str
    settings: Settings

    @classmethod
    def from_dirs(cls, name: str, base: Settings, levels_dir: Path | None, policies_dir: Path | None) -> SimConfig:
        """`base` with its levels and/or policies replaced (Settings is frozen: a modified copy)."""
        settings = base
        if levels_dir is not None:
            settings = replace(settings, levels_dir=levels_dir.resolve())
        if policies_dir is not None:
            settings = replace(settings, policies_dir=policies_dir.resolve())
        return cls(name, settings)


@dataclass(frozen=True)
class RiskChange:
    name: str
    old: float | None
    new: float | None


@dataclass(frozen=True)
class DiffRow:
    """One decision that differs between the base and the candidate config: what changed and why.

    A decision differs when its verdict or any stated reason (policy or level resolution) does; risk factors
    that moved are reported on such rows, but a factor that moves without changing verdict or reasons is not a
    row of its own (the scores it feeds are quoted in the reasons, so a score change that matters shows up)."""

    incident: str
    first_seen: str
    """With the key, names the incident: a key closed by the grouping window and seen again is a new incident."""
    category: str
    action_id: str
    action: str
    level: str
    old_verdict: str | None
    new_verdict: str | None
    reasons_added: list[str]
    reasons_removed: list[str]
    risk_changes: list[RiskChange]
    old_effective_level: str | None
    new_effective_level: str | None
    old_risk: float | None
    new_risk: float | None
    old_triage: TriageReading | None = None
    new_triage: TriageReading | None = None
    """The incident's triage as each config's guard was given it."""
    because_of_triage: bool = False
    """The verdict changed because the triage did: given the base's triage, the candidate decides as the base."""

    @property
    def verdict_changed(self) -> bool:
        return self.old_verdict != self.new_verdict

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "diff",
            "incident": self.incident,
            "first_seen": self.first_seen,
            "category": self.category,
            "action_id": self.action_id,
            "action": self.action,
            "level": self.level,
            "old_verdict": self.old_verdict,
            "new_verdict": self.new_verdict,
            "verdict_changed": self.verdict_changed,
            "reasons_added": self.reasons_added,
            "reasons_removed": self.reasons_removed,
            "risk_changes": [{"factor": c.name, "old": c.old, "new": c.new} for c in self.risk_changes],
            "old_effective_level": self.old_effective_level,
            "new_effective_level": self.new_effective_level,
            "old_risk": self.old_risk,
            "new_risk": self.new_risk,
            "old_triage": self.old_triage.as_json() if self.old_triage else None,
            "new_triage": self.new_triage.as_json() if self.new_triage else None,
            "because_of_triage": self.because_of_triage,
        }


def _reasons(decision: GuardDecision) -> list[str]:
    """Every stated reason, the policy's and the level resolution's: a changed threshold or operating domain
    shows up here even when the policy words its reason the same way."""
    return [*decision.reasons, *decision.level_reasons]


def _factors(decision: GuardDecision | None) -> dict[str, float]:
    if decision is None or decision.risk is None:
        return {}
    return {f.name: f.value for f in decision.risk.factors}


def diff_decisions(
    incident: Incident,
    level: str,
    old: list[GuardDecision],
    new: list[GuardDecision],
    triage: tuple[TriageSummary | None, TriageSummary | None] = (None, None),
) -> Iterator[DiffRow]:
    """Rows for decisions whose verdict or reasons differ, matched by action id and name (an action only one
    plan proposed is a row with the other side's verdict None); `triage` is each side's, for the rows."""
    old_by = {(d.action_id, d.action): d for d in old}
    new_by = {(d.action_id, d.action): d for d in new}
    for key in [*old_by, *(k for k in new_by if k not in old_by)]:
        before, after = old_by.get(key), new_by.get(key)
        before_reasons = _reasons(before) if before else []
        after_reasons = _reasons(after) if after else []
        if (
            before is not None
            and after is not None
            and before.verdict is after.verdict
            and before_reasons == after_reasons
        ):
            continue
        old_f, new_f = _factors(before), _factors(after)
        yield DiffRow(
            incident=incident.key,
            first_seen=incident.first_seen.isoformat(),
            category=incident.category.value,
            action_id=key[0],
            action=key[1],
            level=level,
            old_verdict=before.verdict.value if before else None,
            new_verdict=after.verdict.value if after else None,
            reasons_added=[r for r in after_reasons if r not in before_reasons],
            reasons_removed=[r for r in before_reasons if r not in after_reasons],
            risk_changes=[
                RiskChange(name, old_f.get(name), new_f.get(name))
                for name in [*old_f, *(n for n in new_f if n not in old_f)]
                if old_f.get(name) != new_f.get(name)
            ],
            old_effective_level=before.effective_level.value if before else None,
            new_effective_level=after.effective_level.value if after else None,
            old_risk=before.risk.score if before and before.risk else None,
            new_risk=after.risk.score if after and after.risk else None,
            old_triage=TriageReading.of(triage[0]) if triage[0] else None,
            new_triage=TriageReading.of(triage[1]) if triage[1] else None,
        )


@dataclass(frozen=True)
class _Judged:
    """One config's reading of one incident: its triage and, per level, the decisions."""

    triage: TriageSummary | None
    decisions: list[list[GuardDecision]]


@dataclass
class _Judge:
    """One config, opened: its guard and its offline planner (both built once: loading is the slow part)."""

    config: SimConfig
    guard: Guard | UnavailableGuard
    planner: OfflinePlanner

    def decide(self, incident: Incident, levels: list[Level | None], as_if: TriageSummary | None = None) -> _Judged:
        """Triage once, plan once on that verdict, decide at each level; `as_if` replaces this config's triage
        (the counterfactual that tells a triage change from the rest of a candidate's changes)."""
        enriched = self.guard.enrich(incident)
        triage = as_if
        if triage is None and isinstance(self.guard, Guard):
            triage = self.guard.triage_summary(self.guard.triage(enriched))
        # The impact verdict, as the workflow's plan step assesses it: playbooks match on it, the policy reads it.
        impact = case_impact(self.guard, enriched.alerts, self.config.settings)
        plan = self.planner.plan(enriched, triage.verdict if triage else None, impact.verdict if impact else None)
        plan = plan.model_copy(update={"impact": impact})
        # The policy judges a past incident at its last alert's time (input.time), not by today's clock.
        at = enriched.last_seen
        return _Judged(
            triage, [self.guard.decide_plan(enriched, plan, level, triage=triage, now=at) for level in levels]
        )


@dataclass
class SimulationResult:
    """What a run leaves behind: counters only (diff rows went to the caller as they were found)."""

    configs: list[str]
    levels: list[str]
    alerts: int = 0
    incidents: int = 0
    diff_rows: int = 0
    verdict_changes: int = 0
    triage_changes: int = 0
    """Incidents whose triage (verdict or confidence) differs between the configs."""
    triage_verdict_changes: int = 0
    decisions_changed_by_triage: int = 0
    unavailable: dict[str, str] = field(default_factory=dict)
    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    triage: dict[str, TriageTally] = field(default_factory=dict)
    """Per config: the incidents' (and their alerts') triage verdicts."""

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "summary",
            "configs": self.configs,
            "levels": self.levels,
            "alerts": self.alerts,
            "incidents": self.incidents,
            "diff_rows": self.diff_rows,
            "verdict_changes": self.verdict_changes,
            "triage_changes": self.triage_changes,
            "triage_verdict_changes": self.triage_verdict_changes,
            "decisions_changed_by_triage": self.decisions_changed_by_triage,
            "triage": {config: tally.as_json() for config, tally in self.triage.items()},
            "unavailable": self.unavailable,
            "results": [
                {"config": config, "level": level, **tally.as_json()} for (config, level), tally in self.tallies.items()
            ],
        }

    def csv_rows(self) -> Iterator[dict[str, Any]]:
        """One row per (config, level, dimension, value): the verdict counts, flat for a spreadsheet."""
        for (config, level), tally in self.tallies.items():
            groups: list[tuple[str, dict[str, Counter[str]]]] = [
                ("all", {"all": tally.verdicts}),
                ("action_class", tally.by_class),
                ("category", tally.by_category),
            ]
            for dimension, counters in groups:
                for value, counts in sorted(counters.items()):
                    total = sum(counts.values())
                    yield {
                        "config": config,
                        "level": level,
                        "dimension": dimension,
                        "value": value,
                        "decisions": total,
                        **{v.value: counts[v.value] for v in Verdict},
                        "approvals": tally.approvals if dimension == "all" else counts[Verdict.APPROVE.value],
                        "approver_votes": tally.approver_votes if dimension == "all" else "",
                    }


CSV_FIELDS = ["config", "level", "dimension", "value", "decisions", *(v.value for v in Verdict), "approvals"]
CSV_FIELDS.append("approver_votes")


class Simulation:
    """Replays incidents through one config, or two (base and candidate), at the given levels.

    Use as a context manager (guards may own an OPA process); `run` yields the diff rows as they are found and
    fills `result` with the counters.
    """

    def __init__(
        self,
        base: SimConfig,
        against: SimConfig | None = None,
        levels: list[Level] | None = None,
        scoped: bool = False,
        engine: EngineName | None = None,
    ) -> None:
        self.configs = [base] if against is None else [base, against]
        if len({c.name for c in self.configs}) != len(self.configs):
            raise ValueError("the configs need distinct names")
        self.levels: list[Level | None] = [None] if scoped else list(levels or list(Level))
        self.engine = engine
        self.result = SimulationResult(
            configs=[c.name for c in self.configs], levels=[lv.value if lv else SCOPED for lv in self.levels]
        )
        self._stack = ExitStack()
        self._judges: list[_Judge] = []

    def __enter__(self) -> Simulation:
        try:
            self._open()
        except BaseException:
            self._stack.close()  # an OPA already started for the first config must not outlive a failure
            raise
        return self

    def _open(self) -> None:
        for config in self.configs:
            guard = self._stack.enter_context(open_guard(config.settings, self.engine))
            if isinstance(guard, UnavailableGuard):
                self.result.unavailable[config.name] = guard.reason
            planner = OfflinePlanner(config.settings.playbooks_dir, asset_groups=guard.asset_groups)
            self._judges.append(_Judge(config, guard, planner))
            for label in self.result.levels:
                self.result.tallies[(config.name, label)] = Tally()
            self.result.triage[config.name] = TriageTally()

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def judge(self, incident: Incident) -> Iterator[DiffRow | TriageChange]:
        """Decide one incident with every config at every level; count, and yield the differences.

        A generator, so that diff rows stream: the incident is judged (and counted) only when iterated."""
        self.result.incidents += 1
        self.result.alerts += len(incident.alerts)
        outcomes = [judge.decide(incident, self.levels) for judge in self._judges]
        for judge, outcome in zip(self._judges, outcomes, strict=True):
            if outcome.triage is not None:
                self.result.triage[judge.config.name].add(incident, outcome.triage)
            for label, decisions in zip(self.result.levels, outcome.decisions, strict=True):
                self.result.tallies[(judge.config.name, label)].add(incident, decisions)
        if len(outcomes) != 2:
            return
        base, candidate = outcomes
        triage = (base.triage, candidate.triage)
        rows = [
            row
            for label, old, new in zip(self.result.levels, base.decisions, candidate.decisions, strict=True)
            for row in diff_decisions(incident, label, old, new, triage)
        ]
        if triage_changed(*triage):
            assert base.triage is not None and candidate.triage is not None  # triage_changed says both exist
            rows = self._blame_triage(incident, base.triage, rows)
            change = TriageChange(
                incident=incident.key,
                first_seen=incident.first_seen.isoformat(),
                category=incident.category.value,
                alerts=len(incident.alerts),
                old=TriageReading.of(base.triage),
                new=TriageReading.of(candidate.triage),
                caused=[
                    CausedChange(r.level, r.action_id, r.action, r.old_verdict, r.new_verdict)
                    for r in rows
                    if r.because_of_triage
                ],
            )
            self.result.triage_changes += 1
            self.result.triage_verdict_changes += change.verdict_changed
            self.result.decisions_changed_by_triage += len(change.caused)
            yield change
        for row in rows:
            self.result.diff_rows += 1
            self.result.verdict_changes += row.verdict_changed
            yield row

    def _blame_triage(self, incident: Incident, base_triage: TriageSummary, rows: list[DiffRow]) -> list[DiffRow]:
        """Mark the verdict changes the triage change caused: the candidate, given the base's triage (and so
        the base's playbook choice), decides them as the base did. Run only for incidents whose triage and
        some verdict both changed, at the levels where a verdict did: rare, so the replay stays fast."""
        flipped_levels = {row.level for row in rows if row.verdict_changed}
        if not flipped_levels:
            return rows
        levels = [lv for lv, label in zip(self.levels, self.result.levels, strict=True) if label in flipped_levels]
        labels = [label for label in self.result.levels if label in flipped_levels]
        as_if = self._judges[1].decide(incident, levels, as_if=base_triage)
        verdicts = {
            (label, d.action_id, d.action): d.verdict.value
            for label, decisions in zip(labels, as_if.decisions, strict=True)
            for d in decisions
        }
        return [
            replace(row, because_of_triage=verdicts.get((row.level, row.action_id, row.action)) == row.old_verdict)
            if row.verdict_changed
            else row
            for row in rows
        ]

    def run(
        self, incidents: Iterable[Incident], on_incident: Callable[[Incident], None] | None = None
    ) -> Iterator[DiffRow | TriageChange]:
        """Judge every incident as it arrives (streaming); `on_incident` is for a progress display."""
        if not self._judges:
            raise RuntimeError("enter the Simulation (with ...) before running it")
        for incident in incidents:
            yield from self.judge(incident)
            if on_incident is not None:
                on_incident(incident)


_CATEGORIES = [
    (Category.SQLI, "web"),
    (Category.XSS, "web"),
    (Category.RCE, "web"),
    (Category.LFI, "web"),
    (Category.SCANNER, "web"),
    (Category.PROTOCOL, "web"),
    (Category.BRUTE_FORCE, "identity"),
    (Category.MALWARE, "host"),
    (Category.C2, "host"),
    (Category.LATERAL_MOVEMENT, "host"),
    (Category.EXFILTRATION, "host"),
]
_TARGETS = [("web-01", "198.51.100.1"), ("web-02", "10.20.0.12"), ("web-stg-01", "10.30.0.11"), (None, None)]


SYNTHETIC = "synthetic"
"""The made-up sensor of `synthetic_alerts` (a trusted native feed)."""


def synthetic_alerts(count: int, seed: int = 7, sources: int = 5_000, burst: int = 20) -> Iterator[Alert]:
    """`count` alerts, generated lazily (for benchmarks and tests): many public source addresses and every kind
    of category, severity, confidence and blocked flag, in bursts of up to `burst` alerts per source, so grouping
    sees storms and one-off alerts alike and no list of them ever exists. They come from a made-up sensor,
    SYNTHETIC, as a trusted native feed (docs/sensors.md, "Provenance"): written out as our Alert JSON, they read
    back the same with `--trust-native synthetic`. One source in ten only forgeable packets carried (an IDS's UDP
    alerts: `src_connected` false, docs/sensors.md "Forged sources"); the others held a connection."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    # Documentation space (RFC 3849): blockable like a public address, outside every allowlist and asset
    # (100.64.0.0/10, used before, is shared CGNAT space that the special-purpose guardrail denies).
    network = int(ipaddress.IPv6Address("2001:db8:5000::"))
    severities = list(Severity)
    produced = 0
    while produced < count:
        index = rng.randrange(sources)
        source = str(ipaddress.IPv6Address(network + index * 7 + 1))
        category, kind = rng.choice(_CATEGORIES)
        asset, dst_ip = rng.choice(_TARGETS)
        user = f"user{rng.randrange(200)}" if kind == "identity" else None
        blocked = rng.random() < 0.5
        for _ in range(min(rng.randint(1, burst), count - produced)):
            yield Alert(
                id=f"synthetic-{produced}",
                source=SYNTHETIC,
                provenance=Provenance.TRUSTED_FEED,
                observed_at=start + timedelta(seconds=produced),
                category=category,
                severity=rng.choice(severities),
                confidence=round(rng.uniform(0.3, 1.0), 2),
                src_ip=source,
                dst_ip=dst_ip,
                asset=asset,
                user=user,
                rule_ids=[f"syn-{category.value}"],
                signature=f"synthetic {category.value}",
                blocked=blocked,
                src_connected=index % 10 != 0,
                evidence="synthetic",
            )
            produced += 1
