"""Adversarial review of triage on benign data nobody on the team wrote (CSIC 2010 through the real WAF at PL2-PL4,
stock CRS 3.3.4's restricted headers): a benign user's session must never be `malicious`.

Before this review, triage counted every request of a session and CRS's raw anomaly total alike, whatever rule
made them: at PL4 a benign CSIC user whose Latin-1 form fields trip 920272/920273 on every request (CRS total 58 on
one request: the points are added once per matched field) scored 70.9, malicious; with stock CRS (920450 on the
Accept-Charset header every CSIC client sends) at PL2, 67.9, a few points short. The records below are ModSecurity
v3 audit lines as the lab's nginx + libmodsecurity 3.0.9 + CRS 3.3.4 logged them for those users (rule messages,
severities and tags copied from the replay), read through the real ingest parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.ingest import parse_line
from autonomy_controller.controller.models import Alert, Incident
from autonomy_controller.controller.triage import TriageVerdict, triage
from autonomy_controller.controller.triage.engine import guard_summary
from tests.test_triage import model

USER = "198.51.100.151"
ATTACKER = "198.51.100.66"
BASE = ["application-multi", "language-multi", "platform-multi"]
RULES: dict[str, tuple[str, str, list[str]]] = {
    # rule: (message, severity as libmodsecurity3 logs it, tags)
    "920450": ("HTTP header is restricted by policy (/accept-charset/)", "2", ["attack-protocol", "paranoia-level/1"]),
    "920272": (
        "Invalid character in request (outside of printable chars below ascii 127)",
        "2",
        ["attack-protocol", "paranoia-level/3"],
    ),
    "920273": (
        "Invalid character in request (outside of very strict set)",
        "2",
        ["attack-protocol", "paranoia-level/4"],
    ),
    "932200": ("RCE Bypass Technique", "2", ["attack-rce", "paranoia-level/2"]),
    "942110": ("SQL Injection Attack: Common Injection Testing Detected", "4", ["attack-sqli", "paranoia-level/2"]),
    "942432": (
        "Restricted SQL Character Anomaly Detection (args): # of special characters exceeded (2)",
        "4",
        ["attack-sqli", "paranoia-level/4"],
    ),
    "942100": ("SQL Injection Attack Detected via libinjection", "2", []),  # v3 logs it without tags
    "941100": ("XSS Attack Detected via libinjection", "2", ["attack-xss", "paranoia-level/1"]),
    "930120": ("OS File Access Attempt", "2", ["attack-lfi", "paranoia-level/1"]),
}


def message(rule: str) -> dict[str, Any]:
    text, severity, tags = RULES[rule]
    details = {"ruleId": rule, "severity": severity, "tags": [*BASE, *tags, "OWASP_CRS"], "data": "ARGS:B1=A"}
    return {"message": text, "details": details}


def total(score: int) -> dict[str, Any]:
    details = {"ruleId": "949110", "severity": "2", "tags": [*BASE, "attack-generic"], "data": ""}
    return {"message": f"Inbound Anomaly Score Exceeded (Total Score: {score})", "details": details}


def audit_line(source: str, n: int, rules: list[str], score: int, second: int) -> str:
    record = {
        "transaction": {
            "client_ip": source,
            "time_stamp": f"Sun Dec  6 15:{second // 60:02d}:{second % 60:02d} 2026",
            "host_ip": "198.51.100.1",
            "host_port": 8080,
            "unique_id": f"{source}-{n}",
            "request": {
                "method": "GET",
                "http_version": 1.1,
                "uri": f"/tienda1/publico/anadir.jsp?id={n}&B1=A%F1adir+al+carrito",
                "headers": {"Host": "web-01.lab", "User-Agent": "Mozilla/5.0 (compatible; Konqueror/3.5; Linux)"},
            },
            "response": {"http_code": 403},
            "producer": {"modsecurity": "ModSecurity v3.0.9 (Linux)", "secrules_engine": "Enabled"},
            "messages": [*(message(r) for r in rules), total(score)],
        }
    }
    return json.dumps(record)


def session(source: str, requests: Iterator[tuple[list[str], int]], every: int = 1) -> Incident:
    alerts: list[Alert] = []
    for n, (rules, score) in enumerate(requests):
        alerts += parse_line(audit_line(source, n, rules, score, n * every), "review").alerts
    return incident_from_alerts(f"src:{source}", alerts)


def benign_pl4(length: int) -> Iterator[tuple[list[str], int]]:
    """A CSIC user at PL4 as replayed: Latin-1 text in form fields on every request (920272 + 920273, CRS adding
    their points once per field), 932200 on an address with a space and a slash now and then, 942432 on a
    phone number's punctuation."""
    for n in range(length):
        rules = ["920272", "920273"]
        if n % 12 == 0:
            rules.append("932200")
        if n % 20 == 0:
            rules.append("942432")
        yield rules, 58 if "932200" in rules else 40


def benign_stock_pl2(length: int) -> Iterator[tuple[list[str], int]]:
    """A CSIC user with stock CRS 3.3.4 at PL2: 920450 on every request (Accept-Charset), 932200 and 942110 on a
    few."""
    for n in range(length):
        rules = ["920450"]
        if n % 25 == 0:
            rules.append("932200")
        if n % 60 == 7:
            rules.append("942110")
        yield rules, 5 + sum(5 if r == "932200" else 3 for r in rules[1:])


BENIGN = {
    "PL4, 150 requests": lambda: session(USER, benign_pl4(150)),
    "PL4, 1,000 requests": lambda: session(USER, benign_pl4(1000)),
    "stock CRS PL2, 150 requests": lambda: session(USER, benign_stock_pl2(150)),
    "stock CRS PL2, 1,000 requests": lambda: session(USER, benign_stock_pl2(1000)),
}


@pytest.mark.parametrize("name", list(BENIGN), ids=list(BENIGN))
def test_a_benign_session_of_noisy_high_paranoia_or_storm_rules_is_never_malicious(name: str) -> None:
    result = triage(BENIGN[name](), model())
    assert result.verdict is not TriageVerdict.MALICIOUS, (
        result.score,
        [(f.name, f.contribution) for f in result.factors],
    )
    assert guard_summary(result, model()).verdict != "malicious"


def test_protocol_rules_on_every_request_count_for_no_request_of_intent() -> None:
    """The storm's requests are not a tool's: repetition and sensor_verdict rest on the few requests of intent."""
    storm = triage(session(USER, benign_stock_pl2(150)), model())
    few = triage(session(USER, ((r, s) for r, s in benign_stock_pl2(150) if len(r) > 1)), model())
    for name in ("repetition", "sensor_verdict", "attack_classes"):
        assert next(f.value for f in storm.factors if f.name == name) == next(
            f.value for f in few.factors if f.name == name
        ), name


def test_a_high_paranoia_rule_adds_its_class_in_proportion_and_its_points_by_paranoia() -> None:
    """942432 (PL4, a warning) alone is no SQL injection: its class counts for less than a PL1 hit's, and a
    request's CRS total of 58 built from PL3/PL4 protocol rules counts as the paranoia levels vouch for."""
    weak = triage(session(USER, iter([(["920272", "920273", "942432"], 58)])), model())
    classes = next(f for f in weak.factors if f.name == "attack_classes")
    anomaly = next(f for f in weak.factors if f.name == "anomaly_score")
    assert 0 < classes.value < 1 / 3
    assert anomaly.value < 0.5


ATTACKS = {
    # A tool's burst: dozens of PL1 payloads across classes within a minute.
    "tool burst": (
        lambda: session(ATTACKER, ((["942100", "941100", "930120"][n % 3 : n % 3 + 1], 5) for n in range(36)))
    ),
    # A slow attacker: one SQLi request a minute for half an hour (one case: the workflow's quiet window aside).
    "one request a minute": (lambda: session(ATTACKER, iter([(["942100"], 5)] * 30), 60)),
    # Few rules: each request trips one PL2 warning only.
    "one PL2 warning per request": (lambda: session(ATTACKER, iter([(["942110"], 3)] * 40))),
}


@pytest.mark.parametrize("name", list(ATTACKS), ids=list(ATTACKS))
def test_attacks_are_not_de_noised_away(name: str) -> None:
    result = triage(ATTACKS[name](), model())
    assert result.verdict is not TriageVerdict.NOISE, result.score
    if name == "tool burst":
        summary = guard_summary(result, model())
        assert summary.verdict == "malicious" and summary.confidence >= 0.8
