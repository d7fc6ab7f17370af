"""The source's past and people's feedback, read from the ledger for triage (`history_and_feedback`).

It runs before every plan, and the ledger may hold 100k records, so it does not re-read the ledger: one
`LedgerView` per Ledger (per process) folds every relevant record once and afterwards only the records
appended since (the ledger's seq is gap-free, monotonic and never rewritten: controller/ledger/excerpts.py).
Only a few payload keys leave the database. Several workers each keep their own view of the one ledger.

What is read, and what it may do (docs/triage.md):
- SourceHistory (may only raise a score): the source's *other* incidents (same src_ip in their alerts), their
  alert count, categories and sensors, how many were triaged malicious (PLAN `triage.verdict`), and
  containment against the source that took effect (approved by a person, or executed and verified) and that no
  person reverted.
- RuleFeedback (lowers a rule's weight within the model's bound): per rule id and per (rule id, URL path) of
  the incidents' alerts, people's answers on those incidents' containment (outcomes.PeopleAnswer: rejected,
  reverted by a person, confirmed). Timeouts, TTL reverts and compensations are not people's word.

Fail closed: a ledger that cannot be read raises (the plan activity fails and retries; nothing runs). Returning
"no feedback" instead would silently give rules their full weight back, i.e. raise autonomy.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from autonomy_controller.controller.ledger import Ledger, RecordExcerpt, RecordKind
from autonomy_controller.controller.ledger.outcomes import (
    Episode,
    PeopleReverts,
    apply_record,
    plan_targets,
    start_episode,
)
from autonomy_controller.controller.models import Category, Incident, Provenance
from autonomy_controller.controller.triage.facts import _path as url_path
from autonomy_controller.controller.triage.history import FeedbackCounts, RuleFeedback, SourceHistory

KINDS = (
    RecordKind.ALERT,
    RecordKind.PLAN,
    RecordKind.DECISION,
    RecordKind.APPROVAL,
    RecordKind.EXECUTION,
    RecordKind.VERIFICATION,
)
KEYS = (
    # ALERT
    "src_ip", "source", "category", "rule_ids", "url", "provenance",
    # PLAN (triage: the guard's summary) and DECISION
    "triage", "actions", "action_id", "action", "scope", "effective_level", "verdict", "shadow",
    # APPROVAL, EXECUTION, VERIFICATION
    "event", "approver", "choice", "signed", "detail", "request", "outcome", "purpose", "ok",
)  # fmt: skip
ANSWERS = ("rejected", "reverted", "confirmed")
_Counts = tuple[int, int, int]
_ZERO: _Counts = (0, 0, 0)
CATEGORIES = frozenset(c.value for c in Category)
VOUCHED = frozenset({Provenance.SENSOR.value, Provenance.TRUSTED_FEED.value})
K = TypeVar("K", str, tuple[str, str])


@dataclass
class _Incident:
    key: str
    alerts: int = 0
    sources: set[str] = field(default_factory=set)
    categories: set[Category] = field(default_factory=set)
    sensors: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    rule_paths: set[tuple[str, str]] = field(default_factory=set)
    malicious: bool = False
    targets: dict[str, str] = field(default_factory=dict)
    current: dict[str, Episode] = field(default_factory=dict)
    containment: list[Episode] = field(default_factory=list)
    applied: _Counts = _ZERO
    """The people's answers last added to the rule totals (the totals are sums of these over incidents)."""

    def answers(self) -> _Counts:
        found = [e.people_answer for e in self.containment]
        return (found.count("rejected"), found.count("reverted"), found.count("confirmed"))


def _add(totals: dict[K, list[int]], key: K, counts: _Counts, sign: int = 1) -> None:
    if counts == _ZERO:
        return
    row = totals.setdefault(key, [0, 0, 0])
    for i, n in enumerate(counts):
        row[i] += sign * n


def _feedback(row: list[int] | None) -> FeedbackCounts | None:
    if not row or not any(row):
        return None
    return FeedbackCounts(rejected=row[0], reverted=row[1], confirmed=row[2])


class LedgerView:
    """The folded ledger for triage; thread-safe (activities plan in threads)."""

    def __init__(self, ledger: Ledger, page: int = 5000) -> None:
        self._ledger = ledger
        self._page = page
        self._lock = threading.Lock()
        self.through = 0
        self._incidents: dict[str, _Incident] = {}
        self._by_source: dict[str, set[str]] = {}
        self._by_target: dict[str, list[Episode]] = {}
        self._owner: dict[int, str] = {}  # episode decision seq -> incident key
        self._reverts = PeopleReverts()
        self._rules: dict[str, list[int]] = {}
        self._rule_paths: dict[tuple[str, str], list[int]] = {}

    # -- folding -----------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fold what was appended since the last call (everything, the first time)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        dirty: set[str] = set()
        while True:
            page = self._ledger.excerpts(self.through, KINDS, KEYS, self._page)
            for record in page.records:
                self._fold(record, dirty)
            self.through = page.through
            if not page.more:
                break
        for key in dirty:
            self._settle(self._incidents[key])

    def _fold(self, record: RecordExcerpt, dirty: set[str]) -> None:
        inc = self._incidents.get(record.incident_key)
        if inc is None:
            inc = self._incidents[record.incident_key] = _Incident(record.incident_key)
        p, kind = record.payload, record.kind
        if kind is RecordKind.ALERT:
            self._alert(inc, p)
        elif kind is RecordKind.PLAN:
            triage = p.get("triage")
            inc.malicious |= isinstance(triage, dict) and triage.get("verdict") == "malicious"
            inc.targets = plan_targets(p)
        elif kind is RecordKind.DECISION:
            episode = start_episode(inc.key, record, inc.targets)
            inc.current[episode.action_id] = episode
            self._owner[episode.decision_seq] = inc.key
            if episode.containment:
                inc.containment.append(episode)
                if episode.target:
                    self._by_target.setdefault(episode.target, []).append(episode)
            self._reverts.add(episode)
        else:
            action_id = p.get("action_id") or (p.get("request") or {}).get("action_id")
            found = inc.current.get(str(action_id))
            if found is None:
                return
            apply_record(found, record)
            if kind is RecordKind.APPROVAL:
                dirty.add(inc.key)
                # once per restore: its "approved" settlement is written once, and only then did a person undo
                undone = self._reverts.restore(found) if p.get("event") == "approved" else None
                if undone is not None:
                    dirty.add(self._owner[undone.decision_seq])

    def _alert(self, inc: _Incident, p: dict[str, object]) -> None:
        inc.alerts += 1
        if p.get("provenance") not in VOUCHED:
            return  # a claim (native JSON, docs/sensors.md "Provenance") makes no history: it may only lower
        if isinstance(p.get("src_ip"), str):
            source = str(p["src_ip"])
            if source not in inc.sources:
                inc.sources.add(source)
                self._by_source.setdefault(source, set()).add(inc.key)
        if isinstance(p.get("source"), str):
            inc.sensors.add(str(p["source"]))
        if p.get("category") in CATEGORIES:  # one this version does not know adds nothing (history only raises)
            inc.categories.add(Category(str(p["category"])))
        rules = p.get("rule_ids")
        url = p.get("url")
        path = url_path(url) if isinstance(url, str) else None
        for rule in rules if isinstance(rules, list) else []:
            rule = str(rule)
            if rule not in inc.rules:
                inc.rules.add(rule)
                _add(self._rules, rule, inc.applied)  # an incident's answers count for every rule it carries
            if path is not None and (rule, path) not in inc.rule_paths:
                inc.rule_paths.add((rule, path))
                _add(self._rule_paths, (rule, path), inc.applied)

    def _settle(self, inc: _Incident) -> None:
        """Move the incident's people's answers into the per-rule totals (by difference: O(its rules))."""
        now = inc.answers()
        if now == inc.applied:
            return
        for rule in inc.rules:
            _add(self._rules, rule, inc.applied, -1)
            _add(self._rules, rule, now)
        for pair in inc.rule_paths:
            _add(self._rule_paths, pair, inc.applied, -1)
            _add(self._rule_paths, pair, now)
        inc.applied = now

    # -- reading -----------------------------------------------------------------------------------------

    def history(self, incident: Incident) -> SourceHistory | None:
        source = incident.src_ip
        if source is None:
            return None
        with self._lock:
            others = [self._incidents[k] for k in sorted(self._by_source.get(source, ())) if k != incident.key]
            confirmed = sum(1 for e in self._by_target.get(source, []) if e.took_effect and not e.reverted_by_person)
            if not others and not confirmed:
                return None
            return SourceHistory(
                prior_incidents=len(others),
                prior_alerts=sum(i.alerts for i in others),
                prior_malicious=sum(i.malicious for i in others),
                confirmed_actions=confirmed,
                categories=frozenset(c for i in others for c in i.categories),
                sensors=frozenset(s for i in others for s in i.sensors),
            )

    def feedback(self, rules: Iterable[str], rule_paths: Iterable[tuple[str, str]]) -> RuleFeedback | None:
        """People's answers for these rules and (rule, path) pairs; None when people said nothing on them."""
        with self._lock:
            by_rule = {r: c for r in set(rules) if (c := _feedback(self._rules.get(r))) is not None}
            by_path = {rp: c for rp in set(rule_paths) if (c := _feedback(self._rule_paths.get(rp))) is not None}
        feedback = RuleFeedback(rules=by_rule, rule_paths=by_path)
        return feedback if feedback else None

    def all_feedback(self) -> RuleFeedback:
        """Every rule and (rule, path) people answered on (for `autonomy triage exclusions`)."""
        with self._lock:
            return RuleFeedback(
                rules={k: c for k, v in self._rules.items() if (c := _feedback(v)) is not None},
                rule_paths={k: c for k, v in self._rule_paths.items() if (c := _feedback(v)) is not None},
            )


_VIEWS: weakref.WeakKeyDictionary[Ledger, LedgerView] = weakref.WeakKeyDictionary()
_VIEWS_LOCK = threading.Lock()


def ledger_view(ledger: Ledger) -> LedgerView:
    """This process's view of `ledger`, brought up to date."""
    with _VIEWS_LOCK:
        view = _VIEWS.get(ledger)
        if view is None:
            view = _VIEWS[ledger] = LedgerView(ledger)
    view.refresh()
    return view


def incident_rules(incident: Incident) -> tuple[set[str], set[tuple[str, str]]]:
    """The rule ids and (rule id, URL path) pairs of the incident's alerts: what feedback is looked up for."""
    rules: set[str] = set()
    pairs: set[tuple[str, str]] = set()
    for alert in incident.alerts:
        path = url_path(alert.url)
        for rule in alert.rule_ids:
            rules.add(rule)
            if path is not None:
                pairs.add((rule, path))
    return rules, pairs


def history_and_feedback(ledger: Ledger, incident: Incident) -> tuple[SourceHistory | None, RuleFeedback | None]:
    """(history of the incident's source, people's feedback per rule); None where the ledger has nothing."""
    view = ledger_view(ledger)
    return view.history(incident), view.feedback(*incident_rules(incident))
