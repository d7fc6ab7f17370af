"""Attacker profiles folded from a real ledger (SQLite and PostgreSQL) of real sensor records.

The records are the lab's own Suricata EVE and nginx access log (tests/data) and ModSecurity alerts; where a
scenario needs an outcome the samples lack (an answer that got through), a real record is copied with the
fields the sensor would have written changed.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from autonomy_controller.controller.attackers import AttackerStore, Limits, track
from autonomy_controller.controller.attackers.store import profile_count
from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.ledger.engine import read_snapshot
from autonomy_controller.controller.models import Alert
from tests.harness import WAF_RAW, alert
from tests.test_ledger import ledger_url  # noqa: F401  (the both-backends fixture)

DATA = REPO_ROOT / "tests" / "data"
ATTACKER = "198.51.100.66"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger.from_url(ledger_url) as led:
        yield led


def submit(ledger: Ledger, alerts: list[Alert]) -> None:
    """Write alerts as the Submitter does (one record per alert, idempotent by incident and alert id)."""
    for a in alerts:
        key = incident_key(a)
        ledger.append_many(key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), f"alert:{key}:{a.id}")])


def lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def parsed(records: list[dict[str, Any]], tmp_path: Path) -> list[Alert]:
    """Real records through real ingest (format detection, normalisation)."""
    path = tmp_path / f"records-{len(list(tmp_path.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return list(read_alerts(path))


def test_one_profile_per_source_across_sensors(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, list(read_alerts(DATA / "suricata7-lab-eve.jsonl")) + list(read_alerts(DATA / "nginx-access.jsonl")))
    report = track(ledger, settings)
    assert report.profiles_created == 2 and report.through == ledger.head().seq
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None
    assert p.network == "198.51.100.0/24"
    assert p.sensors == {"suricata": 5, "nginx-access": 5}
    assert p.alerts == 10 and len(p.seqs) == 10
    assert p.assets == {"web-01": 10}  # dst 198.51.100.1 is web-01 in the inventory
    assert "T1190" in p.techniques
    assert p.user_agents["curl/7.88.1"] == 8 and sum(p.user_agents.values()) == 10  # nikto sent two
    assert {"/download", "/search", "/ping"} <= set(p.paths)
    # every request was refused before the application (403 from the WAF): no application answer counted
    assert p.outcomes.app_status == {} and p.stage == "exploitation_attempt"
    assert p.stages[0].why.endswith("from suricata")
    cited = ledger.get(p.stages[0].seq)
    assert cited is not None and cited.payload["src_ip"] == ATTACKER
    benign = AttackerStore(ledger).get("203.0.113.7")
    assert benign is not None and benign.stage == "none"  # an answer is not a detection
    assert benign.outcomes.app_status == {"nginx-access": {"2xx": 1}} and benign.outcomes.bytes_sent > 0


def test_stages_go_up_in_order_and_an_answer_that_got_through_is_possible_success(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    eve, access = lines("suricata7-lab-eve.jsonl"), lines("nginx-access.jsonl")
    scan = [alert(1, category="scanner", blocked=False)]  # recon first
    submit(ledger, scan)
    track(ledger, settings)
    submit(ledger, parsed([eve[0]], tmp_path))  # SQLi seen by the IDS, refused by the WAF (403)
    track(ledger, settings)
    assert AttackerStore(ledger).get(ATTACKER).stage == "exploitation_attempt"  # type: ignore[union-attr]
    # a path the WAF does not cover: the IDS alerts, the application answers 200 (EVE and access log agree)
    through = copy.deepcopy(eve[2])
    through["http"].update(url="/files?name=../../etc/passwd", status=200)
    through["flow_id"] += 1
    answered = copy.deepcopy(access[0])
    answered.update(request_id="f" * 32, request_uri="/files?name=../../etc/passwd", status=200, body_bytes_sent=1234)
    answered.update(upstream_addr="127.0.0.1:8081", upstream_status="200")
    submit(ledger, parsed([answered], tmp_path))
    track(ledger, settings)
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None and p.stage == "exploitation_attempt"  # a 200 alone is no success
    submit(ledger, parsed([through], tmp_path))
    track(ledger, settings)
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None
    assert [s.stage for s in p.stages] == ["recon", "exploitation_attempt", "possible_success"]
    assert p.outcomes.app_status["nginx-access"] == {"2xx": 1} and p.outcomes.bytes_sent == 1234
    assert p.paths["/files"].attacks_through == 1 and p.paths["/files"].app_success == 1
    success = ledger.get(p.stages[-1].seq)
    assert success is not None and success.payload["source"] == "suricata"


def test_post_exploitation_is_the_last_stage(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, [alert(1, category="c2"), alert(2, category="sqli")])
    track(ledger, settings)
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None and [s.stage for s in p.stages] == ["post_exploitation"]


def test_folding_is_idempotent_and_a_resubmitted_alert_is_counted_once(ledger: Ledger, settings: Settings) -> None:
    alerts = [alert(i) for i in range(5)]
    submit(ledger, alerts)
    track(ledger, settings)
    submit(ledger, alerts)
    assert track(ledger, settings).records == 0
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None and p.alerts == 5


def test_profiles_are_bounded_and_evict_the_lowest_stage_least_recently_seen_first(
    ledger: Ledger, settings: Settings
) -> None:
    submit(ledger, [alert(1, src_ip="192.0.2.200", category="sqli")])  # the oldest, but an attack
    submit(ledger, [alert(10 + i, src_ip=f"192.0.2.{i}", category="scanner") for i in range(5)])
    report = track(ledger, settings, Limits(max_profiles=3))
    assert report.evicted == 3
    store = AttackerStore(ledger)
    kept = {p.address for p in store.profiles(limit=10)}
    assert kept == {"192.0.2.200", "192.0.2.3", "192.0.2.4"}
    status = store.status()
    assert (status.profiles, status.evicted) == (3, 3)
    with read_snapshot(ledger.engine) as conn:
        assert profile_count(conn) == 3
        hinted = set(conn.execute(text("SELECT DISTINCT address FROM attacker_hint")).scalars())
    assert hinted == kept


def test_lists_in_a_profile_are_capped_and_what_a_cap_turned_away_is_counted(
    ledger: Ledger, settings: Settings
) -> None:
    submit(ledger, [alert(i, url=f"/p{i}", evidence="", raw={"headers": {}}) for i in range(40)])
    track(ledger, settings, Limits(paths=32, seqs=8))
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None
    assert len(p.paths) == 32 and p.dropped["paths"] == 8
    first = ledger.records(f"src:{ATTACKER}")[0].seq
    assert len(p.seqs) == 8 and p.seqs[:4] == list(range(first, first + 4)) and p.seqs[-1] == first + 39


def test_two_addresses_of_one_network_are_linked_as_a_hint(ledger: Ledger, settings: Settings) -> None:
    raw = {"transaction": {**WAF_RAW["transaction"], "request": {"headers": {"User-Agent": "sqlmap/1.7"}}}}
    submit(ledger, [alert(1, src_ip="198.51.100.66", source="modsecurity3", raw=raw)])
    submit(ledger, [alert(2, src_ip="198.51.100.67", source="modsecurity3", raw=raw)])
    submit(ledger, [alert(3, src_ip="203.0.113.9", source="modsecurity3", raw=raw)])
    submit(ledger, [alert(4, src_ip="2001:db8::1"), alert(5, src_ip="2001:db8::ffff:1")])
    track(ledger, settings)
    store = AttackerStore(ledger)
    p = store.get("198.51.100.66")
    assert p is not None and p.user_agents == {"sqlmap/1.7": 1}
    assert store.linked(p) == {"198.51.100.67": ["network", "user_agent"], "203.0.113.9": ["user_agent"]}
    v6 = store.get("2001:db8::1")
    assert v6 is not None and v6.network == "2001:db8::/64" and store.linked(v6) == {"2001:db8::ffff:1": ["network"]}


def test_the_controllers_actions_on_the_source_are_in_its_profile(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, [alert(1)])
    key = f"src:{ATTACKER}"
    decision = {
        "action_id": "a1",
        "action": "network.block_ip",
        "verdict": "approve",
        "policy_revision": "r",
        "risk": None,
    }
    ledger.append(key, RecordKind.DECISION, "guard", decision)
    ledger.append(key, RecordKind.DECISION, "guard", {**decision, "action_id": "a2", "action": "ticket.create"})
    ledger.append(key, RecordKind.APPROVAL, "user:bob", {"action_id": "a1", "event": "approved"})
    request = {"action_id": "a1", "action": "network.block_ip", "params": {"ip": ATTACKER}}
    ledger.append(key, RecordKind.EXECUTION, "controller", {"request": request, "outcome": {"status": "done"}})
    ledger.append(key, RecordKind.DECISION, "guard", {**decision, "action_id": "r2.a1", "verdict": "execute"})
    ledger.append(key, RecordKind.APPROVAL, "user:carol", {"action_id": "r2.a1", "event": "rejected"})
    track(ledger, settings)
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None
    assert [(a.action_id, a.status, a.target) for a in p.actions] == [
        ("a1", "executed", ATTACKER),
        ("r2.a1", "rejected", None),
    ]  # a ticket is not containment
    assert p.controller == {"approve": 1, "approved": 1, "executed": 1, "execute": 1, "rejected": 1}
    assert len(p.actions[0].seqs) == 3


@pytest.mark.parametrize(
    "damage",
    [{"observed_at": "yesterday"}, {"url": 1}, {"url": ["/a", "/b"]}],
    ids=["time", "url-number", "url-list"],  # a url not text failed every fold from there on (AttributeError)
)
def test_an_unreadable_alert_record_is_skipped_and_the_rest_still_folds(
    ledger: Ledger, settings: Settings, damage: dict[str, Any]
) -> None:
    good = alert(1).model_dump(mode="json")
    ledger.append(f"src:{ATTACKER}", RecordKind.ALERT, "ingest", {**good, "id": "bad", **damage})
    submit(ledger, [alert(2)])
    report = track(ledger, settings)
    assert (report.skipped, report.alerts) == (1, 1)
    p = AttackerStore(ledger).get(ATTACKER)
    assert p is not None and p.alerts == 1


def test_concurrent_folds_count_every_alert_once(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, [alert(i, src_ip=f"192.0.2.{i % 7}") for i in range(60)])
    errors: list[BaseException] = []

    def fold() -> None:
        try:
            track(ledger, settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(p.alerts for p in AttackerStore(ledger).profiles(limit=10)) == 60
