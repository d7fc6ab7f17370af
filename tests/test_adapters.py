"""Adapters against real things: a ticket directory, a local HTTP receiver, and a SQLite audit ledger.

The contract under test is the one in actions/adapters/base.py: at most one effect per idempotency key,
ALREADY_DONE on a repeat, transient vs permanent errors told apart, and verify reading the effect back.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from autonomy_controller.actions.adapters import build_adapters
from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
)
from autonomy_controller.actions.adapters.investigate import (
    HostActivityAdapter,
    IpReputationAdapter,
    RelatedAlertsAdapter,
    bundle_inventory,
)
from autonomy_controller.actions.adapters.ticket import TicketAdapter, list_tickets, ticket_path
from autonomy_controller.actions.adapters.webhook import ChannelsConfigError, WebhookAdapter
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, Category, Severity
from autonomy_controller.workflows.activities import _adapter_request
from autonomy_controller.workflows.contracts import ExecuteRequest

# -- helpers -----------------------------------------------------------------------------------------------


def request(
    action: str, params: dict[str, Any], key: str = "wf-1/run-1/a1/execute", incident: str = "inc-1"
) -> ActionRequest:
    return ActionRequest(incident_key=incident, action_id="a1", action=action, params=params, idempotency_key=key)


def ticket_request(key: str = "wf-1/run-1/a1/execute", title: str = "SQLi from 198.51.100.66") -> ActionRequest:
    return request("ticket.create", {"title": title, "severity": "high", "body": "details"}, key)


def webhook_request(key: str = "wf-1/run-1/n1/execute", channel: str = "soc-alerts") -> ActionRequest:
    return request("notify.webhook", {"channel": channel, "message": "blocked 198.51.100.66"}, key)


def dir_entries(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- the request: what an undo undoes -----------------------------------------------------------------------


def test_a_request_without_purpose_is_an_execution_so_existing_callers_stay_valid() -> None:
    """Requests built (or stored) before `purpose` and `undoes` existed validate as what they were: executions."""
    old = {"incident_key": "inc-1", "action_id": "a1", "action": "ticket.create", "params": {}, "idempotency_key": "k"}

    parsed = ActionRequest.model_validate(old)

    assert (parsed.purpose, parsed.undoes, parsed.is_undo) == ("execute", None, False)
    assert request("ticket.create", {}) == parsed.model_copy(update={"idempotency_key": "wf-1/run-1/a1/execute"})


def test_an_undo_must_name_what_it_undoes_and_an_execution_must_not() -> None:
    base = {"incident_key": "inc-1", "action_id": "a1", "action": "network.unblock_ip", "params": {}}
    revert = ActionRequest(**base, idempotency_key="wf/run/a1/revert", purpose="revert", undoes="wf/run/a1/execute")
    assert revert.is_undo and revert.undoes == "wf/run/a1/execute"

    for purpose in ("revert", "compensate"):
        with pytest.raises(ValidationError, match=f"a {purpose} request must name the execution it undoes"):
            ActionRequest(**base, idempotency_key=f"wf/run/a1/{purpose}", purpose=purpose)
    with pytest.raises(ValidationError, match="an execute request undoes nothing"):
        ActionRequest(**base, idempotency_key="wf/run/a1/execute", undoes="wf/run/a1/execute")
    with pytest.raises(ValidationError, match="purpose"):
        ActionRequest(**base, idempotency_key="wf/run/a1/undo", purpose="undo", undoes="wf/run/a1/execute")
    with pytest.raises(ValidationError, match="frozen"):
        revert.undoes = None  # type: ignore[misc]


@pytest.mark.parametrize(
    ("purpose", "undoes"),
    [("execute", None), ("compensate", "wf-1/run-1/a1/execute"), ("revert", "wf-1/run-1/a1/execute")],
)
def test_the_activity_hands_adapters_the_purpose_and_the_execution_it_undoes(purpose: str, undoes: str | None) -> None:
    """workflows/activities.py builds the adapter's request: the key keeps its `<workflow>/<run>/<action>/<purpose>`
    format (the ledger's record key too), and purpose and undoes say explicitly what an undo reverses."""
    execution = ExecuteRequest.model_validate(
        {
            "incident_key": "inc-1",
            "action_id": "a1",
            "action": "network.unblock_ip",
            "params": {"ip": "198.51.100.66"},
            "idempotency_key": "wf-1/run-1/a1",
            "purpose": purpose,
        }
    )

    built = _adapter_request(execution)

    assert (built.idempotency_key, built.purpose, built.undoes) == (f"wf-1/run-1/a1/{purpose}", purpose, undoes)
    assert built.params == {"ip": "198.51.100.66"} and built.action == "network.unblock_ip"


def test_an_execution_request_recorded_before_purpose_existed_builds_an_execution() -> None:
    """Activity inputs in old workflow histories may lack `purpose`: they were executions, and still are."""
    recorded = {
        "incident_key": "inc-1",
        "action_id": "a1",
        "action": "ticket.create",
        "params": {},
        "idempotency_key": "w/r/a1",
    }

    built = _adapter_request(ExecuteRequest.model_validate(recorded))

    assert (built.idempotency_key, built.purpose, built.undoes) == ("w/r/a1/execute", "execute", None)


def test_local_adapters_take_an_undo_request_like_any_other(tickets: TicketAdapter) -> None:
    """purpose and undoes are for adapters whose effects can have several owners; the rest ignore them."""
    undo = ticket_request("wf-1/run-1/a1/compensate").model_copy(
        update={"purpose": "compensate", "undoes": "wf-1/run-1/a1/execute"}
    )

    outcome = tickets.execute(undo)

    assert outcome.status is ActionStatus.DONE and tickets.verify(undo, outcome).ok


# -- ticket.create -----------------------------------------------------------------------------------------


@pytest.fixture
def tickets(tmp_path: Path) -> TicketAdapter:
    return TicketAdapter(tmp_path / "tickets")


def test_ticket_is_created_with_its_fields(tickets: TicketAdapter) -> None:
    req = ticket_request()
    outcome = tickets.execute(req)

    assert outcome.status is ActionStatus.DONE
    assert outcome.reference is not None and outcome.reference.startswith("TKT-")
    assert len(outcome.reference) == len("TKT-") + 12
    [ticket] = list_tickets(tickets.tickets_dir)
    assert ticket["id"] == outcome.reference
    assert {k: ticket[k] for k in ("incident_key", "action_id", "idempotency_key", "title", "severity", "body")} == {
        "incident_key": "inc-1",
        "action_id": "a1",
        "idempotency_key": req.idempotency_key,
        "title": "SQLi from 198.51.100.66",
        "severity": "high",
        "body": "details",
    }
    assert ticket["status"] == "open"
    created = datetime.fromisoformat(ticket["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert outcome.evidence["path"] == str(ticket_path(tickets.tickets_dir, req.idempotency_key))


def test_same_key_twice_gives_one_ticket_and_already_done(tickets: TicketAdapter) -> None:
    first = tickets.execute(ticket_request())
    second = tickets.execute(ticket_request(title="a retry recomputed the title"))

    assert (first.status, second.status) == (ActionStatus.DONE, ActionStatus.ALREADY_DONE)
    assert second.reference == first.reference
    [ticket] = list_tickets(tickets.tickets_dir)
    assert ticket["title"] == "SQLi from 198.51.100.66", "the first write wins; a retry never overwrites"

    other = tickets.execute(ticket_request(key="wf-1/run-1/a2/execute"))
    assert other.status is ActionStatus.DONE and other.reference != first.reference
    assert len(list_tickets(tickets.tickets_dir)) == 2


def run_concurrently(threads: int, work: Callable[[], ActionOutcome]) -> list[ActionOutcome]:
    """Start `threads` calls of `work` at the same instant; re-raise the first error any of them hit."""
    barrier = threading.Barrier(threads)

    def call() -> ActionOutcome:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(call) for _ in range(threads)]
        return [f.result(timeout=30) for f in futures]


@pytest.mark.parametrize("lockstep", [False, True])
def test_concurrent_executions_with_one_key_create_exactly_one_ticket(
    tickets: TicketAdapter, monkeypatch: pytest.MonkeyPatch, lockstep: bool
) -> None:
    """8 executions with one key; in lockstep, all 8 finish their temp file before any publishes (the worst
    interleaving for a check-then-rename, which would let several "win" and overwrite each other)."""
    if lockstep:
        real_fsync, gate, calls = os.fsync, threading.Barrier(8), itertools.count()

        def fsync_in_lockstep(fd: int) -> None:
            real_fsync(fd)
            if next(calls) < 8:  # the 8 temp-file fsyncs; the winner's directory fsync passes
                gate.wait(timeout=10)

        monkeypatch.setattr(os, "fsync", fsync_in_lockstep)
    outcomes = run_concurrently(8, lambda: tickets.execute(ticket_request()))

    statuses = sorted(o.status.value for o in outcomes)
    assert statuses == ["already_done"] * 7 + ["done"]
    assert len({o.reference for o in outcomes}) == 1
    [ticket] = list_tickets(tickets.tickets_dir)
    assert ticket["id"] == outcomes[0].reference
    assert [n for n in dir_entries(tickets.tickets_dir) if not n.endswith(".json")] == [], "no temp files left"


def test_ticket_write_leaves_no_temp_files_and_no_torn_ticket(
    tickets: TicketAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = ticket_request()
    tickets.execute(req)
    tickets.execute(req)
    assert dir_entries(tickets.tickets_dir) == [ticket_path(tickets.tickets_dir, req.idempotency_key).name]

    def no_hard_links(*_args: object) -> None:
        raise OSError(95, "Operation not supported")

    monkeypatch.setattr(os, "link", no_hard_links)
    with pytest.raises(AdapterError, match="atomically"):
        tickets.execute(ticket_request(key="wf-2/run-1/a1/execute"))
    assert dir_entries(tickets.tickets_dir) == [ticket_path(tickets.tickets_dir, req.idempotency_key).name]


def test_verify_reads_the_ticket_back(tickets: TicketAdapter) -> None:
    req = ticket_request()
    outcome = tickets.execute(req)
    assert tickets.verify(req, outcome).ok

    path = ticket_path(tickets.tickets_dir, req.idempotency_key)
    edited = json.loads(path.read_text())
    edited["idempotency_key"] = "someone-else"
    path.write_text(json.dumps(edited))
    result = tickets.verify(req, outcome)
    assert not result.ok and "another idempotency key" in result.detail

    path.write_text("{not json")
    assert not tickets.verify(req, outcome).ok

    path.unlink()
    result = tickets.verify(req, outcome)
    assert not result.ok and "no ticket file" in result.detail


def test_verify_fails_when_the_id_differs_from_the_reported_one(tickets: TicketAdapter) -> None:
    req = ticket_request()
    outcome = tickets.execute(req)
    wrong = outcome.model_copy(update={"reference": "TKT-000000000000"})
    assert not tickets.verify(req, wrong).ok


def test_ticket_refuses_bad_params_and_foreign_actions(tickets: TicketAdapter) -> None:
    with pytest.raises(AdapterError, match="title"):
        tickets.execute(request("ticket.create", {"title": "", "severity": "high"}))
    with pytest.raises(AdapterError, match=r"handed a notify\.webhook"):
        tickets.execute(webhook_request())
    assert not tickets.tickets_dir.exists() or dir_entries(tickets.tickets_dir) == []


def test_a_file_from_another_key_is_never_taken_over(tickets: TicketAdapter) -> None:
    req = ticket_request()
    tickets.tickets_dir.mkdir(parents=True)
    path = ticket_path(tickets.tickets_dir, req.idempotency_key)
    path.write_text(json.dumps({"id": "TKT-x", "idempotency_key": "another"}))
    with pytest.raises(AdapterError, match="does not belong"):
        tickets.execute(req)
    assert json.loads(path.read_text())["idempotency_key"] == "another"


def test_list_tickets_is_empty_for_a_missing_queue_and_names_a_corrupt_file(tmp_path: Path) -> None:
    assert list_tickets(tmp_path / "nowhere") == []
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(AdapterError, match=r"bad\.json"):
        list_tickets(tmp_path)


# -- notify.webhook ----------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records POSTs and answers with queued statuses (default 200)."""

    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook(tmp_path: Path, receiver: tuple[Receiver, str]) -> WebhookAdapter:
    _, url = receiver
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f"channels:\n"
        f"  soc-alerts: {{url: '{url}/hook/SECRET-TOKEN-123', timeout_seconds: 5}}\n"
        f"  slow: {{url: '{url}/slow', timeout_seconds: 0.3}}\n"
    )
    return WebhookAdapter(channels, tmp_path / "journal")


def test_webhook_posts_once_with_idempotency_header(webhook: WebhookAdapter, receiver: tuple[Receiver, str]) -> None:
    state, _ = receiver
    req = webhook_request()
    outcome = webhook.execute(req)

    assert outcome.status is ActionStatus.DONE
    assert outcome.reference == "HTTP 200"
    [seen] = state.requests
    assert seen.path == "/hook/SECRET-TOKEN-123"
    assert seen.headers["Idempotency-Key"] == req.idempotency_key
    assert seen.headers["Content-Type"] == "application/json"
    assert {k: seen.body[k] for k in ("incident_key", "action_id", "channel", "message", "idempotency_key")} == {
        "incident_key": "inc-1",
        "action_id": "a1",
        "channel": "soc-alerts",
        "message": "blocked 198.51.100.66",
        "idempotency_key": req.idempotency_key,
    }
    assert datetime.fromisoformat(seen.body["sent_at"]).utcoffset() == timedelta(0)
    assert webhook.verify(req, outcome).ok
    assert "SECRET-TOKEN-123" not in outcome.model_dump_json(), "the channel URL's secret must not reach the ledger"


def test_webhook_second_call_is_already_done_without_posting(
    webhook: WebhookAdapter, receiver: tuple[Receiver, str]
) -> None:
    state, _ = receiver
    first = webhook.execute(webhook_request())
    second = webhook.execute(webhook_request())

    assert (first.status, second.status) == (ActionStatus.DONE, ActionStatus.ALREADY_DONE)
    assert second.reference == "HTTP 200"
    assert len(state.requests) == 1

    webhook.execute(webhook_request(key="wf-1/run-1/n2/execute"))
    assert len(state.requests) == 2, "another key is another message"

    webhook.channels_file.unlink()  # config gone later: a delivered message is still delivered
    assert webhook.execute(webhook_request()).status is ActionStatus.ALREADY_DONE


def test_webhook_reposts_after_a_crash_mid_send(webhook: WebhookAdapter, receiver: tuple[Receiver, str]) -> None:
    state, _ = receiver
    req = webhook_request()
    assert webhook.journal.begin(req.idempotency_key, "soc-alerts")  # the worker died after this, before 2xx

    outcome = webhook.execute(req)

    assert outcome.status is ActionStatus.DONE
    assert "posted again" in outcome.detail and outcome.evidence["resent"] is True
    assert [r.headers["Idempotency-Key"] for r in state.requests] == [req.idempotency_key]
    assert webhook.verify(req, outcome).ok


@pytest.mark.parametrize("status", [500, 503, 429])
def test_webhook_server_errors_are_transient_and_a_retry_delivers(
    webhook: WebhookAdapter, receiver: tuple[Receiver, str], status: int
) -> None:
    state, _ = receiver
    state.statuses.append(status)
    req = webhook_request()
    with pytest.raises(TransientAdapterError, match=f"HTTP {status}"):
        webhook.execute(req)
    assert not webhook.verify(req, ActionOutcome(status=ActionStatus.FAILED, detail="")).ok

    retry = webhook.execute(req)
    assert retry.status is ActionStatus.DONE
    assert retry.evidence["resent"] is False, "a refused POST delivered nothing, so the retry is not a re-send"
    assert len(state.requests) == 2


def test_webhook_client_error_is_permanent(webhook: WebhookAdapter, receiver: tuple[Receiver, str]) -> None:
    state, _ = receiver
    state.statuses.append(404)
    req = webhook_request()
    with pytest.raises(AdapterError, match="HTTP 404") as caught:
        webhook.execute(req)
    assert not isinstance(caught.value, TransientAdapterError)
    assert "SECRET-TOKEN-123" not in str(caught.value)
    assert not webhook.verify(req, ActionOutcome(status=ActionStatus.FAILED, detail="")).ok


def test_webhook_timeout_is_transient_and_the_retry_says_it_reposted(
    webhook: WebhookAdapter, receiver: tuple[Receiver, str]
) -> None:
    state, _ = receiver
    state.delay = 1.5
    req = webhook_request(channel="slow")
    started = time.monotonic()
    with pytest.raises(TransientAdapterError, match="did not answer"):
        webhook.execute(req)
    assert time.monotonic() - started < 1.4

    state.delay = 0.0
    retry = webhook.execute(req)
    assert retry.status is ActionStatus.DONE
    assert retry.evidence["resent"] is True, "the timed-out POST may have arrived: the retry must say so"
    assert len(state.requests) == 2


def test_webhook_connection_refused_is_transient(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  soc-alerts: {{url: 'http://127.0.0.1:{port}/hook'}}\n")
    adapter = WebhookAdapter(channels, tmp_path / "journal")
    with pytest.raises(TransientAdapterError, match="cannot connect"):
        adapter.execute(webhook_request())
    assert dir_entries(tmp_path / "journal") == [], "nothing reached the receiver: no marker is kept"


def test_webhook_unknown_channel_names_it_and_the_file(webhook: WebhookAdapter) -> None:
    with pytest.raises(AdapterError, match="unknown channel 'ops-pager'") as caught:
        webhook.execute(webhook_request(channel="ops-pager"))
    assert str(webhook.channels_file) in str(caught.value)
    assert not isinstance(caught.value, TransientAdapterError)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("channels:\n  soc-alerts: {url: 'not a url'}\n", "channels.soc-alerts.url"),
        ("channels:\n  soc-alerts: {url: 'http://127.0.0.1:1/h', timout_seconds: 5}\n", "timout_seconds"),
        ("channels:\n  soc-alerts: {url: 'http://127.0.0.1:1/h', timeout_seconds: -1}\n", "timeout_seconds"),
        ("channels:\n  Bad Name: {url: 'http://127.0.0.1:1/h'}\n", "Bad Name"),
        ("chanels: {}\n", "chanels"),
        ("channels: [\n", "not valid YAML"),
    ],
)
def test_malformed_channels_file_names_file_and_key(tmp_path: Path, text: str, names: str) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(text)
    adapter = WebhookAdapter(channels, tmp_path / "journal")
    with pytest.raises(ChannelsConfigError) as caught:
        adapter.execute(webhook_request())
    assert str(channels) in str(caught.value)
    assert names in str(caught.value)


def test_missing_channels_file_is_a_clear_permanent_error(tmp_path: Path) -> None:
    adapter = WebhookAdapter(tmp_path / "absent.yaml", tmp_path / "journal")
    with pytest.raises(ChannelsConfigError, match=r"absent\.yaml not found"):
        adapter.execute(webhook_request())


# -- investigate.* -----------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def alert_payload(
    n: int,
    src_ip: str | None,
    *,
    category: Category = Category.SQLI,
    dst_ip: str | None = None,
    asset: str | None = None,
    at: datetime = T0,
) -> tuple[dict[str, Any], str]:
    alert = Alert(
        id=f"a-{n}",
        source="native",
        observed_at=at,
        category=category,
        severity=Severity.HIGH,
        confidence=0.9,
        src_ip=src_ip,
        dst_ip=dst_ip,
        asset=asset,
        raw={"line": "GET /?id=1' OR 1=1"},
    )
    payload = alert.model_dump(mode="json")
    payload.pop("raw")  # as ingest stores it
    return payload, f"alert:{n}"


def execution_payload(action: str, params: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "request": {"incident_key": "x", "action_id": "b1", "action": action, "params": params},
        "outcome": {"status": status, "detail": "", "reference": None, "evidence": {}},
    }


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'l.db'}") as db:
        sqli66, xss66, sqli9, lateral = "sqli:198.51.100.66", "xss:198.51.100.66", "sqli:203.0.113.9", "lat:10.0.0.5"
        db.append_many(
            sqli66,
            RecordKind.ALERT,
            "ingest",
            [
                alert_payload(i, "198.51.100.66", dst_ip="10.0.0.5", asset="shop-web", at=T0 + timedelta(hours=i))
                for i in range(3)
            ],
        )
        db.append_many(
            xss66,
            RecordKind.ALERT,
            "ingest",
            [alert_payload(10, "198.51.100.66", category=Category.XSS, dst_ip="10.0.0.6", at=T0 - timedelta(days=1))],
        )
        db.append_many(
            sqli9,
            RecordKind.ALERT,
            "ingest",
            [alert_payload(20 + i, "203.0.113.9", dst_ip="10.0.0.5", asset="SHOP-WEB") for i in range(2)],
        )
        db.append_many(
            lateral,
            RecordKind.ALERT,
            "ingest",
            [alert_payload(30, "10.0.0.5", category=Category.LATERAL_MOVEMENT, dst_ip="10.0.0.9")],
        )
        # records that mention the address but are not alerts/executions must not count
        db.append(sqli66, RecordKind.PLAN, "planner:offline", {"src_ip": "198.51.100.66", "dst_ip": "10.0.0.5"})
        db.append(
            sqli66, RecordKind.EXECUTION, "svc", execution_payload("network.block_ip", {"ip": "198.51.100.66"}, "done")
        )
        db.append(
            xss66,
            RecordKind.EXECUTION,
            "svc",
            execution_payload("network.block_ip", {"ip": "198.51.100.0/24"}, "failed"),
        )
        db.append(
            sqli9, RecordKind.EXECUTION, "svc", execution_payload("network.block_ip", {"ip": "203.0.113.9"}, "done")
        )
        db.append(sqli66, RecordKind.EXECUTION, "svc", execution_payload("ticket.create", {"title": "t"}, "done"))
        db.append(
            sqli66,
            RecordKind.REVERT,
            "svc",
            execution_payload("network.unblock_ip", {"ip": "198.51.100.66"}, "already_done"),
        )
        yield db


def test_related_alerts_counts_alerts_from_the_source_across_incidents(ledger: Ledger) -> None:
    adapter = RelatedAlertsAdapter(ledger)
    req = request("investigate.related_alerts", {"ip": "198.51.100.66"}, incident="sqli:198.51.100.66")
    outcome = adapter.execute(req)

    ev = outcome.evidence
    assert outcome.status is ActionStatus.DONE
    assert ev["alert_count"] == 4
    assert ev["incident_count"] == 2
    assert set(ev["incident_keys"]) == {"sqli:198.51.100.66", "xss:198.51.100.66"}
    assert ev["other_incident_count"] == 1
    assert ev["categories"] == {"sqli": 3, "xss": 1}
    assert datetime.fromisoformat(ev["first_seen"]) == T0 - timedelta(days=1)
    assert datetime.fromisoformat(ev["last_seen"]) == T0 + timedelta(hours=2)
    assert ev["coverage"]["truncated"] is False
    assert adapter.verify(req, outcome).ok


def test_related_alerts_by_network_and_for_an_unknown_address(ledger: Ledger) -> None:
    adapter = RelatedAlertsAdapter(ledger)
    by_net = adapter.execute(request("investigate.related_alerts", {"ip": "198.51.100.0/24"})).evidence
    assert by_net["alert_count"] == 4

    nothing = adapter.execute(request("investigate.related_alerts", {"ip": "192.0.2.1"}))
    assert nothing.evidence["alert_count"] == 0
    assert nothing.evidence["first_seen"] is None
    assert nothing.reference == "0 alerts / 0 incidents"


def test_ip_reputation_reports_appearances_and_actions_taken(ledger: Ledger) -> None:
    adapter = IpReputationAdapter(ledger)
    outcome = adapter.execute(request("investigate.ip_reputation", {"ip": "198.51.100.66"}))

    ev = outcome.evidence
    assert ev["source_alert_count"] == 4 and ev["source_incident_count"] == 2
    assert ev["destination_alert_count"] == 0
    assert ev["action_count"] == 3, "block of the address, block of its /24, and the revert"
    assert ev["effective_action_count"] == 2
    assert sorted((a["action"], a["status"]) for a in ev["actions"]) == [
        ("network.block_ip", "done"),
        ("network.block_ip", "failed"),
        ("network.unblock_ip", "already_done"),
    ]
    assert {a["kind"] for a in ev["actions"]} == {"execution", "revert"}

    internal = adapter.execute(request("investigate.ip_reputation", {"ip": "10.0.0.5"})).evidence
    assert internal["source_alert_count"] == 1
    assert internal["destination_alert_count"] == 5
    assert internal["destination_incident_count"] == 2
    assert internal["action_count"] == 0


def test_host_activity_matches_asset_names_and_destination_addresses(ledger: Ledger) -> None:
    """shop-web and 10.0.0.5 are not in the inventory: they match by their own name or address only."""
    adapter = HostActivityAdapter(ledger, bundle_inventory(Settings()))
    by_name = adapter.execute(request("investigate.host_activity", {"host": "shop-web"})).evidence
    assert by_name["alert_count"] == 5
    assert by_name["matched_by_asset"] == 5 and by_name["matched_by_dst_ip"] == 0
    assert by_name["top_sources"] == {"198.51.100.66": 3, "203.0.113.9": 2}
    assert by_name["incident_count"] == 2

    by_ip = adapter.execute(request("investigate.host_activity", {"host": "10.0.0.5"})).evidence
    assert by_ip["alert_count"] == 5
    assert by_ip["matched_by_dst_ip"] == 5 and by_ip["matched_by_asset"] == 0

    unknown = adapter.execute(request("investigate.host_activity", {"host": "db-01"})).evidence
    assert unknown["alert_count"] == 0


def test_investigation_scan_is_capped_and_says_so(ledger: Ledger) -> None:
    adapter = RelatedAlertsAdapter(ledger, scan_limit=3)
    outcome = adapter.execute(request("investigate.related_alerts", {"ip": "198.51.100.66"}))
    ev = outcome.evidence
    assert ev["coverage"]["records_read"] == 3 and ev["coverage"]["truncated"] is True
    assert ev["alert_count"] == 0, "the three newest alerts are from other sources"
    assert "only the newest 3 records" in outcome.detail


def test_investigation_refuses_invalid_params(ledger: Ledger) -> None:
    with pytest.raises(AdapterError, match="ip"):
        RelatedAlertsAdapter(ledger).execute(request("investigate.related_alerts", {"ip": "not-an-ip"}))


def test_investigation_verify_fails_for_a_failed_lookup(ledger: Ledger) -> None:
    adapter = HostActivityAdapter(ledger, bundle_inventory(Settings()))
    req = request("investigate.host_activity", {"host": "shop-web"})
    assert not adapter.verify(req, ActionOutcome(status=ActionStatus.FAILED, detail="boom")).ok


# -- build_adapters ----------------------------------------------------------------------------------------


def test_build_adapters_maps_every_built_action_and_nothing_else(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTONOMY_TICKETS_DIR", raising=False)
    monkeypatch.delenv("AUTONOMY_CHANNELS_FILE", raising=False)
    settings = Settings(state_dir=tmp_path / "var")
    adapters = build_adapters(settings, ledger)

    assert set(adapters) == {
        "ticket.create",
        "notify.webhook",
        "investigate.related_alerts",
        "investigate.ip_reputation",
        "investigate.host_activity",
    }
    assert all(adapter.action == name for name, adapter in adapters.items())
    assert "network.block_ip" not in adapters

    outcome = adapters["ticket.create"].execute(ticket_request())
    assert outcome.status is ActionStatus.DONE
    assert [t["id"] for t in list_tickets(settings.tickets_dir)] == [outcome.reference]
