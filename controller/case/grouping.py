"""Grouping alerts into incidents: one case per attacker, each attack category's evidence kept apart.

The key is also the Temporal workflow id, so it must be stable and short. It names the attacker, not the
attack class: one source running a tool trips SQLi, XSS, traversal and scanner rules, on the WAF and on the
IDS, and that is one campaign for a person to look at, one block and one ticket (docs/triage.md, "One
attacker, one case"). Without a source address the case is the asset, then the user the alerts name; an
event with none of them (an IDS decoder event) is grouped with the same sensor's other events of that rule.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

from autonomy_controller.controller.models import Alert, Category, Incident

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")
RULE_ID = re.compile(r"^[A-Za-z0-9:._\-]{1,64}\Z")
"""What a rule id looks like (\\Z: `$` also matches before a final line break); anything else a sensor record
carries there is not repeated in text for people."""
_SUBJECT_LIMIT = 120
"""Longer subjects (attacker-chosen asset or user names) are shortened with a digest: a workflow id is bounded."""


def _subject(text: str) -> str:
    safe = _UNSAFE.sub("_", text)
    if len(safe) <= _SUBJECT_LIMIT:
        return safe
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[: _SUBJECT_LIMIT - 17]}~{digest}"


def incident_key(alert: Alert) -> str:
    """The case an alert belongs to: its source address, else its asset, else its user, else its sensor+rule."""
    if alert.src_ip:
        return f"src:{_subject(alert.src_ip)}"
    if alert.asset:
        return f"asset:{_subject(alert.asset)}"
    if alert.user:
        return f"user:{_subject(alert.user)}"
    rule = alert.rule_ids[0] if alert.rule_ids else alert.category.value
    return f"sensor:{_subject(alert.source)}:{_subject(rule)}"


def group_alerts(alerts: Iterable[Alert]) -> list[Incident]:
    """Group alerts by incident key, preserving first-seen order of incidents and alerts."""
    buckets: dict[str, list[Alert]] = {}
    for alert in alerts:
        buckets.setdefault(incident_key(alert), []).append(alert)
    return [incident_from_alerts(key, members) for key, members in buckets.items()]


def incident_from_alerts(key: str, alerts: list[Alert]) -> Incident:
    """The case over these alerts; its `category` is the primary one (see `categories_by_weight`)."""
    if not alerts:
        raise ValueError(f"incident {key} has no alerts")
    first = alerts[0]
    return Incident(
        key=key,
        category=categories_by_weight(alerts)[0],
        severity=max((a.severity for a in alerts), key=lambda s: s.rank),
        src_ip=first.src_ip,
        asset=next((a.asset for a in alerts if a.asset), None),
        first_seen=min(a.observed_at for a in alerts),
        last_seen=max(a.observed_at for a in alerts),
        alerts=alerts,
    )


SUPPORTING = frozenset({Category.PROTOCOL, Category.OTHER})
"""Categories that ride along with attacks (HTTP protocol violations, unclassified IDS events): they lead a case
only when it has nothing else."""


def categories_by_weight(alerts: Iterable[Alert]) -> list[Category]:
    """The categories present, primary first: an attack class before a supporting one, then the most severe
    alert's, then the most alerts, then first seen."""
    severity: dict[Category, int] = {}
    counts: Counter[Category] = Counter()
    order: dict[Category, int] = {}
    for alert in alerts:
        category = alert.category
        severity[category] = max(severity.get(category, -1), alert.severity.rank)
        counts[category] += 1
        order.setdefault(category, len(order))
    return sorted(counts, key=lambda c: (c in SUPPORTING, -severity[c], -counts[c], order[c]))


def category_views(incident: Incident) -> list[Incident]:
    """The case seen one category at a time (primary first): same key, source and asset, that category's alerts.

    Playbooks are written per category; the planner plans each view and merges the plans into one.
    """
    views = []
    for category in categories_by_weight(incident.alerts):
        members = [a for a in incident.alerts if a.category is category]
        views.append(
            incident.model_copy(
                update={
                    "category": category,
                    "severity": max((a.severity for a in members), key=lambda s: s.rank),
                    "first_seen": min(a.observed_at for a in members),
                    "last_seen": max(a.observed_at for a in members),
                    "alerts": members,
                }
            )
        )
    return views


def category_summary(incident: Incident, views: list[Incident] | None = None) -> str:
    """One line naming each category's evidence, primary first: 'sqli 40 alerts (942100, 942190); xss 3 alerts'.
    `views`: the incident's category_views when the caller has them already."""
    parts = []
    for view in category_views(incident) if views is None else views:
        rules = sorted({r for a in view.alerts for r in a.rule_ids if RULE_ID.match(r)})
        listed = ", ".join(rules[:3]) + (f", +{len(rules) - 3}" if len(rules) > 3 else "")
        noun = "alert" if len(view.alerts) == 1 else "alerts"
        parts.append(f"{view.category.value} {len(view.alerts)} {noun}" + (f" ({listed})" if listed else ""))
    return "; ".join(parts)
