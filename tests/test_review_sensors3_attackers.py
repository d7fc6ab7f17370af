"""Attacker profiles, third review: an IDS alert that did not see its answer is paired with the access log's record of
the same request (controller/attackers/exchange.py), and eviction orders by the stage reached on connected evidence.

Real lab records (tests/data: the lab's Suricata EVE and nginx access log) through real ingest, folded by the real
store into a real ledger (SQLite and PostgreSQL); where a scenario needs another outcome, a real record is copied
with the fields its sensor would have written changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from autonomy_controller.controller.attackers import AttackerProfile, AttackerStore, Limits, track, tracking_config
from autonomy_controller.controller.attackers.fold import UNCONNECTED
from autonomy_controller.controller.attackers.impact import assess
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.models import Category, Provenance
from tests.harness import alert
from tests.test_attackers import ATTACKER, lines, parsed, submit
from tests.test_ledger import ledger_url  # noqa: F401  (the both-backends fixture)
from tests.test_review_sensors2_attackers import forged_c2_query

SQLI_URL = "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger.from_url(ledger_url) as led:
        yield led


def unanswered_sqli() -> dict[str, Any]:
    """The lab's SQLi alert as Suricata logs it before the answer: no http.status (client port 41582)."""
    record = lines("suricata7-lab-eve.jsonl")[0]
    del record["http"]["status"], record["http"]["length"]
    return record


def record_of(ids: dict[str, Any], status: int, proxied: bool, request_id: str, **changes: Any) -> dict[str, Any]:
    """nginx's record of the request `ids` alerted on: the same client port, server and target; `status` from the
    WAF (not proxied) or the application."""
    line = lines("nginx-access.jsonl")[0]
    line.update(request_id=request_id, remote_port=str(ids["src_port"]), request_uri=ids["http"]["url"], status=status)
    if proxied:
        line.update(upstream_addr="127.0.0.1:8081", upstream_status=str(status))
    line.update(changes)
    return line


def plain_200(uri: str, request_id: str, port: int = 41700) -> dict[str, Any]:
    """Another request of the attacker's, on another connection, that the application answered 200."""
    line = lines("nginx-access.jsonl")[0]
    line.update(request_id=request_id, remote_port=str(port), request_uri=uri, status=200, body_bytes_sent=612)
    line.update(upstream_addr="127.0.0.1:8081", upstream_status="200")
    return line


def folded(ledger: Ledger, settings: Settings, address: str = ATTACKER) -> AttackerProfile:
    track(ledger, settings)
    profile = AttackerStore(ledger).get(address)
    assert profile is not None
    return profile


# -- one request, two sensors ---------------------------------------------------------------------------------


def test_the_wafs_refusal_logged_before_the_alert_is_the_alerts_outcome(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    """The access log's record folded first (the follower read that file first): the alert takes it when it comes."""
    ids = unanswered_sqli()
    submit(ledger, parsed([record_of(ids, 403, False, "a" * 32)], tmp_path))
    track(ledger, settings)
    submit(ledger, parsed([ids], tmp_path))
    submit(ledger, parsed([plain_200("/", "b" * 32)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "exploitation_attempt"
    assert (p.paths["/"].attacks_refused, p.paths["/"].attacks_through, p.paths["/"].app_success) == (1, 0, 1)


def test_a_success_shown_before_the_refusal_came_is_withdrawn(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    """The attacker's plain 200 on the path came first, then the alert (its answer unknown: counted as not refused,
    so the path's two halves made possible_success), then, in a later fold, the WAF's 403 for that very request."""
    ids = unanswered_sqli()
    submit(ledger, parsed([plain_200("/", "c" * 32), ids], tmp_path))
    assert folded(ledger, settings).stage == "possible_success"
    submit(ledger, parsed([record_of(ids, 403, False, "d" * 32)], tmp_path))
    p = folded(ledger, settings)
    assert [s.stage for s in p.stages] == ["exploitation_attempt"]
    assert (p.paths["/"].attacks_refused, p.paths["/"].attacks_through) == (1, 0)
    assert p.unanswered == []


def test_a_withdrawn_success_leaves_another_paths_standing(ledger: Ledger, settings: Settings, tmp_path: Path) -> None:
    eve = lines("suricata7-lab-eve.jsonl")
    ids = unanswered_sqli()
    other = copy.deepcopy(eve[2])
    other["http"]["url"] = "/legacy/download?file=../../../../etc/passwd"
    del other["http"]["status"], other["http"]["length"]  # no record of it ever comes
    submit(ledger, parsed([plain_200("/", "e" * 32), ids], tmp_path))  # possible_success on "/" first
    submit(ledger, parsed([other, plain_200(other["http"]["url"], "f" * 32, port=41800)], tmp_path))
    submit(ledger, parsed([record_of(ids, 403, False, "1" * 32)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "possible_success" and p.stages[-1].path == "/legacy/download"


@pytest.mark.parametrize("alert_first", [True, False])
def test_the_applications_2xx_to_the_alerted_request_is_possible_success(
    ledger: Ledger, settings: Settings, tmp_path: Path, alert_first: bool
) -> None:
    ids = unanswered_sqli()
    answered = record_of(ids, 200, True, "2" * 32, body_bytes_sent=4321)
    submit(ledger, parsed([ids, answered] if alert_first else [answered, ids], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "possible_success" and p.paths["/"].attacks_through == 1
    assert p.outcomes.bytes_sent == 4321


@pytest.mark.parametrize(
    "changes",
    [
        {"remote_port": "41583"},  # another connection
        {"server_port": "8443"},  # another server
        {"request_uri": "/?id=2"},  # another request on the connection
        {"time": "2026-12-06T02:53:10+00:00"},  # the client's port again, past the window
    ],
)
def test_another_requests_refusal_does_not_settle_the_alert(
    ledger: Ledger, settings: Settings, tmp_path: Path, changes: dict[str, str]
) -> None:
    """Only the record of the same request settles an alert: another's 403 leaves it counted as not refused, so the
    application's 200 on its path is still possible_success."""
    ids = unanswered_sqli()
    submit(ledger, parsed([ids, record_of(ids, 403, False, "3" * 32, **changes)], tmp_path))
    submit(ledger, parsed([plain_200("/", "4" * 32)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "possible_success" and p.paths["/"].attacks_through == 1


def test_a_record_the_application_answered_with_an_error_refuses_the_alert(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    ids = unanswered_sqli()
    submit(ledger, parsed([ids, record_of(ids, 500, True, "5" * 32), plain_200("/", "6" * 32)], tmp_path))
    p = folded(ledger, settings)
    assert p.stage == "exploitation_attempt" and p.paths["/"].attacks_refused == 1


def test_pairing_memory_is_bounded(ledger: Ledger, settings: Settings, tmp_path: Path) -> None:
    limits = Limits()
    ids = unanswered_sqli()
    alerts = []
    for n in range(limits.pairing + 5):
        record = copy.deepcopy(ids)
        record.update(flow_id=ids["flow_id"] + n, src_port=42000 + n)
        record["flow"]["src_port"] = 42000 + n
        alerts.append(record)
    answers = [plain_200(f"/p{n}", f"{n:032x}", port=43000 + n) for n in range(limits.pairing + 5)]
    submit(ledger, parsed([*alerts, *answers], tmp_path))
    p = folded(ledger, settings)
    assert len(p.unanswered) == limits.pairing and len(p.answers) == limits.pairing


def test_the_impact_verdict_reads_the_alert_with_its_record(settings: Settings, tmp_path: Path) -> None:
    """A case's verdict folds the same way: the refused request and the plain 200 are `attempted`, in any order."""
    ids = unanswered_sqli()
    records = parsed([ids, record_of(ids, 403, False, "7" * 32), plain_200("/", "8" * 32)], tmp_path)
    config = tracking_config(settings)
    assert assess(records, config).verdict == "attempted"
    assert assess(list(reversed(records)), config).verdict == "attempted"
    answered = parsed([record_of(ids, 200, True, "9" * 32)], tmp_path)
    assert assess([records[0], *answered], config).verdict == "likely"


# -- eviction by connected evidence ---------------------------------------------------------------------------


def test_a_forged_stage_is_shown_and_said_but_orders_no_eviction(
    ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    submit(ledger, parsed([lines("suricata7-lab-eve.jsonl")[0]], tmp_path))  # connected SQLi
    forged = forged_c2_query(1)
    forged["src_ip"] = ATTACKER  # the same address, written into a UDP packet by anyone
    submit(ledger, parsed([forged], tmp_path))
    p = folded(ledger, settings)
    assert (p.stage, p.connected_stage) == ("post_exploitation", "exploitation_attempt")
    assert [(s.stage, s.connected) for s in p.stages] == [("exploitation_attempt", True), ("post_exploitation", False)]
    assert p.stages[-1].why.endswith(UNCONNECTED)
    forged_first = forged_c2_query(2)
    submit(ledger, parsed([forged_first], tmp_path))
    q = folded(ledger, settings, forged_first["src_ip"])
    assert (q.stage, q.connected_stage) == ("post_exploitation", "none")
    listed = [x.address for x in AttackerStore(ledger).profiles(limit=10)]
    assert set(listed[:2]) == {ATTACKER, q.address}  # listed by the stage shown


def test_a_connected_stage_reached_after_a_forged_higher_one_is_kept(ledger: Ledger, settings: Settings) -> None:
    """Stages only go up on each kind of evidence: a forged C2 first does not hide the connected SQLi after it."""
    submit(ledger, [alert(1, category=Category.C2, src_connected=False), alert(2, category=Category.SQLI)])
    p = folded(ledger, settings)
    assert [s.stage for s in p.stages] == ["post_exploitation", "exploitation_attempt"]
    assert (p.stage, p.connected_stage) == ("post_exploitation", "exploitation_attempt")


def test_a_trusted_feed_vouches_for_its_source(ledger: Ledger, settings: Settings) -> None:
    submit(ledger, [alert(1, category=Category.C2, src_connected=False, provenance=Provenance.TRUSTED_FEED)])
    submit(ledger, [alert(2, src_ip=f"192.0.2.{n}", category=Category.SQLI) for n in range(3)])
    track(ledger, settings, Limits(max_profiles=3))
    kept = {p.address for p in AttackerStore(ledger).profiles(limit=10, min_stage=0)}
    assert ATTACKER in kept and len(kept) == 3


def test_connected_attackers_evict_by_their_own_stage_then_age(ledger: Ledger, settings: Settings) -> None:
    at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    submit(ledger, [alert(1, src_ip="192.0.2.1", category=Category.SQLI, observed_at=at)])  # oldest, attack
    submit(ledger, [alert(2, src_ip="192.0.2.2", category=Category.SCANNER, observed_at=at + timedelta(hours=1))])
    submit(ledger, [alert(3, src_ip="192.0.2.3", category=Category.C2, src_connected=False, observed_at=at)])
    submit(ledger, [alert(4, src_ip="192.0.2.4", category=Category.SCANNER, observed_at=at + timedelta(hours=2))])
    track(ledger, settings, Limits(max_profiles=2))
    kept = {p.address for p in AttackerStore(ledger).profiles(limit=10, min_stage=0)}
    assert kept == {"192.0.2.1", "192.0.2.4"}


def test_attacker_tables_of_an_older_version_are_rebuilt_from_the_ledger(ledger_url: str, settings: Settings) -> None:  # noqa: F811
    """A ledger whose attacker_profile has no connected_rank (folded by the previous version) is refolded from the
    ledger when opened: every profile comes back with the column, the ledger's records untouched."""
    with Ledger.from_url(ledger_url) as led:
        submit(led, [alert(1, category=Category.SQLI), alert(2, src_ip="192.0.2.9", category=Category.SCANNER)])
        track(led, settings)
        head = led.head()
        with led.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_attacker_profile_evict"))
            conn.execute(text("ALTER TABLE attacker_profile DROP COLUMN connected_rank"))
            conn.execute(text("CREATE INDEX ix_attacker_profile_eviction ON attacker_profile (stage_rank, address)"))
    with Ledger.from_url(ledger_url) as led:
        with led.engine.connect() as conn:
            assert "connected_rank" in {c["name"] for c in inspect(conn).get_columns("attacker_profile")}
        store = AttackerStore(led)
        assert store.status().through == 0 and store.get(ATTACKER) is None
        report = track(led, settings)
        assert report.records == head.seq and report.profiles_created == 2
        assert store.get(ATTACKER).connected_stage == "exploitation_attempt"  # type: ignore[union-attr]
        assert led.head() == head
