"""A source address only forgeable packets carried never makes the machine act alone (policies/guardrails/entities.rego,
controller/decision/entities.py, docs/sensors.md "Forged sources").

A UDP or ICMP packet, or a bare SYN, carries whatever source address its sender writes. Were an IDS alert on one
enough, an attacker could send a single packet "from" a partner or a public resolver and have it blocked for an
hour, or "from" one of our own hosts (a C2 beacon's DNS query) and have that host isolated at L4, alone. So each
ingest adapter says whether the sensor saw the source hold a connection (`Alert.src_connected`), and a block, or a
host isolated as the case's source, runs alone only on such a source; otherwise a person approves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.decision.entities import connected_sources, source_assets
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ingest import parse_record
from autonomy_controller.controller.ingest.native import provenance, trusted_sources
from autonomy_controller.controller.models import Alert, Category, Incident, Provenance, Verdict
from tests.conftest import SHARED
from tests.factories import make_incident
from tests.harness import alert
from tests.test_guard_entities import ENGINES, STAGING_WEB, TTL, auth_log, decide, evaluate, veto_window
from tests.test_ingest import EXAMPLES, ingest

DATA = Path(__file__).parent / "data"
SAMPLES = SHARED / "samples"
FORGED = "hold a connection (only packets whose source address anyone can forge"
NOT_SOURCE = "not the source of the case's alerts"
RESOLVER = "192.0.2.53"  # a public resolver, as far as the inventory knows: no allowlist entry protects it


def eve_c2_over_dns(src_ip: str, proto: str = "UDP", app_proto: str | None = "dns") -> dict[str, Any]:
    """Suricata's EVE alert on one DNS query of a C2 beacon (ET Open's shape): one packet, no answer."""
    record: dict[str, Any] = {
        "timestamp": "2026-11-23T08:50:00.000000+0000",
        "flow_id": 7712,
        "event_type": "alert",
        "src_ip": src_ip,
        "src_port": 53123,
        "dest_ip": "192.0.2.80",
        "dest_port": 53,
        "proto": proto,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2027863,
            "rev": 2,
            "signature": "ET MALWARE Cobalt Strike Beacon DNS Query",
            "category": "A Network Trojan was detected",
            "severity": 1,
            "metadata": {"signature_severity": ["Major"]},
        },
        "direction": "to_server",
        "flow": {"pkts_toserver": 1, "pkts_toclient": 0, "bytes_toserver": 80, "bytes_toclient": 0},
    }
    if app_proto is not None:
        record["app_proto"] = app_proto
    return record


def parsed(record: dict[str, Any]) -> Alert:
    [one] = parse_record(record, "test")
    return one


# -- what each sensor says --------------------------------------------------------------------------------------


def test_each_sensor_says_whether_its_source_held_a_connection(tmp_path: Path) -> None:
    # Requests and logins: the client held a connection, from the address logged.
    for path in (
        DATA / "suricata7-lab-eve.jsonl",
        DATA / "nginx-access.jsonl",
        SAMPLES / "modsecurity3-nginx-audit.jsonl",
    ):
        alerts, _, _ = ingest(path, tmp_path / path.stem)
        assert alerts and all(a.src_connected for a in alerts if a.src_ip), path.name
    assert parsed(auth_log(3, "failure", 0)).src_connected
    # Suricata on one packet, or on TCP whose protocol it never saw (a bare SYN, a scan): anyone's address.
    assert not parsed(eve_c2_over_dns(STAGING_WEB)).src_connected
    assert not parsed(eve_c2_over_dns(STAGING_WEB, "TCP", None)).src_connected
    assert not parsed(eve_c2_over_dns(STAGING_WEB, "TCP", "failed")).src_connected
    assert parsed(eve_c2_over_dns(STAGING_WEB, "TCP", "tls")).src_connected
    # OCSF: an HTTP request, or a process an endpoint agent saw (no packet), is the sender's; a DNS query is not.
    findings = {a.signature: a.src_connected for a in ingest(EXAMPLES / "ocsf-detection-finding.jsonl", tmp_path)[0]}
    assert findings == {
        "Brute force against SSO account j.doe": True,
        "Trojan detected: loader dropped by macro document": True,
        "C2 beaconing to rare external domain": False,
        "Lateral movement: PsExec-style remote service execution": True,
        "Exfiltration over web service to personal cloud storage": False,
    }


def test_a_native_record_saying_connected_is_a_claim_unless_its_channel_is_trusted() -> None:
    record = {**alert(1, RESOLVER).model_dump(mode="json"), "source": "suricata", "src_connected": True}
    claimed = parsed({k: v for k, v in record.items() if k != "provenance"})
    assert claimed.src_connected and claimed.is_claim
    assert connected_sources([claimed]) == ()
    fed = claimed.model_copy(update={"provenance": provenance(claimed, trusted_sources(["suricata"]))})
    assert fed.provenance is Provenance.TRUSTED_FEED and connected_sources([fed]) == (RESOLVER,)


# -- what the guard does with it, on every engine ---------------------------------------------------------------


def forged_case(src_ip: str, category: Category = Category.SQLI, connected: int = 0) -> Incident:
    """Three alerts from `src_ip` that only forgeable packets carried, and `connected` more that held a connection."""
    base = make_incident(category, src_ip, "198.51.100.1", count=3, connected=False)
    held = [alert(100 + n, src_ip, category) for n in range(connected)]
    return base.model_copy(update={"alerts": [*base.alerts, *held]})


@pytest.mark.parametrize("engine", ENGINES)
def test_a_block_of_a_source_only_forgeable_packets_carried_waits_for_a_person(
    guards: dict[str, Guard], engine: str
) -> None:
    guard = guards[engine]
    forged = decide(guard, forged_case(RESOLVER), "network.block_ip", {"ip": RESOLVER})
    assert (forged.verdict, veto_window(forged)) == (Verdict.APPROVE, False), forged.reasons
    assert any(FORGED in r and RESOLVER in r for r in forged.reasons), forged.reasons
    # One request that held a connection from the same address: it is the sender's, blocked alone.
    held = decide(guard, forged_case(RESOLVER, connected=1), "network.block_ip", {"ip": RESOLVER})
    assert held.verdict is Verdict.EXECUTE, held.reasons
    # Another address's connection does not vouch for this one, nor does a range around it.
    other = forged_case(RESOLVER)
    other = other.model_copy(update={"alerts": [*other.alerts, alert(9, "192.0.2.54")]})
    assert any(FORGED in r for r in decide(guard, other, "network.block_ip", {"ip": RESOLVER}).reasons)


@pytest.mark.parametrize("engine", ENGINES)
def test_our_host_named_only_by_forgeable_packets_is_not_isolated_alone(guards: dict[str, Guard], engine: str) -> None:
    # A C2 beacon's DNS query "from" web-stg-01 (L4): one UDP packet anyone on the path can write.
    guard = guards[engine]
    forged = guard.enrich(forged_case(STAGING_WEB, Category.C2))
    assert forged.source_asset is None
    decision = decide(guard, forged, "host.isolate", {"host": "web-stg-01"})
    assert (decision.verdict, veto_window(decision)) == (Verdict.APPROVE, False), decision.reasons
    assert any(NOT_SOURCE in r for r in decision.reasons), decision.reasons
    held = guard.enrich(forged_case(STAGING_WEB, Category.C2, connected=1))  # its beacon over TLS, say
    assert held.source_asset == "web-stg-01"
    assert decide(guard, held, "host.isolate", {"host": "web-stg-01"}).verdict is Verdict.EXECUTE


def test_source_assets_are_the_connected_sources_ours(guards: dict[str, Guard]) -> None:
    assets = guards["embedded"].assets
    assert source_assets(forged_case(STAGING_WEB).alerts, assets) == ()
    assert source_assets(forged_case(STAGING_WEB, connected=1).alerts, assets) == ("web-stg-01",)


@pytest.mark.parametrize("engine", ENGINES)
def test_suricatas_own_records_end_to_end(tmp_path: Path, engine: str) -> None:
    # Read through ingest as a deployment reads them: the beacon's query over UDP, then the same over TLS.
    isolate = {"action": "host.isolate", "params": {"host": "web-stg-01", "ttl_seconds": TTL}, "confidence": 0.8}
    queries = [
        {**eve_c2_over_dns(STAGING_WEB), "flow_id": n, "timestamp": f"2026-11-23T08:50:0{n}.0+0000"} for n in range(3)
    ]
    [forged] = evaluate(tmp_path / "udp", engine, queries, isolate)
    assert forged["verdict"] == "approve" and not forged["policy"]["veto_window"], forged["reasons"]
    assert any(NOT_SOURCE in r for r in forged["reasons"])
    over_tls = [{**q, "proto": "TCP", "app_proto": "tls", "dest_port": 443} for q in queries]
    [held] = evaluate(tmp_path / "tls", engine, over_tls, isolate)
    assert not any(NOT_SOURCE in r for r in held["reasons"]), held["reasons"]  # (triage's own bar still asks)
