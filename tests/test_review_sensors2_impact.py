"""Adversarial review: a case's impact verdict with more data than the lab sends (controller/attackers/impact.py).

Real records (the lab's Suricata EVE and nginx access log) read by real ingest, as tests/test_impact.py does.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.impact import SCRATCH, assess
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.models import Alert
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
