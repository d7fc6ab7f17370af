"""Grouping alerts into incidents. The key is also the Temporal workflow id, so it must be stable and short."""

from __future__ import annotations

import re
from collections.abc import Iterable

from controller.models import Alert, Incident

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")


def incident_key(alert: Alert) -> str:
    """category + source address (or asset, or the alert itself) so one attacker's storm is one incident."""
    subject = alert.src_ip or alert.asset or alert.user or alert.id
    return f"{alert.category.value}:{_UNSAFE.sub('_', subject)}"


def group_alerts(alerts: Iterable[Alert]) -> list[Incident]:
    """Group alerts by incident key, preserving first-seen order of incidents and alerts."""
    buckets: dict[str, list[Alert]] = {}
    for alert in alerts:
        buckets.setdefault(incident_key(alert), []).append(alert)
    return [incident_from_alerts(key, members) for key, members in buckets.items()]


def incident_from_alerts(key: str, alerts: list[Alert]) -> Incident:
    if not alerts:
        raise ValueError(f"incident {key} has no alerts")
    first = alerts[0]
    return Incident(
        key=key,
        category=first.category,
        severity=max((a.severity for a in alerts), key=lambda s: s.rank),
        src_ip=first.src_ip,
        asset=next((a.asset for a in alerts if a.asset), None),
        first_seen=min(a.observed_at for a in alerts),
        last_seen=max(a.observed_at for a in alerts),
        alerts=alerts,
    )
