"""Adversarial review: attacker tracking with data nobody on the team wrote, on a real ledger (SQLite and
PostgreSQL) folded by the real store.

A stage only goes up on sensor facts: our own Alert JSON on an untrusted channel is a claim (docs/sensors.md,
"Provenance"), and whoever can write to that channel writes any category, any address and any path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from autonomy_controller.controller.attackers import AttackerProfile, AttackerStore, Limits, track
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.models import Alert, Category, Provenance
from tests.harness import alert
from tests.test_attackers import ATTACKER, lines, parsed, submit
from tests.test_ledger import ledger_url  # noqa: F401  (the both-backends fixture)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger.from_url(ledger_url) as led:
        yield led


def claim(n: int, src_ip: str = ATTACKER, category: Category = Category.C2, **extra: object) -> Alert:
    """Our own Alert JSON on a channel nobody declared a trusted feed: a claim naming a sensor."""
    return alert(n, src_ip=src_ip, category=category, source="suricata", provenance=Provenance.CLAIM, **extra)


def app_200(uri: str, request_id: str, sent: int) -> dict[str, object]:
    """The access-log line of the application's 200 to `uri`: a lab line with what nginx writes for one."""
    line = lines("nginx-access.jsonl")[0]
    line.update(request_id=request_id, request_uri=uri, status=200, body_bytes_sent=sent)
    line.update(upstream_addr="127.0.0.1:8081", upstream_status="200")
    return line


def folded(ledger: Ledger, settings: Settings, limits: Limits | None = None) -> AttackerProfile:
    """The attacker's profile once everything in the ledger is folded."""
    track(ledger, settings, *([limits] if limits else []))
    profile = AttackerStore(ledger).get(ATTACKER)
    assert profile is not None
    return profile


def test_a_claim_raises_no_stage(ledger: Ledger, settings: Settings) -> None:
    """A claimed C2 alert made its address a post-exploitation attacker on `attackers list` and the attacker page."""
    submit(ledger, [claim(1), claim(2, category=Category.SQLI)])
    p = folded(ledger, settings)
    assert p.alerts == 2 and p.sensors == {"suricata": 2}  # counted, shown as what it is
    assert (p.stage, p.stages) == ("none", [])


def test_a_trusted_feed_still_raises_the_stage(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, [alert(1, category=Category.C2, source="edr", provenance=Provenance.TRUSTED_FEED)])
    p = folded(ledger, settings)
    assert p.stage == "post_exploitation"


def test_a_claimed_attack_does_not_make_a_real_2xx_on_its_path_a_success(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    """The path rule reads "an attack nothing refused" on a path: a claimed one (any path, never refused) with the
    application's ordinary 200 on that path made possible_success, the stage that raises a case's impact."""
    submit(ledger, [claim(1, category=Category.SQLI, blocked=False, url="/")])
    submit(ledger, parsed([app_200("/", "e" * 32, 900)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "none"
    assert p.paths["/"].attacks_through == 0


def test_claims_cannot_pin_profiles_and_evict_the_attackers_sensors_saw(ledger: Ledger, settings: Settings) -> None:
    """Eviction drops the lowest stage first. Claimed post-exploitation alerts from many addresses outranked every
    attacker a sensor saw, so a sender could evict them all and keep its own fakes."""
    submit(ledger, [alert(1, src_ip="192.0.2.200", category=Category.SQLI)])  # a sensor saw this one attack
    submit(ledger, [claim(10 + i, src_ip=f"203.0.113.{i}") for i in range(5)])
    track(ledger, settings, Limits(max_profiles=3))
    kept = {p.address for p in AttackerStore(ledger).profiles(limit=10, min_stage=0)}
    assert "192.0.2.200" in kept and len(kept) == 3


def test_an_ids_alert_that_missed_the_wafs_refusal_does_not_make_the_paths_next_200_a_success(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    unanswered = eve[0]
    del unanswered["http"]["status"], unanswered["http"]["length"]  # logged before the WAF's 403 was seen
    refused = access[0]  # the same request in the access log: 403, never proxied
    submit(ledger, parsed([unanswered, refused, app_200("/", "d" * 32, 612)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "exploitation_attempt"


def test_a_scan_that_fills_the_profiles_paths_does_not_hide_the_path_an_attack_got_through(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    """A profile keeps Limits.paths paths. A scan's (nikto: thousands) filled them, the traversal's path was turned
    away, and with it the application's 200 there: the profile never showed possible_success."""
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    probe = dict(access[0], status=404, upstream_addr="127.0.0.1:8081", upstream_status="404")
    scan = [dict(probe, request_id=f"{n:032x}", request_uri=f"/scan/{n}.php") for n in range(Limits().paths + 8)]
    ids = eve[2]
    ids["http"]["url"] = "/legacy/download?file=../../../../etc/passwd"
    del ids["http"]["status"], ids["http"]["length"]  # logged before the answer: nothing refused it
    submit(ledger, parsed([*scan, ids, app_200(ids["http"]["url"], "f" * 32, 99)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "possible_success"
    assert len(p.paths) == Limits().paths and p.paths["/legacy/download"].attacks_through == 1
    assert p.dropped["paths"] == 9  # the scan's paths beyond the cap, and one pushed out for the attack's


def forged_c2_query(n: int) -> dict[str, object]:
    """A DNS query matching a malware rule, as Suricata logs it: UDP, so its source address is whatever the sender
    wrote (docs/sensors.md, "Forged sources")."""
    record = lines("suricata7-lab-eve.jsonl")[0]
    for key in ("http", "tx_id", "direction", "flow"):
        record.pop(key)
    record.update(flow_id=900 + n, src_ip=f"203.0.113.{n}", src_port=53000 + n, dest_port=53, proto="UDP")
    record.update(app_proto="dns", dns={"type": "query", "id": n, "rrname": "beacon.example", "rrtype": "TXT"})
    record["alert"].update(signature_id=2030001, signature="ET MALWARE Cobalt Strike DNS Beacon", severity=1)
    record["alert"].update(category="A Network Trojan was detected")
    return record


def test_forged_packets_cannot_evict_an_attacker_a_sensor_saw_connect(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    submit(ledger, parsed([lines("suricata7-lab-eve.jsonl")[0]], tmp_path))  # a connected SQLi attacker
    forged = parsed([forged_c2_query(n) for n in range(5)], tmp_path)
    assert forged and not any(a.src_connected for a in forged)
    submit(ledger, forged)
    track(ledger, settings, Limits(max_profiles=3))
    kept = {p.address for p in AttackerStore(ledger).profiles(limit=10, min_stage=0)}
    assert ATTACKER in kept


def test_eviction_orders_sources_by_when_they_were_seen_whatever_zone_their_sensor_writes(
    ledger: Ledger, settings: Settings
) -> None:
    """Sensors write local time with its offset (Suricata, Apache and nginx on a host not set to UTC). SQLite keeps a
    time's digits without the offset, so profiles were evicted and listed by each sensor's wall clock: here the
    newest source went first."""
    at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    seen = {
        "192.0.2.1": at,
        "192.0.2.2": at.astimezone(timezone(timedelta(hours=1))) - timedelta(minutes=30),  # the oldest, at +01:00
        "192.0.2.3": at.astimezone(timezone(timedelta(hours=-1))) + timedelta(minutes=45),  # the newest, at -01:00
    }
    for n, (address, when) in enumerate(seen.items()):
        submit(ledger, [alert(n, src_ip=address, category=Category.SCANNER, observed_at=when)])
    track(ledger, settings, Limits(max_profiles=2))
    kept = [p.address for p in AttackerStore(ledger).profiles(limit=10)]
    assert kept == ["192.0.2.3", "192.0.2.1"]  # the most recently seen first; the oldest evicted


def test_refused_attacks_on_many_paths_do_not_hide_the_path_one_got_through(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    """A full table of paths where every attack was refused (the WAF's 403 the IDS saw) left no room for the path
    an attack then got through on: the profile never showed possible_success."""
    eve = lines("suricata7-lab-eve.jsonl")
    refused = []
    for n in range(Limits().paths + 4):
        record = copy.deepcopy(eve[0])
        record["flow_id"] += n + 1
        record["http"]["url"] = f"/app{n}/?id=1%27%20UNION%20SELECT%201--"
        refused.append(record)
    through = eve[2]
    through["http"]["url"] = "/legacy/download?file=../../../../etc/passwd"
    del through["http"]["status"], through["http"]["length"]
    submit(ledger, parsed([*refused, through, app_200(through["http"]["url"], "b" * 32, 99)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "possible_success" and p.paths["/legacy/download"].app_success == 1
