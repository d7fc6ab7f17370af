"""Triage on the real sensor output in shared/ (ModSecurity v2/v3, Suricata EVE, the CRS 3.3.4 regression corpus).

`pytest -s tests/test_triage.py` prints the verdict distribution on the corpus and the per-incident cost.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.case.grouping import group_alerts, incident_from_alerts
from autonomy_controller.controller.ingest import parse_record, read_alerts
from autonomy_controller.controller.models import Alert, Category, Incident, Severity
from autonomy_controller.controller.triage import (
    SourceHistory,
    TriageModel,
    TriageResult,
    TriageVerdict,
    load_triage_model,
    triage,
)
from autonomy_controller.controller.triage.facts import alert_facts
from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
SAMPLES = SHARED / "samples"
CORPUS = SHARED / "corpora" / "crs-3.3.4-regression-alerts.jsonl.gz"
NETNS = SAMPLES / "modsecurity3-netns-audit.jsonl"
NGINX = SAMPLES / "modsecurity3-nginx-audit.jsonl"
APACHE = SAMPLES / "modsecurity2-apache-audit.jsonl"
EVE = SAMPLES / "suricata-eve.jsonl"
ATTACKER, BENIGN = "198.51.100.66", "203.0.113.7"
SAMPLE_FILES = (APACHE, NETNS, NGINX, EVE)


@cache
def model() -> TriageModel:
    return load_triage_model(REPO / "levels")


@cache
def alerts_of(path: Path) -> tuple[Alert, ...]:
    return tuple(read_alerts(path))


def incidents_of(path: Path) -> dict[str, Incident]:
    return {i.key: i for i in group_alerts(alerts_of(path))}


def of_category(path: Path, src: str, category: Category) -> Incident:
    """One source's alerts of one category: what a case's category view holds, or a case that has only it."""
    return incident_from_alerts(
        f"src:{src}", [a for a in alerts_of(path) if a.src_ip == src and a.category is category]
    )


def one(alert: Alert) -> Incident:
    """A single alert as its own incident: a lone request from a new address."""
    return incident_from_alerts(f"{alert.category.value}:{alert.src_ip}", [alert])


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def reparsed(record: dict[str, Any]) -> Alert:
    (alert,) = parse_record(record, "test")
    return alert


def assert_explained(result: TriageResult) -> None:
    """The factors add up to the score (before the 0..100 clamp) and each says why."""
    total = sum(f.contribution for f in result.factors)
    assert min(100.0, max(0.0, total)) == pytest.approx(result.score, abs=0.15)
    assert all(f.why for f in result.factors)
    assert result.model_revision == model().revision


# ------------------------------------------------------------------------------------------------ samples


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_incident_gets_an_explained_verdict(path: Path) -> None:
    for incident in incidents_of(path).values():
        result = triage(incident, model())
        assert_explained(result)
        assert result.evidence.alerts == len(incident.alerts)
        if result.evidence.requests == 1:  # one request is never a confident verdict
            assert result.confidence <= 0.6


def test_the_lab_attackers_sqli_storm_is_malicious_and_the_benign_client_is_noise() -> None:
    incidents = incidents_of(NETNS)
    storm = triage(of_category(NETNS, ATTACKER, Category.SQLI), model())
    assert storm.verdict is TriageVerdict.MALICIOUS and storm.confidence >= 0.8
    assert storm.evidence.libinjection_hits >= 14 and storm.evidence.statuses == {"403": 14}
    case = triage(incidents[f"src:{ATTACKER}"], model())  # the attacker's whole case: every class it tried
    assert case.verdict is TriageVerdict.MALICIOUS and len(case.evidence.attack_classes) >= 5
    # 203.0.113.7 browsed /products and / and got 200s; CRS flagged only the numeric Host header (920350, PL1).
    benign = triage(incidents[f"src:{BENIGN}"], model())
    assert benign.verdict is TriageVerdict.NOISE
    assert benign.evidence.reached_application == 6 and benign.evidence.blocked == 0


def test_a_containment_403_is_not_the_sensors_verdict() -> None:
    """The lab's deny list answers 403 to the contained attacker with only 920350 logged: CRS did not judge
    those requests, so they do not count as the sensor's verdict (our own block must not feed back)."""
    contained = [a for a in alerts_of(NETNS) if a.src_ip == ATTACKER and a.rule_ids == ["920350"] and a.blocked]
    assert contained, "the sample has containment 403s"
    result = triage(incident_from_alerts(f"src:{ATTACKER}", contained), model())
    assert result.evidence.blocked == 0 and result.evidence.statuses == {"403": len(contained)}
    assert result.verdict is TriageVerdict.NOISE


def test_tool_driven_attack_across_classes_is_malicious_with_confidence() -> None:
    """Every attack-class alert 198.51.100.66 sent (real lab records), as one incident: dozens of payloads."""
    attack = [a for a in alerts_of(NETNS) if a.src_ip == ATTACKER and a.category is not Category.PROTOCOL]
    assert len(attack) >= 30
    result = triage(incident_from_alerts(f"src:{ATTACKER}", attack), model())
    assert result.verdict is TriageVerdict.MALICIOUS and result.confidence >= 0.8
    assert {"sqli", "xss", "lfi", "rce", "php_injection"} <= set(result.evidence.attack_classes)
    assert_explained(result)


def test_split_by_category_the_sources_other_classes_come_from_history() -> None:
    """A case holds the source's classes while it is open; a later case that has one class only (the same tool
    back after the first case closed) gets the others from the ledger's view of the source (SourceHistory)."""
    sqli = of_category(NETNS, ATTACKER, Category.SQLI)
    alone = triage(sqli, model())
    others = frozenset({Category.XSS, Category.LFI, Category.RCE, Category.PHP_INJECTION})
    together = triage(sqli, model(), SourceHistory(categories=others))
    assert together.score > alone.score and together.confidence >= alone.confidence
    classes = next(f for f in together.factors if f.name == "attack_classes")
    assert classes.value == 1.0 and "other incidents" in classes.why


def test_single_stray_pl1_hits_from_the_corpus_are_never_confidently_malicious() -> None:
    """Every corpus request whose only rule hit is one PL1 attack rule with a low anomaly score (<= 5), as a lone
    request from a new address: noise or suspicious, low confidence."""
    stray = []
    for alert in alerts_of(CORPUS):
        facts = alert_facts(alert, frozenset(model().waf_sources))
        hits = [h for h in facts.hits if not h.is_total]
        if len(hits) == 1 and hits[0].paranoia == 1 and (facts.anomaly_score or 0) <= 5:
            stray.append(alert)
    assert len(stray) >= 50  # mostly protocol rules (920300, 920450...), and 941110, 934100, 943110/943120
    for alert in stray:
        result = triage(one(alert), model())
        assert result.verdict in (TriageVerdict.NOISE, TriageVerdict.SUSPICIOUS), alert.rule_ids
        assert result.confidence <= 0.6


def test_no_single_request_anywhere_is_malicious_with_confidence_08() -> None:
    for path in (*SAMPLE_FILES, CORPUS):
        for alert in alerts_of(path):
            result = triage(one(alert), model())
            assert not (result.verdict is TriageVerdict.MALICIOUS and result.confidence >= 0.8)


# --------------------------------------------------------------------------------------- repetition, trust


def test_one_alert_and_a_hundred_do_not_score_the_same_with_diminishing_returns() -> None:
    sqli = incidents_of(CORPUS)["src:127.0.0.1"].alerts

    def repetition(n: int) -> float:
        result = triage(incident_from_alerts("src:127.0.0.1", sqli[:n]), model())
        return next(f.value for f in result.factors if f.name == "repetition")

    r1, r10, r50, r100 = (repetition(n) for n in (1, 10, 50, 100))
    assert r1 < r10 < r50 <= r100
    assert r100 - r50 < r50 - r10 < r10 - r1 + 0.2  # each tenfold more adds less
    assert r1 < 0.25


def test_adding_alerts_never_lowers_the_score() -> None:
    """Max/count aggregation: an attacker cannot dilute a real attack with harmless requests or engine noise."""
    sqli = incidents_of(CORPUS)["src:127.0.0.1"].alerts
    scores = [triage(incident_from_alerts("k", list(sqli[:n])), model()).score for n in range(1, 200, 7)]
    assert scores == sorted(scores)
    storm = incidents_of(NETNS)[f"src:{ATTACKER}"]
    harmless = [a for a in alerts_of(NETNS) if a.src_ip == BENIGN]  # 920350 on pages that answered 200
    diluted = incident_from_alerts(storm.key, [*storm.alerts, *harmless * 10])
    assert triage(diluted, model()).score >= triage(storm, model()).score


def test_request_text_the_attacker_writes_does_not_move_the_score() -> None:
    """Rewriting the URI, the user agent (to a browser's) and the matched data of a real blocked SQLi request
    changes nothing: triage reads rule metadata, not request content."""
    record = next(r for r in records(NETNS) if "UNION" in r["transaction"]["request"]["uri"])
    original = triage(one(reparsed(record)), model())
    forged = copy.deepcopy(record)
    tx = forged["transaction"]
    tx["request"]["uri"] = "/?note=false+positive+benign+test+score+0+noise"
    tx["request"]["headers"]["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Googlebot/2.1"
    for message in tx["messages"]:
        message["details"]["data"] = "benign: ignore this alert, severity 0, paranoia-level/4"
    result = triage(one(reparsed(forged)), model())
    assert result.score == original.score and result.verdict is original.verdict


def test_a_scanner_user_agent_raises_suspicion_and_a_browsers_never_lowers_it() -> None:
    record = next(r for r in records(NGINX) if "UNION" not in r["transaction"]["request"]["uri"])
    base = triage(one(reparsed(record)), model())
    as_tool, as_browser = copy.deepcopy(record), copy.deepcopy(record)
    as_tool["transaction"]["request"]["headers"]["User-Agent"] = "sqlmap/1.7.2#stable (https://sqlmap.org)"
    as_browser["transaction"]["request"]["headers"]["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
    tool = triage(one(reparsed(as_tool)), model())
    assert tool.score > base.score
    scanner = next(f for f in tool.factors if f.name == "scanner")
    assert scanner.why.endswith("'sqlmap'") and scanner.trust == "request"
    assert tool.attacker_influenced_points == scanner.contribution > 0 and base.attacker_influenced_points == 0
    assert triage(one(reparsed(as_browser)), model()).score == base.score


def test_crs_scanner_rule_913100_counts_as_scanner_with_attack_techniques() -> None:
    result = triage(incidents_of(NETNS)[f"src:{ATTACKER}"], model())
    scanner = next(f for f in result.factors if f.name == "scanner")
    assert scanner.value == 1.0 and scanner.trust == "sensor"  # CRS matched it: the sensor's fact
    assert {"T1595", "T1595.002"} <= {t.id for t in result.techniques}


def test_waf_and_ids_on_the_same_source_agree() -> None:
    """The lab's ModSecurity and Suricata saw the same SQLi from 198.51.100.66: same incident key, two sensors."""
    waf = of_category(NETNS, ATTACKER, Category.SQLI)
    ids = of_category(EVE, ATTACKER, Category.SQLI)
    both = incident_from_alerts(waf.key, [*waf.alerts, *ids.alerts])
    agreed = triage(both, model())
    assert next(f for f in agreed.factors if f.name == "sensor_agreement").value == 1.0
    assert agreed.score > triage(waf, model()).score
    assert agreed.evidence.sensors == ["modsecurity3", "suricata"]
    # The same agreement known from the ledger (the IDS incident seen before) counts the same way.
    via_history = triage(waf, model(), SourceHistory(sensors=frozenset({"suricata"})))
    assert next(f for f in via_history.factors if f.name == "sensor_agreement").value == 1.0


def test_ids_signatures_on_one_request_count_once_for_repetition() -> None:
    """Suricata fired three SQLi signatures on one HTTP request (one flow, one tx): one request, not three."""
    result = triage(of_category(EVE, ATTACKER, Category.SQLI), model())
    assert result.evidence.alerts == 3 and result.evidence.requests == 1
    assert result.evidence.statuses == {"403": 1}


def test_ids_alerts_on_the_servers_403_answer_are_weak_evidence() -> None:
    """ "GPL WEB_SERVER 403 Forbidden" (to_client) says the server refused something; it is not an attack."""
    answers = [a for a in alerts_of(EVE) if a.rule_ids == ["2101201"]]
    result = triage(incident_from_alerts(f"src:{ATTACKER}", answers), model())
    strength = next(f for f in result.factors if f.name == "rule_strength")
    assert strength.value <= 0.3 and result.evidence.attack_classes == []
    assert result.verdict is not TriageVerdict.MALICIOUS


def test_suricata_engine_events_are_noise_and_do_not_count() -> None:
    """A Suricata stream event (sid 2210045, its own engine's rule set) on a real EVE record."""
    record = next(r for r in records(EVE) if r.get("event_type") == "alert")
    record["alert"].update(
        signature_id=2210045,
        signature="SURICATA STREAM Packet with invalid ack",
        category="Generic Protocol Command Decode",
        severity=3,
        metadata={},
    )
    result = triage(one(reparsed(record)), model())
    assert result.verdict is TriageVerdict.NOISE and result.evidence.engine_noise_alerts == 1
    assert next(f for f in result.factors if f.name == "rule_strength").value == 0.0


def test_history_only_raises() -> None:
    incident = incidents_of(NGINX)["src:127.0.0.1"]
    plain = triage(incident, model())
    assert triage(incident, model(), SourceHistory()).score == plain.score
    # A long quiet past (many earlier incidents, none malicious) is cheap to fake: it must not help the source.
    quiet = triage(incident, model(), SourceHistory(prior_incidents=200, prior_alerts=5000))
    assert quiet.score >= plain.score
    known_bad = triage(incident, model(), SourceHistory(prior_malicious=3, confirmed_actions=1))
    assert known_bad.score > quiet.score
    assert next(f for f in known_bad.factors if f.name == "source_history").value == 1.0


def test_protocol_only_incidents_are_capped_below_malicious() -> None:
    """Corpus requests whose rules are all protocol enforcement (920xxx), however many: at most suspicious, and no
    count of requests rests on them (a protocol rule firing on every request is a storm, not a tool)."""
    protocol = [
        a
        for a in incidents_of(CORPUS)["src:127.0.0.1"].alerts
        if all(r[:3] in ("920", "949", "980") for r in a.rule_ids)
    ]
    assert len(protocol) >= 100
    result = triage(incident_from_alerts("src:127.0.0.1", protocol), model())
    assert result.verdict is not TriageVerdict.MALICIOUS
    assert result.score <= model().caps.protocol_only_score
    counts = {f.name: f.value for f in result.factors if f.name in ("repetition", "sensor_verdict", "attack_classes")}
    assert counts == {"repetition": 0.0, "sensor_verdict": 0.0, "attack_classes": 0.0}


# ------------------------------------------------------------------------------------------------ the corpus


def best_of_3(run: Callable[[], object]) -> float:
    """Milliseconds of the fastest of three runs: the machine is shared, the slowest run measures the neighbours."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        run()
        timings.append((time.perf_counter() - started) * 1000)
    return min(timings)


def test_crs_corpus_verdicts_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    """The 2,354 CRS regression alerts grouped by the product's own grouping: the attack incidents (hundreds of
    tool-driven payloads) are malicious with confidence; the distribution and the cost are printed."""
    incidents = group_alerts(alerts_of(CORPUS))
    results = {i.key: triage(i, model()) for i in incidents}
    for key in ("src:127.0.0.1", "src:127.0.0.1", "src:127.0.0.1", "src:127.0.0.1"):
        assert results[key].verdict is TriageVerdict.MALICIOUS and results[key].confidence >= 0.8, key
    for result in results.values():
        assert_explained(result)
    grouped = Counter(r.verdict.value for r in results.values())

    lone = [one(a) for a in alerts_of(CORPUS)]
    per_alert = Counter(triage(i, model()).verdict.value for i in lone)
    lone_ms = best_of_3(lambda: [triage(i, model()) for i in lone]) / len(lone)
    grouped_ms = best_of_3(lambda: [triage(i, model()) for i in incidents])
    with capsys.disabled():
        print(f"\nCRS corpus, {len(incidents)} incidents: {dict(grouped)}")
        for key, r in results.items():
            print(f"  {key:28} {r.evidence.alerts:5} alerts  {r.verdict.value:10} {r.confidence:.2f}  {r.score:5.1f}")
        print(f"each alert alone: {dict(per_alert)}")
        print(
            f"cost: {lone_ms:.3f} ms per single-alert incident; all {len(incidents)} grouped incidents "
            f"({len(alerts_of(CORPUS))} alerts) {grouped_ms:.1f} ms"
        )
    assert lone_ms < 1.0  # a typical (small) incident, well under a millisecond even on a shared 2-core box


def test_sensors_without_rule_metadata_are_never_de_noised_when_they_say_high() -> None:
    """OCSF findings (the shipped example: an EDR's C2 beacon, lateral movement, exfiltration) carry no rule
    metadata triage can rate: a high/critical one is at least suspicious, a medium one may be noise."""
    findings = REPO / "examples" / "alerts" / "ocsf-detection-finding.jsonl"
    incidents = incidents_of(findings)
    c2 = triage(of_category(findings, "10.0.4.31", Category.C2), model())
    assert c2.verdict is TriageVerdict.SUSPICIOUS
    assert any(f.name == "floor_unrated_sensor" and f.trust == "model" for f in c2.factors)
    assert [t.id for t in c2.techniques] == ["T1071"]
    lateral = triage(of_category(findings, "10.0.4.31", Category.LATERAL_MOVEMENT), model())
    assert [t.id for t in lateral.techniques] == ["T1021", "T1210"]
    for incident in incidents.values():
        result = triage(incident, model())
        assert_explained(result)
        if incident.severity.rank >= Severity.HIGH.rank:
            assert result.verdict is not TriageVerdict.NOISE
