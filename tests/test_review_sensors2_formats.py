"""Adversarial review: sensor output nobody on the team wrote (other versions and configurations than the lab's).

Each record is a real one (the lab's Suricata 7 EVE, libmodsecurity3's nginx audit log in the shared samples, an
OCSF finding as the 1.x schemas define it) with the fields another version or configuration writes changed, read
by the real reader. Valid-but-odd output must be ingested (or skipped with a reason that says why), never
dead-lettered as broken, and never silently misread.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.ingest import DeadLetter, IngestReport, read_alerts, read_dead_letters
from autonomy_controller.controller.models import Alert, Category
from tests.conftest import SHARED

DATA = REPO_ROOT / "tests" / "data"
SAMPLES = SHARED / "samples"


def first_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text().splitlines()[0])


def ingest(tmp_path: Path, records: list[Any]) -> tuple[list[Alert], IngestReport, list[dict[str, Any]]]:
    path = tmp_path / "sensor.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    report = IngestReport()
    dead = DeadLetter(tmp_path / "dead.jsonl")
    alerts = list(read_alerts(path, dead_letter=dead, report=report))
    return alerts, report, list(read_dead_letters(dead.path)) if dead.path.exists() else []


# -- OCSF 1.0 .. 1.3 ----------------------------------------------------------------------------------------------

SECONDS = 1765000329  # 2025-12-06T05:52:09Z
OCSF_FINDING: dict[str, Any] = {
    "activity_id": 1,
    "category_uid": 2,
    "class_uid": 2004,
    "type_uid": 200401,
    "severity_id": 4,
    "time": SECONDS * 1000,
    "metadata": {"version": "1.3.0", "product": {"name": "edge-ids", "vendor_name": "example"}},
    "finding_info": {"uid": "f-1", "title": "SQL injection attempt", "analytic": {"uid": "r-1", "type_id": 1}},
    "src_endpoint": {"ip": "198.51.100.66", "port": 41582},
    "dst_endpoint": {"ip": "198.51.100.1", "port": 80},
    "http_request": {"url": {"url_string": "/?id=1'"}, "http_method": "GET"},
    "disposition_id": 1,
}


@pytest.mark.parametrize("stamp", [SECONDS, SECONDS + 0.25, str(SECONDS)], ids=["int", "fraction", "text"])
def test_an_ocsf_time_in_seconds_is_not_read_as_milliseconds_of_1970(tmp_path: Path, stamp: Any) -> None:
    """OCSF's `time` is epoch milliseconds, but producers that write seconds exist. Read as milliseconds, a finding
    of today was dated January 1970: out of every window a case, a profile or a report is read over."""
    (alert,), report, _ = ingest(tmp_path, [{**OCSF_FINDING, "time": stamp}])
    assert alert.observed_at.replace(microsecond=0) == datetime(2025, 12, 6, 5, 52, 9, tzinfo=UTC)
    assert report.dead_lettered == 0


@pytest.mark.parametrize("stamp", ["10" + "0" * 400, "true", "[1]"], ids=["huge", "bool", "list"])
def test_an_ocsf_time_that_is_no_time_costs_its_record_only(tmp_path: Path, stamp: str) -> None:
    record = json.dumps({**OCSF_FINDING, "time": 0}).replace('"time": 0', f'"time": {stamp}')
    alerts, _, (entry,) = ingest(tmp_path, [record, OCSF_FINDING])
    assert len(alerts) == 1 and "invalid timestamp in time" in entry["error"]


def test_an_ocsf_time_in_milliseconds_still_reads_as_milliseconds(tmp_path: Path) -> None:
    (alert,), _, _ = ingest(tmp_path, [{**OCSF_FINDING, "time": SECONDS * 1000 + 125}])
    assert alert.observed_at == datetime(2025, 12, 6, 5, 52, 9, 125000, tzinfo=UTC)


def ocsf_1_0_security_finding() -> dict[str, Any]:
    """OCSF 1.0's finding class (Security Finding, 2001; Detection Finding 2004 came with 1.1): its finding is
    `finding` (uid, title, types, desc), the analytic at the top level."""
    record = {k: v for k, v in copy.deepcopy(OCSF_FINDING).items() if k != "finding_info"}
    record.update(
        class_uid=2001,
        type_uid=200101,
        state_id=1,
        metadata={"version": "1.0.0", "product": {"name": "edge-ids", "vendor_name": "example"}},
        finding={"uid": "f-1", "title": "SQL injection attempt", "types": ["SQL Injection"], "desc": "UNION SELECT"},
        analytic={"uid": "r-1", "name": "sqli", "type_id": 1},
    )
    return record


def test_an_ocsf_1_0_security_finding_is_ingested_as_a_finding(tmp_path: Path) -> None:
    """Skipped as "not a Detection Finding", every finding of a 1.0 producer was lost without an error."""
    (alert,), report, dead = ingest(tmp_path, [ocsf_1_0_security_finding()])
    assert (report.skipped, dead) == ({}, [])
    assert (alert.source, alert.category, alert.signature) == ("ocsf", Category.SQLI, "SQL injection attempt")
    assert alert.rule_ids == ["r-1"]
    assert alert.src_ip == "198.51.100.66" and alert.src_connected


def test_a_detection_finding_that_names_its_finding_the_1_0_way_is_ingested(tmp_path: Path) -> None:
    record = ocsf_1_0_security_finding() | {"class_uid": 2004, "type_uid": 200401}
    (alert,), _, dead = ingest(tmp_path, [record])
    assert dead == [] and alert.signature == "SQL injection attempt"


def test_an_ocsf_finding_with_neither_finding_object_names_what_is_missing(tmp_path: Path) -> None:
    record = {k: v for k, v in OCSF_FINDING.items() if k != "finding_info"}
    _, _, (entry,) = ingest(tmp_path, [record])
    assert "finding_info" in entry["error"] and "finding" in entry["error"].replace("finding_info", "")


# -- ModSecurity v3 audit parts -----------------------------------------------------------------------------------


def modsec3() -> dict[str, Any]:
    return first_record(SAMPLES / "modsecurity3-nginx-audit.jsonl")


def test_a_modsecurity3_record_logged_without_part_h_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """libmodsecurity3 writes `producer` and `messages` only with audit log part H (transaction.cc). A site whose
    SecAuditLogParts leaves H out logs valid records with neither: they were dead-lettered as an unrecognised
    format, one "broken record" per request."""
    record = modsec3()
    del record["transaction"]["producer"], record["transaction"]["messages"]
    alerts, report, dead = ingest(tmp_path, [record, modsec3()])
    assert dead == [] and len(alerts) == 1
    ((reason, count),) = report.skipped.items()
    assert count == 1 and "part H" in reason and reason.startswith("modsecurity3")


def test_a_transaction_with_its_rule_messages_beside_it_is_not_skipped_as_no_rule_matched(tmp_path: Path) -> None:
    """A record whose `messages` sit next to `transaction` (Coraza's audit JSON) is not libmodsecurity3's: read as
    one, it was skipped as "no rule matched" while it lists the rules that matched."""
    record = modsec3()
    record["messages"] = record["transaction"].pop("messages")
    _, report, (entry,) = ingest(tmp_path, [record])
    assert report.skipped == {} and "unrecognised record format" in entry["error"]


# -- Suricata EVE versions ----------------------------------------------------------------------------------------


def eve() -> dict[str, Any]:
    return first_record(DATA / "suricata7-lab-eve.jsonl")


@pytest.mark.parametrize("metadata", [["tag SQL_Injection"], "SQL_Injection", 7], ids=["list", "text", "number"])
def test_rule_metadata_of_another_shape_does_not_cost_the_alert(tmp_path: Path, metadata: Any) -> None:
    """`alert.metadata` is what a rule author wrote (Suricata 7 and 8 write an object of lists). Another shape is
    no reason to lose the IDS alert: it is classified without it, and kept in raw."""
    record = eve()
    record["alert"]["metadata"] = metadata
    (alert,), _, dead = ingest(tmp_path, [record])
    assert dead == [] and alert.category == Category.SQLI
    assert alert.raw["alert"]["metadata"] == metadata


def suricata6_response_alert() -> dict[str, Any]:
    """Suricata 6 EVE: no `direction`, and `flow` without the originator's address (both came with 7). An alert on
    the server's answer (ET ATTACK_RESPONSE: a reflected `id` output) then names the server as `src_ip`."""
    record = eve()
    del record["direction"], record["pkt_src"]
    originator = ("src_ip", "dest_ip", "src_port", "dest_port")
    record["flow"] = {k: v for k, v in record["flow"].items() if k not in originator}
    record.update(src_ip="198.51.100.1", src_port=8080, dest_ip="198.51.100.66", dest_port=41582)
    record["alert"].update(signature_id=2100498, signature="GPL ATTACK_RESPONSE id check returned root")
    record["alert"].update(category="Potentially Bad Traffic", severity=2)
    record["http"]["status"] = 200
    return record


def test_an_eve_alert_that_does_not_say_which_side_sent_it_vouches_for_no_connection(tmp_path: Path) -> None:
    """Without `direction` or the flow's originator, the alert's src_ip may be the server (an alert on the answer,
    which the attacker provokes by having a page reflect `uid=0(root)`). Vouched as a connected source, our own web
    server was the case's source, and the guard isolates a connected source of ours alone at L4."""
    (alert,), _, dead = ingest(tmp_path, [suricata6_response_alert()])
    assert dead == [] and alert.src_ip == "198.51.100.1"  # kept as the sensor wrote it: a person reads the evidence
    assert not alert.src_connected


def test_an_eve_alert_that_says_its_direction_still_vouches(tmp_path: Path) -> None:
    record = suricata6_response_alert() | {"direction": "to_client"}
    (alert,), _, _ = ingest(tmp_path, [record])
    assert (alert.src_ip, alert.src_connected) == ("198.51.100.66", True)


@pytest.mark.parametrize("direction", ["to_server", "to_client"])
def test_an_eve_address_the_flow_never_carried_vouches_for_no_connection(tmp_path: Path, direction: str) -> None:
    """Suricata's `xff: {mode: overwrite}` (for sensors behind a proxy) writes the X-Forwarded-For header, the
    client's text, as the alert's src_ip (dest_ip on an answer); the flow's own endpoints stay in `flow`. Vouched as
    a connected source, any address a client wrote in a header was blocked alone."""
    record = eve()
    record["direction"] = direction
    if direction == "to_client":  # an answer: the server is src, the client (overwritten) dest
        record.update(src_ip="198.51.100.1", src_port=8080, dest_ip="192.0.2.77", dest_port=41582)
    else:
        record["src_ip"] = "192.0.2.77"
    (alert,), _, dead = ingest(tmp_path, [record])
    assert dead == [] and alert.src_ip == "192.0.2.77"  # kept as the sensor reported it
    assert not alert.src_connected


def test_an_eve_alert_from_the_flows_own_client_still_vouches(tmp_path: Path) -> None:
    (alert,), _, _ = ingest(tmp_path, [eve()])
    assert (alert.src_ip, alert.src_connected) == ("198.51.100.66", True)


def test_an_ocsf_source_vouches_only_with_the_request_it_sent(tmp_path: Path) -> None:
    """A finding with several evidences: the source address is read from the first that names one, a forgeable DNS
    query here; an HTTP request in another evidence (another client's) made that address a connected source."""
    record = {k: v for k, v in OCSF_FINDING.items() if k not in ("src_endpoint", "http_request")}
    record["evidences"] = [
        {"src_endpoint": {"ip": "192.0.2.53"}, "query": {"hostname": "beacon.example", "type": "TXT"}},
        {"src_endpoint": {"ip": "198.51.100.66"}, "http_request": {"url": {"url_string": "/?id=1'"}}},
    ]
    (alert,), _, _ = ingest(tmp_path, [record])
    assert alert.src_ip == "192.0.2.53" and not alert.src_connected


def test_an_ocsf_source_with_its_own_request_in_its_evidence_vouches(tmp_path: Path) -> None:
    record = {k: v for k, v in OCSF_FINDING.items() if k not in ("src_endpoint", "http_request")}
    record["evidences"] = [{"src_endpoint": {"ip": "198.51.100.66"}, "http_request": {"url": {"url_string": "/"}}}]
    (alert,), _, _ = ingest(tmp_path, [record])
    assert alert.src_ip == "198.51.100.66" and alert.src_connected


def test_an_access_line_says_what_the_application_answered_when_nginx_answered_otherwise(tmp_path: Path) -> None:
    line = first_record(DATA / "nginx-access.jsonl")
    line.update(status=200, upstream_addr="127.0.0.1:8081", upstream_status="404")  # error_page 404 =200
    (alert,), _, _ = ingest(tmp_path, [line])
    assert alert.signature == "HTTP 200, the application answered 404"
    assert not alert.blocked
