"""Builders for test incidents: real models with sensible defaults, so each test states only what it varies."""

from __future__ import annotations

from datetime import UTC, datetime

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.ingest.auth_log import SOURCE as AUTH_LOG
from autonomy_controller.controller.ingest.classify import AUTH_GUESSED
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
    guessed: tuple[str, ...] = (),
    connected: bool = True,
) -> Incident:
    """`guessed`: accounts the login service saw logged in from `src_ip` after guessing (guessed_login).
    `connected`: the sensor saw `src_ip` hold a connection (an OCSF finding that carries an HTTP request); without
    it, only packets whose source anyone can forge carried the address (docs/sensors.md, "Forged sources")."""
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
            src_connected=connected,
        )
        for i in range(count)
    ]
    alerts += [guessed_login(name, src_ip) for name in guessed]
    return incident_from_alerts(f"{category.value}:{src_ip or asset or user}", alerts)


def guessed_login(user: str, src_ip: str | None = "198.51.100.66") -> Alert:
    """The login service's own record (auth-log, as controller/ingest/auth_log.py makes it) of `user` logging in
    from `src_ip` after 5 failed guesses: the sensor fact that the account is the attacker's, which identity
    containment needs to run alone (controller/decision/entities.py)."""
    return Alert(
        id=f"login-{user}-{src_ip}",
        source=AUTH_LOG,
        provenance=Provenance.SENSOR,  # the auth-log adapter's
        observed_at=datetime(2026, 11, 23, 8, 1, 0, tzinfo=UTC),
        category=Category.BRUTE_FORCE,
        severity=Severity.HIGH,
        confidence=0.9,
        src_ip=src_ip,
        user=user,
        rule_ids=[AUTH_GUESSED],
        src_connected=True,  # a login exchange, as the adapter says
        raw={"event": "authentication", "outcome": "success", "source_failures": 0, "user_failures_before": 5},
    )
