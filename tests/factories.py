"""Builders for test incidents: real models with sensible defaults, so each test states only what it varies."""

from __future__ import annotations

from datetime import UTC, datetime

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.models import Alert, Category, Incident, Provenance, Severity, TriageSummary

MALICIOUS = TriageSummary(verdict="malicious", confidence=0.9)
"""The triage L3-L5 need before containment runs alone: for tests about something else than triage."""


def make_incident(
    category: Category = Category.SQLI,
    src_ip: str | None = "198.51.100.66",
    dst_ip: str | None = "198.51.100.1",
    *,
    severity: Severity = Severity.CRITICAL,
    confidence: float = 0.9,
    blocked: bool = True,
    asset: str | None = None,
    user: str | None = None,
    count: int = 1,
) -> Incident:
    alerts = [
        Alert(
            id=f"test-{i}",
            source="ocsf",  # a sensor our adapter parsed (provenance sensor) with no rule metadata
            provenance=Provenance.SENSOR,
            observed_at=datetime(2026, 11, 23, 8, 0, i, tzinfo=UTC),
            category=category,
            severity=severity,
            confidence=confidence,
            src_ip=src_ip,
            dst_ip=dst_ip,
            asset=asset,
            user=user,
            blocked=blocked,
        )
        for i in range(count)
    ]
    return incident_from_alerts(f"{category.value}:{src_ip or asset or user}", alerts)
