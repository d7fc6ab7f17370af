"""The lab's second and third sensors as ingest sees them: Suricata 7 with the lab's rules, nginx's JSON access log.

Fixtures are verbatim output of the lab (`autonomy lab up`, then the named attacks and one benign page):
`data/suricata7-lab-eve.jsonl` (Suricata 7.0.10, controller/lab/ids.py's rules) and `data/nginx-access.jsonl`
(controller/ingest/nginx_access.py's LOG_FORMAT, written by the lab's nginx).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.ingest import Format, detect_format, read_dead_letters
from autonomy_controller.controller.ingest.classify import classify_suricata
from autonomy_controller.controller.lab.attacks import ATTACKS
from autonomy_controller.controller.lab.ids import LAB_RULES
from autonomy_controller.controller.models import Category, Severity
from tests.test_ingest import ingest

DATA = Path(__file__).parent / "data"
ACCESS = DATA / "nginx-access.jsonl"
LAB_EVE = DATA / "suricata7-lab-eve.jsonl"
ATTACKER, BENIGN = "198.51.100.66", "203.0.113.7"


def access_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in ACCESS.read_text().splitlines()]


# -- nginx access log ----------------------------------------------------------------------------------------


def test_access_records_say_what_got_through_the_waf(tmp_path: Path) -> None:
    alerts, report, _ = ingest(ACCESS, tmp_path)
    assert report.formats == {Format.NGINX_ACCESS.value: 6} and report.dead_lettered == 0
    stopped = [a for a in alerts if a.src_ip == ATTACKER]
    (passed,) = [a for a in alerts if a.src_ip == BENIGN]
    assert len(stopped) == 5 and all(a.blocked and a.signature == "HTTP 403 before the application" for a in stopped)
    assert (passed.blocked, passed.signature, passed.dst_ip, passed.dst_port) == (
        False,
        "HTTP 200 from the application",
        "203.0.113.1",
        8080,
    )
    assert "HTTP 200, 174 bytes sent" in passed.evidence and "upstream 200" in passed.evidence
    assert passed.id.startswith("nginx-access:") and len({a.id for a in alerts}) == 6
    assert alerts == ingest(ACCESS, tmp_path)[0], "request ids make re-reading the log idempotent"


def test_an_access_record_is_evidence_never_a_detection(tmp_path: Path) -> None:
    """Whatever the request says (the path is the attacker's text), an access record stays other / info / weak."""
    record = access_records()[-1]
    record["request_uri"] = "/?q=SQL injection UNION SELECT log4j ${jndi:ldap://x} ;cat /etc/passwd"
    record["http_user_agent"] = "sqlmap/1.7 Nikto"
    path = tmp_path / "loud.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (alert,), _, _ = ingest(path, tmp_path)
    assert (alert.category, alert.severity, alert.confidence) == (Category.OTHER, Severity.INFO, 0.05)


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda r: r.update(status="abc"), "status"),
        (lambda r: r.update(status=999), "status"),
        (lambda r: r.update(remote_addr="web-01"), "remote_addr"),
        (lambda r: r.pop("time"), "time"),
    ],
)
def test_broken_access_records_are_dead_lettered(tmp_path: Path, damage: Any, field: str) -> None:
    record = access_records()[0]
    damage(record)
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(record) + "\n")
    alerts, report, dead_letter = ingest(path, tmp_path)
    assert (alerts, report.dead_lettered) == ([], 1)
    (entry,) = read_dead_letters(dead_letter.path)
    assert field in entry["error"]


def test_access_detection_does_not_claim_other_formats() -> None:
    eve = json.loads(LAB_EVE.read_text().splitlines()[0])
    assert detect_format(eve) is Format.SURICATA
    assert detect_format(access_records()[0]) is Format.NGINX_ACCESS


# -- Suricata with the lab's rules ---------------------------------------------------------------------------


def test_the_lab_eve_alerts_classify_as_the_attacks_sent(tmp_path: Path) -> None:
    alerts, report, _ = ingest(LAB_EVE, tmp_path)
    assert report.dead_lettered == 0
    assert [a.category.value for a in alerts] == [
        ATTACKS[n].category for n in ("sqli", "xss", "traversal", "cmdi", "scanner")
    ]
    assert all(a.src_ip == ATTACKER and a.dst_ip == "198.51.100.1" and not a.blocked for a in alerts)


def test_every_lab_rule_names_the_class_of_an_attack_the_lab_sends() -> None:
    """A rule whose message the classifier reads as another class would put Suricata's alert in another incident
    than the WAF's for the same request."""
    rules = re.findall(r'msg:"([^"]+)";.*?classtype:([a-z-]+);', LAB_RULES.replace("\\\n", " "), re.DOTALL)
    priority = {"web-application-attack": 1, "attempted-recon": 2}
    categories = [
        classify_suricata(
            signature=msg, classtype=None, metadata_terms=[], severity=priority[cls], signature_severity=None
        ).category.value
        for msg, cls in rules
    ]
    assert sorted(categories) == sorted(attack.category for attack in ATTACKS.values())
