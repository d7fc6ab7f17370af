"""Which hosts and accounts the sensors' own facts put in the attacker's hands: the only ones containment may hit
without a person (policies/guardrails/entities.rego).

A name in an alert is a claim: the account a client typed at a login prompt, the host a request went to. What
an attacker types or aims at must never be enough for the machine to lock an account or take a host off the
network alone, or the attacker chooses whom we lock out. So the policy is told, per case, only what a sensor
recorded:

- `connected_sources`: the addresses the sensors saw hold a connection as the source of the case's alerts
  (`Alert.src_connected`: a TCP connection that carried application data). Any other source address may be
  forged: one UDP packet, ICMP or a bare SYN with a bystander's address (a partner, a resolver, one of our own
  hosts) as its source would otherwise have the machine block that bystander, or isolate our host, alone.
- `source_assets`: our assets at those addresses (the host the malware, C2, exfiltration or lateral movement
  comes from). Where an alert merely went is not one, nor an address a claim names (native JSON,
  docs/sensors.md "Provenance"), nor one only a forgeable packet carried.
- `guessed_users`: accounts a login service recorded a successful login of after password guessing in this
  case (auth-log: `outcome: success` with `user_failures_before` at the guessing threshold, the same fact triage
  reads: controller/triage/facts.py, controller/ingest/auth_log.py).

An asset the attack reached (the impact verdict, controller/attackers/impact.py) is already in the input
(`input.impact`); the rule reads it there.
"""

from __future__ import annotations

from collections.abc import Iterable

from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.ingest.auth_log import SOURCE as AUTH_LOG
from autonomy_controller.controller.ingest.classify import AUTH_GUESSED
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.triage.facts import GUESSED, alert_facts


def connected_sources(alerts: Iterable[Alert]) -> tuple[str, ...]:
    """The source addresses a sensor saw hold a connection (claims aside), first seen first."""
    return tuple(
        dict.fromkeys(alert.src_ip for alert in alerts if alert.src_ip and alert.src_connected and not alert.is_claim)
    )


def source_assets(alerts: Iterable[Alert], assets: AssetIndex) -> tuple[str, ...]:
    """Our assets at the connected source addresses, first seen first."""
    found: list[str] = []
    for address in connected_sources(alerts):
        found += [owner for owner in assets.owners_of_address(address) if owner not in found]
    return tuple(found)


def guessed_users(alerts: Iterable[Alert], waf_sources: frozenset[str]) -> frozenset[str]:
    """The accounts a login service recorded a login of after guessing, in these alerts.

    The auth-log parser names such a record with AUTH_GUESSED from the service's own counts; where the record
    itself is at hand (the workflow carries alerts without it, `slim_alert`), triage's reading of it must agree,
    so a rule id without the facts behind it names nobody."""
    return frozenset(
        alert.user
        for alert in alerts
        if alert.user
        and not alert.is_claim  # a native record naming auth-log: the sender's word, not the login service's
        and alert.source == AUTH_LOG
        and AUTH_GUESSED in alert.rule_ids
        and (not alert.raw or alert_facts(alert, waf_sources).login == GUESSED)
    )
