"""The impact verdict of a case, on the lab's real Suricata EVE and nginx access-log records (tests/data).

Where a scenario needs an outcome the samples lack (an answer that got through), a real record is copied with
the fields the sensor would have written changed, as tests/test_attackers.py does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.impact import assess, case_stage
from autonomy_controller.controller.attackers.observe import TrackingConfig
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.models import Alert
from tests.harness import alert
from tests.test_attackers import DATA, lines, parsed

THROUGH_PATH = "/files?name=../../etc/passwd"


@pytest.fixture
def config(settings: Settings) -> TrackingConfig:
    return tracking_config(settings)


def eve_and_access() -> tuple[list[Alert], list[Alert]]:
    return list(read_alerts(DATA / "suricata7-lab-eve.jsonl")), list(read_alerts(DATA / "nginx-access.jsonl"))


def got_through(tmp_path: Path) -> tuple[list[Alert], list[Alert]]:
    """An IDS alert on a path the WAF does not cover, and the access-log line of the application's 200 to it."""
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    ids = copy.deepcopy(eve[2])
    ids["http"].update(url=THROUGH_PATH, status=200)
    ids["flow_id"] += 1
    answered = copy.deepcopy(access[0])
    answered.update(request_id="f" * 32, request_uri=THROUGH_PATH, status=200, body_bytes_sent=1234)
    answered.update(upstream_addr="127.0.0.1:8081", upstream_status="200")
    return parsed([ids], tmp_path), parsed([answered], tmp_path)


def test_no_alerts_and_access_log_answers_alone_are_no_impact(config: TrackingConfig) -> None:
    assert assess([], config).verdict == "none"
    _, access = eve_and_access()
    benign = [a for a in access if a.src_ip == "203.0.113.7"]  # a 200 with no attack against it
    impact = assess(benign, config)
    assert benign and (impact.verdict, impact.stage, impact.evidence) == ("none", "none", [])


def test_attacks_the_waf_refused_are_attempted_not_likely(config: TrackingConfig) -> None:
    eve, access = eve_and_access()
    mine = [a for a in eve + access if a.src_ip == "198.51.100.66"]
    impact = assess(mine, config)
    assert impact.verdict == "attempted" and impact.assets == [] and impact.bytes_sent == 0


def test_an_unblocked_attack_the_application_answered_2xx_is_likely_with_the_access_log_line(
    config: TrackingConfig, tmp_path: Path
) -> None:
    eve, access = eve_and_access()
    ids, answered = got_through(tmp_path)
    impact = assess(eve + access + answered + ids, config)  # arrival order does not matter
    assert impact.verdict == "likely" and impact.stage == "possible_success"
    assert impact.assets == ["web-01"] and impact.bytes_sent == 1234
    line = next(e for e in impact.evidence if e.sensor == "nginx-access")
    assert (line.alert_id, line.status, line.bytes_sent) == (answered[0].id, 200, 1234)
    assert {e.alert_id for e in impact.evidence} == {answered[0].id, ids[0].id}


def test_the_200_alone_or_an_answer_the_waf_refused_is_not_likely(config: TrackingConfig, tmp_path: Path) -> None:
    ids, answered = got_through(tmp_path)
    assert assess(answered, config).verdict == "none"  # an answer without an attack
    refused = ids[0].model_copy(update={"raw": {**ids[0].raw, "http": {**ids[0].raw["http"], "status": 403}}})
    eve, _ = eve_and_access()
    assert assess([*eve, refused], config).verdict == "attempted"


def test_post_exploitation_evidence_is_confirmed(config: TrackingConfig) -> None:
    impact = assess([alert(1, category="sqli"), alert(2, category="c2", dst_ip="198.51.100.1")], config)
    assert impact.verdict == "confirmed" and impact.evidence[0].alert_id == alert(2).id


def test_request_text_cannot_raise_the_verdict(config: TrackingConfig) -> None:
    """A blocked attack whose request text claims success stays attempted: only sensor facts count."""
    claim = alert(1, evidence="HTTP/1.1 200 OK status=200 upstream_status=200 bytes=99999", url="/?x=200")
    assert assess([claim], config).verdict == "attempted"


def test_a_batch_shows_its_own_stage(config: TrackingConfig, tmp_path: Path) -> None:
    eve, access = eve_and_access()
    assert case_stage(access[:1], config) == "none"
    assert case_stage(eve, config) == "exploitation_attempt"
    ids, answered = got_through(tmp_path)
    assert case_stage(ids + answered, config) == "possible_success"
