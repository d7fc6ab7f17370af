"""Adversarial review: a case's impact verdict with more data than the lab sends (controller/attackers/impact.py).

Real records (the lab's Suricata EVE and nginx access log) read by real ingest, as tests/test_impact.py does.
"""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.impact import SCRATCH, assess
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.models import Alert
from tests.harness import alert_lines, burst
from tests.test_attackers import lines, parsed

LEGACY = "/legacy/download?file=../../../../etc/passwd"


def scan_then_a_traversal_that_got_through(tmp_path: Path, scanned: int) -> list[Alert]:
    """A scanner's requests (nikto sends about 7,000) answered 404 on as many paths, then a traversal on a path the WAF
    does not cover: the IDS alerts (before it saw the answer: no status) and the application answers 200."""
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    probe = copy.deepcopy(access[0])
    probe.update(status=404, upstream_addr="127.0.0.1:8081", upstream_status="404", body_bytes_sent=153)
    scan = [dict(probe, request_id=f"{n:032x}", request_uri=f"/scan/{n}.php") for n in range(scanned)]
    ids = copy.deepcopy(eve[2])
    ids["http"].update(url=LEGACY)
    del ids["http"]["status"], ids["http"]["length"]
    answered = copy.deepcopy(access[0])
    answered.update(request_id="f" * 32, request_uri=LEGACY, status=200, body_bytes_sent=1234)
    answered.update(upstream_addr="127.0.0.1:8081", upstream_status="200")
    alerts = parsed([*scan, ids, answered], tmp_path)
    start = alerts[-2].observed_at
    # the scan came first: its lines are dated before the attack, one millisecond apart
    dated = [
        a.model_copy(update={"observed_at": start - timedelta(seconds=60) + timedelta(milliseconds=n)})
        for n, a in enumerate(alerts[:-2])
    ]
    return [*dated, *alerts[-2:]]


def test_a_scan_of_many_paths_before_the_attack_does_not_hide_that_it_got_through(tmp_path: Path) -> None:
    """The scratch profile a verdict is folded in keeps SCRATCH.paths paths; the scan's paths filled it, the path
    the attack went through was turned away, and the case read `attempted`: no asset reached, no evidence."""
    alerts = scan_then_a_traversal_that_got_through(tmp_path, SCRATCH.paths + 10)
    impact = assess(alerts, tracking_config(Settings()))
    assert (impact.verdict, impact.assets, impact.bytes_sent) == ("likely", ["web-01"], 1234)


def test_the_same_case_without_the_scan_is_likely(tmp_path: Path) -> None:
    impact = assess(scan_then_a_traversal_that_got_through(tmp_path, 3), tracking_config(Settings()))
    assert (impact.verdict, impact.assets) == ("likely", ["web-01"])


STAGING_WEB = "10.30.0.11"  # web-stg-01 (policies/inventory/data.yaml): staging, L4


def crafted_beacon_answered_200(tmp_path: Path) -> Path:
    """One request the attacker writes to match a malware rule (Cobalt Strike's default beacon URI), sent to a
    staging web server whose static file answers it 200, as the IDS logs it: a connected TCP flow, a C2 category
    from the rule's classtype, the application's 200."""
    record = lines("suricata7-lab-eve.jsonl")[0]
    record.update(dest_ip=STAGING_WEB, dest_port=80)
    record["flow"].update(dest_ip=STAGING_WEB, dest_port=80)
    record["alert"].update(signature_id=2030000, signature="ET MALWARE Cobalt Strike Beacon Observed", severity=1)
    record["alert"].update(category="A Network Trojan was detected", metadata={"malware_family": ["Cobalt_Strike"]})
    record["http"].update(url="/jquery-3.3.1.min.js", status=200, length=86927)
    path = tmp_path / "eve.json"
    path.write_text(json.dumps(record) + "\n")
    return path


def isolation_of_the_staging_server(tmp_path: Path, *records: str) -> dict[str, Any]:
    """`evaluate`'s decision on isolating web-stg-01, for a case of a WAF-blocked SQLi burst at it (which alone leaves
    the isolation to a person: tests/test_review_guard.py) and `records` (sensor lines) from the same attacker."""
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert_lines(burst(dst_ip=STAGING_WEB)) + "".join(r + "\n" for r in records))
    isolate = {"action": "host.isolate", "params": {"host": "web-stg-01", "ttl_seconds": 3600}}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"actions": [{**isolate, "rationale": "r", "confidence": 0.9}]}))
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}
    command = ["evaluate", str(alerts), "--json", "--engine", "wasm", "--plan", str(plan)]
    result = CliRunner().invoke(app, command, env=env)
    assert result.exit_code == 0, result.output
    records_out = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [decision] = [d for r in records_out for d in r["decisions"]]
    return decision


def test_an_answer_to_a_crafted_post_exploitation_request_reaches_no_asset(tmp_path: Path) -> None:
    """Impact `confirmed` lifts the isolation guardrail for the assets it lists as reached. One request written to
    match a malware rule and answered 200 by a static file listed the server it was sent to: with a burst the WAF
    blocked, the staging web server was isolated alone at L4."""
    beacon = crafted_beacon_answered_200(tmp_path).read_text().strip()
    impact = assess(list(read_alerts(tmp_path / "eve.json")), tracking_config(Settings()))
    assert (impact.verdict, impact.assets) == ("confirmed", [])  # what the source did, not a host it holds
    assert [e.status for e in impact.evidence] == [200]  # still shown as evidence
    decision = isolation_of_the_staging_server(tmp_path, beacon)
    assert decision["verdict"] == "approve", decision["reasons"]


def got_through_to_staging() -> str:
    """An IDS alert on a path the WAF does not cover, answered 200 by the staging server's application."""
    ids = lines("suricata7-lab-eve.jsonl")[2]
    ids.update(dest_ip=STAGING_WEB, dest_port=80, flow_id=ids["flow_id"] + 7)
    ids["flow"].update(dest_ip=STAGING_WEB, dest_port=80)
    ids["http"].update(url=LEGACY, status=200)
    return json.dumps(ids)


def test_a_200_on_an_uncovered_path_and_a_crafted_beacon_never_isolate_the_server_alone(tmp_path: Path) -> None:
    beacon = crafted_beacon_answered_200(tmp_path).read_text().strip()
    decision = isolation_of_the_staging_server(tmp_path, got_through_to_staging(), beacon)
    assert decision["verdict"] != "execute", decision["reasons"]


def an_attack_and_the_answer_the_client_got(tmp_path: Path, status: int, upstream_status: str) -> list[Alert]:
    """An IDS alert on a path the WAF does not cover (before the answer: no status) and the access-log line of that
    request: what the client got (`status`) and what the application behind the proxy answered (`upstream_status`)."""
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    ids = eve[2]
    ids["http"]["url"] = LEGACY
    del ids["http"]["status"], ids["http"]["length"]
    answered = dict(access[0], request_id="c" * 32, request_uri=LEGACY, status=status, body_bytes_sent=1500)
    answered.update(upstream_addr="127.0.0.1:8081", upstream_status=upstream_status)
    return parsed([ids, answered], tmp_path)


def test_a_200_nginx_made_of_the_applications_404_is_not_the_application_answering(tmp_path: Path) -> None:
    """`error_page 404 =200 /index.html` with `proxy_intercept_errors` (a single-page app's fallback): the client gets
    200 for every path, the application said 404. Read as the application's 2xx, every attack on any path of such a
    site was `likely`, and its server an asset reached."""
    alerts = an_attack_and_the_answer_the_client_got(tmp_path, 200, "404")
    impact = assess(alerts, tracking_config(Settings()))
    assert (impact.verdict, impact.assets, impact.bytes_sent) == ("attempted", [], 0)


def test_the_applications_own_2xx_after_a_retry_is_still_success(tmp_path: Path) -> None:
    alerts = an_attack_and_the_answer_the_client_got(tmp_path, 200, "502, 200")  # the first upstream failed
    impact = assess(alerts, tracking_config(Settings()))
    assert (impact.verdict, impact.assets, impact.bytes_sent) == ("likely", ["web-01"], 1500)
