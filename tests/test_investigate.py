"""investigate.* answers that are right (hosts resolved through the real inventory) and verifiable (each answer
says what it covered, and verification checks that coverage against the ledger, so it can fail).

The ledger is filled the way the loop fills it (the Submitter's payload and idempotency key) from the real WAF
audit log of the lab's demo: an attacker and a benign host against web-01, whose alerts name only its addresses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest
from autonomy_controller.actions.adapters.investigate import (
    HostActivityAdapter,
    IpReputationAdapter,
    RelatedAlertsAdapter,
    bundle_inventory,
)
from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.decision.runtime import load_policy_bundle
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert
from tests.conftest import SHARED

NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
ATTACKER = "198.51.100.66"
WEB_01_ADDRESSES = {"198.51.100.1", "203.0.113.1"}  # policies/inventory/data.yaml


def submit(ledger: Ledger, alerts: list[Alert]) -> None:
    """As workflows/client.py's Submitter records alerts before it signals the workflow."""
    by_key: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_key.setdefault(incident_key(alert), []).append(alert)
    for key, members in by_key.items():
        payloads = [(a.model_dump(mode="json"), f"alert:{key}:{a.id}") for a in members]
        ledger.append_many(key, RecordKind.ALERT, "ingest", payloads)


def lookup(action: str, params: dict[str, Any], incident: str = "sqli:198.51.100.66") -> ActionRequest:
    return ActionRequest(
        incident_key=incident, action_id="a1", action=action, params=params, idempotency_key=f"wf/run/{action}"
    )


@pytest.fixture(scope="module")
def demo_alerts() -> list[Alert]:
    return list(read_alerts(NETNS))


@pytest.fixture
def ledger(tmp_path: Path, demo_alerts: list[Alert]) -> Iterator[Ledger]:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}") as db:
        submit(db, demo_alerts)
        yield db


@pytest.fixture
def host_activity(ledger: Ledger) -> HostActivityAdapter:
    return HostActivityAdapter(ledger, bundle_inventory(Settings()))


def real_index(edit: Any = None) -> AssetIndex:
    """The shipped inventory, optionally edited (a config change between answer and verification)."""
    bundle = load_policy_bundle(Settings())
    assets = copy.deepcopy(bundle.inventory)
    if edit is not None:
        edit(assets)
    return AssetIndex(assets, bundle.data["inventory"].get("domain"))


def test_host_activity_reports_the_demo_sqli_alerts_against_web_01(
    host_activity: HostActivityAdapter, demo_alerts: list[Alert]
) -> None:
    """The WAF names web-01 only by address: the inventory maps 198.51.100.1 to it (the issue's "0 alerts")."""
    against_web_01 = [a for a in demo_alerts if a.dst_ip in WEB_01_ADDRESSES]
    sqli = [a for a in demo_alerts if a.src_ip == ATTACKER and a.category.value == "sqli"]
    assert sqli and all(a.asset is None for a in against_web_01), "the sample names the host by address only"

    outcome = host_activity.execute(lookup("investigate.host_activity", {"host": "web-01"}))
    ev = outcome.evidence
    assert (ev["asset"], set(ev["addresses"])) == ("web-01", WEB_01_ADDRESSES)
    assert ev["alert_count"] == ev["matched_by_dst_ip"] == len(against_web_01)
    assert incident_key(sqli[0]) in ev["incident_keys"]
    assert ev["top_sources"][ATTACKER] == sum(a.src_ip == ATTACKER for a in against_web_01)
    assert f"{len(against_web_01)} alerts against web-01" in outcome.detail


@pytest.mark.parametrize("spelling", ["198.51.100.1", "203.0.113.1", "WEB-01", "web-01.corp.example."])
def test_every_spelling_of_web_01_gives_the_same_answer(host_activity: HostActivityAdapter, spelling: str) -> None:
    by_name = host_activity.execute(lookup("investigate.host_activity", {"host": "web-01"})).evidence
    other = host_activity.execute(lookup("investigate.host_activity", {"host": spelling})).evidence
    assert other["asset"] == "web-01"
    assert other["alert_count"] == by_name["alert_count"] > 0


def test_every_answer_says_what_it_covered(ledger: Ledger, host_activity: HostActivityAdapter) -> None:
    answers = [
        host_activity.execute(lookup("investigate.host_activity", {"host": "web-01"})),
        RelatedAlertsAdapter(ledger).execute(lookup("investigate.related_alerts", {"ip": ATTACKER})),
        IpReputationAdapter(ledger).execute(lookup("investigate.ip_reputation", {"ip": ATTACKER})),
    ]
    for outcome in answers:
        coverage = outcome.evidence["coverage"]
        assert "ledger" in coverage["sources"] and "alert" in coverage["kinds"]
        assert coverage["records_read"] > 0 and coverage["truncated"] is False
        assert coverage["first_seq"] <= coverage["last_seq"] <= coverage["head_seq"]
        assert coverage["window_start"] <= coverage["window_end"]
    assert "inventory" in answers[0].evidence["coverage"]["sources"]


def test_verification_confirms_a_true_answer_even_after_new_records(
    ledger: Ledger, host_activity: HostActivityAdapter, demo_alerts: list[Alert]
) -> None:
    req = lookup("investigate.host_activity", {"host": "web-01"})
    outcome = host_activity.execute(req)
    ledger.append("sqli:192.0.2.5", RecordKind.ALERT, "ingest", {"id": "later", "dst_ip": "198.51.100.1"})
    checked = host_activity.verify(req, outcome)
    assert checked.ok, checked.detail
    assert checked.evidence["coverage"] == outcome.evidence["coverage"]


def test_verification_fails_when_the_answer_does_not_say_what_it_covered(host_activity: HostActivityAdapter) -> None:
    req = lookup("investigate.host_activity", {"host": "web-01"})
    outcome = host_activity.execute(req)
    bare = ActionOutcome(status=outcome.status, detail=outcome.detail, evidence={"alert_count": 70})
    assert not host_activity.verify(req, bare).ok


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.update(records_read=c["records_read"] - 1),  # claims fewer records than it had
        lambda c: c.update(first_seq=c["first_seq"] + 1),  # claims a range the ledger does not have
        lambda c: c.update(window_end="2000-01-01T00:00:00"),  # claims another time window
        lambda c: c.update(truncated=True),  # claims the cap cut a scan that read everything
    ],
)
def test_verification_fails_when_the_ledger_contradicts_the_coverage(ledger: Ledger, edit: Any) -> None:
    adapter = RelatedAlertsAdapter(ledger)
    req = lookup("investigate.related_alerts", {"ip": ATTACKER})
    outcome = adapter.execute(req)
    assert adapter.verify(req, outcome).ok
    evidence = copy.deepcopy(outcome.evidence)
    edit(evidence["coverage"])
    checked = adapter.verify(req, outcome.model_copy(update={"evidence": evidence}))
    assert not checked.ok and checked.detail.startswith("coverage not confirmed")


def test_verification_fails_for_an_answer_read_from_another_ledger(
    tmp_path: Path, ledger: Ledger, demo_alerts: list[Alert]
) -> None:
    """A lookup run against a lagging copy (a replica, a restored backup) answered about less than we hold."""
    with Ledger.from_url(f"sqlite:///{tmp_path / 'lagging.db'}") as lagging:
        submit(lagging, demo_alerts[:-5])
        req = lookup("investigate.ip_reputation", {"ip": ATTACKER})
        stale = IpReputationAdapter(lagging).execute(req)
    assert not IpReputationAdapter(ledger).verify(req, stale).ok


def test_verification_fails_when_the_inventory_no_longer_resolves_the_host_the_same_way(ledger: Ledger) -> None:
    req = lookup("investigate.host_activity", {"host": "web-01"})
    outcome = HostActivityAdapter(ledger, real_index).execute(req)
    assert HostActivityAdapter(ledger, real_index).verify(req, outcome).ok

    def moved(assets: dict[str, Any]) -> None:
        assets["web-01"]["addresses"] = ["203.0.113.1"]  # 198.51.100.1 re-assigned after the answer

    checked = HostActivityAdapter(ledger, lambda: real_index(moved)).verify(req, outcome)
    assert not checked.ok and "198.51.100.1" in checked.detail


def test_a_capped_scan_still_verifies(ledger: Ledger) -> None:
    adapter = RelatedAlertsAdapter(ledger, scan_limit=10)
    req = lookup("investigate.related_alerts", {"ip": ATTACKER})
    outcome = adapter.execute(req)
    assert outcome.evidence["coverage"]["truncated"] is True
    checked = adapter.verify(req, outcome)
    assert checked.ok, checked.detail
