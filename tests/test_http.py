"""The HTTP service against a live server: uvicorn on a free port, a real Temporal dev server and worker.

One dev server, worker and service for the module (they start once); each test uses its own attacker
addresses, so incidents never mix between tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from temporalio import workflow
from temporalio.exceptions import ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ingest import read_dead_letters
from autonomy_controller.controller.ingest.lines import MAX_LINE_BYTES
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Alert, Level
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.outbox import CURSOR_FILE, Outbox
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from autonomy_controller.workflows.client import Submitter
from tests.harness import Loop, alert, running_loop

pytestmark = pytest.mark.asyncio(loop_scope="module")
LIMITS = ServiceConfig(
    max_body_bytes=MAX_LINE_BYTES + 1024 * 1024,  # room for one line over ingest's line limit
    max_decompressed_bytes=MAX_LINE_BYTES + 2 * 1024 * 1024,
    max_records=50,
    settle_seconds=0.2,
    quiet_seconds=0.3,
    submit_timeout_seconds=5,
    connect_timeout_seconds=1,
    outbox_max_delay_seconds=30,  # signals go when ingest is idle (a test of the delay sets its own)
)
EVE = REPO_ROOT / "tests" / "data" / "suricata7-lab-eve.jsonl"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def live(app: FastAPI, host: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    """Serve `app` with uvicorn on a free port of `host` (and so of 127.0.0.1); an HTTP client aimed at it."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


class Api:
    def __init__(self, http: httpx.AsyncClient, loop: Loop, tokens: dict[str, str], app: FastAPI) -> None:
        self.http, self.loop, self.tokens, self.app = http, loop, tokens, app

    async def post(self, body: bytes, token: str = "sender", **headers: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[token]}", **headers}
        return await self.http.post("/v1/alerts", content=body, headers=headers)

    async def get(self, path: str, token: str = "reader", **params: str) -> httpx.Response:
        return await self.http.get(path, params=params, headers={"Authorization": f"Bearer {self.tokens[token]}"})


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Api]:
    root = tmp_path_factory.mktemp("http")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    store = TokenStore(tokens_file(config.state_dir))
    tokens = {
        "sender": store.add("siem", [Scope.INGEST])[0],
        "reader": store.add("dashboard", [Scope.READ])[0],
        "revoked": store.add("old-siem", [Scope.INGEST])[0],
    }
    async with running_loop(config) as loop:
        app = create_app(config, LIMITS, loop.client.service_client.config.target_host)
        async with live(app) as http:
            yield Api(http, loop, tokens, app)


def lines(alerts: list[Alert]) -> bytes:
    return b"".join(a.model_dump_json().encode() + b"\n" for a in alerts)


def ledger_alerts(loop: Loop, key: str) -> int:
    return len(loop.ledger.records(key, [RecordKind.ALERT]))


async def metric(http: httpx.AsyncClient, name: str) -> float:
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


# -- auth -------------------------------------------------------------------------------------------------


async def test_a_request_without_a_valid_token_for_its_scope_is_refused(api: Api) -> None:
    body = lines([alert(1, "203.0.113.1")])
    missing = await api.http.post("/v1/alerts", content=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    unknown = await api.http.post("/v1/alerts", content=body, headers={"Authorization": "Bearer aut_nope"})
    assert unknown.status_code == 401
    assert (await api.post(body, token="reader")).status_code == 403  # read scope cannot ingest
    assert (await api.get("/v1/incidents", token="sender")).status_code == 403  # nor ingest read
    TokenStore(tokens_file(api.loop.settings.state_dir)).revoke("old-siem")
    revoked = await api.post(body, token="revoked")
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert ledger_alerts(api.loop, "src:203.0.113.1") == 0


# -- ingest -----------------------------------------------------------------------------------------------


async def test_ndjson_of_mixed_formats_keeps_good_records_and_dead_letters_each_bad_one_exactly(api: Api) -> None:
    good = [alert(i, "203.0.113.2") for i in range(3)]
    broken = b'{"id": "x", "source": '
    unknown = b'{"hello": "world"}'
    body = lines(good[:2]) + broken + b"\n\n" + EVE.read_bytes() + unknown + b"\n" + lines(good[2:])
    response = await api.post(body, **{"Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["records"], result["accepted"], result["duplicate"], result["dead_lettered"]) == (10, 8, 0, 2)
    assert [e["index"] for e in result["errors"]] == [2, 8]  # the blank line is no record
    assert result["incidents"] == {"src:203.0.113.2": 3, "src:198.51.100.66": 5}
    kept = [
        e for e in read_dead_letters(api.loop.settings.dead_letter_path) if e["source"].endswith(result["request_id"])
    ]
    assert [e["text"].encode() for e in kept] == [broken, unknown]
    assert [e["error"] for e in kept] == [e["reason"] for e in result["errors"]]
    assert ledger_alerts(api.loop, "src:203.0.113.2") == 3


async def test_gzip_json_array_and_single_object_bodies(api: Api) -> None:
    alerts = [alert(i, "203.0.113.3") for i in range(4)]
    array = json.dumps([a.model_dump(mode="json") for a in alerts]).encode()
    response = await api.post(gzip.compress(array), **{"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 202 and response.json()["accepted"] == 4, response.text
    one = await api.post(alert(9, "203.0.113.3").model_dump_json(indent=2).encode())
    assert one.status_code == 202 and one.json()["accepted"] == 1, one.text
    assert ledger_alerts(api.loop, "src:203.0.113.3") == 5


async def test_a_retried_post_attaches_nothing_twice(api: Api) -> None:
    alerts = [alert(i, "203.0.113.4") for i in range(6)]
    first, again = await api.post(lines(alerts)), await api.post(lines(alerts + alerts[:1]))
    assert (first.json()["accepted"], first.json()["duplicate"]) == (6, 0)
    assert (again.json()["accepted"], again.json()["duplicate"]) == (0, 7)
    key = incident_key(alerts[0])
    assert ledger_alerts(api.loop, key) == 6
    status = await api.loop.wait_for(key, lambda s: s.alert_count >= 6)
    await asyncio.sleep(0.3)  # a second signal, were it attached, would have landed by now
    assert (await api.loop.wait_for(key, lambda s: True)).alert_count == status.alert_count == 6


async def test_requests_queued_together_share_one_write_and_an_alert_both_carry_is_new_to_one(api: Api) -> None:
    outbox: Outbox = api.app.state.service.outbox
    key, shared = "src:203.0.113.13", alert(0, "203.0.113.13")
    requests = [[shared, alert(n, "203.0.113.13")] for n in range(1, 4)]
    writes = await metric(api.http, "autonomy_http_ledger_writes_total")
    accepted = await asyncio.gather(*(outbox.accept(alerts) for alerts in requests))  # all queue, then one write
    assert await metric(api.http, "autonomy_http_ledger_writes_total") == writes + 1
    assert [[a.id for a in one.new] for one in accepted] == [[shared.id, requests[0][1].id]] + [
        [alerts[1].id] for alerts in requests[1:]
    ]
    assert all(one.incidents == {key: 2} for one in accepted)
    assert ledger_alerts(api.loop, key) == 4
    assert (await api.loop.wait_for(key, lambda s: s.alert_count >= 4)).alert_count == 4


async def test_signals_gather_while_ingest_is_busy_and_go_together_once_it_is_idle(api: Api) -> None:
    outbox: Outbox = api.app.state.service.outbox
    key = "src:203.0.113.14"
    signals = await metric(api.http, "autonomy_http_incidents_submitted_total")
    with outbox.receiving():  # a request in progress: ingest is busy
        for n in range(3):
            assert (await api.post(lines([alert(n, "203.0.113.14")]))).status_code == 202
        await asyncio.sleep(LIMITS.outbox_idle_seconds * 4)  # an idle flusher would have sent them by now
        assert len(outbox.pending[key]) == 3
        assert await metric(api.http, "autonomy_http_incidents_submitted_total") == signals
    assert (await api.loop.wait_for(key, lambda s: s.alert_count >= 3)).alert_count == 3
    assert await metric(api.http, "autonomy_http_incidents_submitted_total") == signals + 1  # one signal, 3 alerts


async def test_under_sustained_ingest_an_alert_waits_at_most_the_max_delay_for_its_signal(api: Api) -> None:
    config = dataclasses.replace(LIMITS, outbox_max_delay_seconds=0.5)
    app = create_app(api.loop.settings, config, api.loop.client.service_client.config.target_host)
    async with live(app) as http:
        outbox: Outbox = app.state.service.outbox
        with outbox.receiving():  # busy throughout: only the delay sends it
            auth = {"Authorization": f"Bearer {api.tokens['sender']}"}
            sent = await http.post("/v1/alerts", content=lines([alert(1, "203.0.113.15")]), headers=auth)
            assert sent.status_code == 202
            status = await api.loop.wait_for("src:203.0.113.15", lambda s: s.alert_count == 1)
            assert status.alert_count == 1 and outbox._requests == 1


async def test_under_sustained_ingest_an_incident_holding_a_full_batch_is_signalled_at_once(api: Api) -> None:
    config = dataclasses.replace(LIMITS, outbox_batch_alerts=3)  # and a 30 s max delay: only the batch sends
    app = create_app(api.loop.settings, config, api.loop.client.service_client.config.target_host)
    async with live(app) as http:
        outbox: Outbox = app.state.service.outbox
        with outbox.receiving():
            auth = {"Authorization": f"Bearer {api.tokens['sender']}"}
            body = lines([alert(n, "203.0.113.16") for n in range(3)] + [alert(1, "203.0.113.17")])
            assert (await http.post("/v1/alerts", content=body, headers=auth)).status_code == 202
            status = await api.loop.wait_for("src:203.0.113.16", lambda s: s.alert_count == 3)
            assert status.alert_count == 3
            assert [a.id for _, a in outbox.pending["src:203.0.113.17"]] == [alert(1, "203.0.113.17").id]


# -- limits -----------------------------------------------------------------------------------------------


async def test_each_limit_is_named_and_a_request_over_one_writes_nothing(api: Api) -> None:
    too_large = await api.post(b" " * (LIMITS.max_body_bytes + 1))
    assert too_large.status_code == 413 and "max_body_bytes" in too_large.json()["detail"]
    many = [alert(i, "203.0.113.5") for i in range(LIMITS.max_records + 1)]
    too_many = await api.post(lines(many))
    assert too_many.status_code == 413 and "max_records" in too_many.json()["detail"]
    assert ledger_alerts(api.loop, "src:203.0.113.5") == 0
    bomb = await api.post(gzip.compress(b"\n" * (LIMITS.max_decompressed_bytes + 1)))
    assert bomb.status_code == 413 and "max_decompressed_bytes" in bomb.json()["detail"]
    empty = await api.post(b"\n \n")
    assert empty.status_code == 400


async def test_a_line_over_the_line_limit_is_dead_lettered_whole_and_the_rest_goes_on(api: Api) -> None:
    overlong = b'{"x": "' + b"a" * MAX_LINE_BYTES + b'"}'
    good = alert(1, "203.0.113.6")
    response = await api.post(overlong + b"\n" + lines([good]), **{"Content-Type": "application/x-ndjson"})
    assert response.status_code == 202, response.text
    result = response.json()
    assert (result["accepted"], result["dead_lettered"]) == (1, 1)
    assert f"{MAX_LINE_BYTES}-byte line limit" in result["errors"][0]["reason"]
    kept = [
        e for e in read_dead_letters(api.loop.settings.dead_letter_path) if e["source"].endswith(result["request_id"])
    ]
    assert kept[0]["bytes"] == len(overlong)


async def test_too_many_requests_at_once_is_429_with_retry_after(api: Api) -> None:
    config = ServiceConfig(max_concurrent_ingests=1, queue_seconds=0.05)
    app = create_app(api.loop.settings, config, api.loop.client.service_client.config.target_host)
    async with live(app) as http:
        busy = app.state.service.ingest_slots
        await busy.acquire()  # a request in flight holds the only slot
        response = await http.post(
            "/v1/alerts",
            content=lines([alert(1, "203.0.113.7")]),
            headers={"Authorization": f"Bearer {api.tokens['sender']}"},
        )
        busy.release()
    assert response.status_code == 429 and response.headers["retry-after"]
    assert ledger_alerts(api.loop, "src:203.0.113.7") == 0


# -- Temporal down ----------------------------------------------------------------------------------------


async def test_temporal_unreachable_is_503_with_retry_after_and_the_retry_loses_nothing(api: Api) -> None:
    alerts = [alert(i, "203.0.113.8") for i in range(3)]
    body = lines(alerts) + b"not json\n"
    dead_letters_before = len(list(read_dead_letters(api.loop.settings.dead_letter_path)))
    down = create_app(api.loop.settings, LIMITS, f"127.0.0.1:{free_port()}")
    async with live(down) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        assert ready.json()["checks"]["temporal"] != "ok" and ready.json()["checks"]["ledger"] == "ok"
        auth = {"Authorization": f"Bearer {api.tokens['sender']}"}
        refused = await http.post("/v1/alerts", content=body, headers=auth)
        assert refused.status_code == 503 and refused.headers["retry-after"]
    assert len(list(read_dead_letters(api.loop.settings.dead_letter_path))) == dead_letters_before
    retried = await api.post(body)  # the sender retries once Temporal is back: here, the live service
    assert (retried.json()["accepted"], retried.json()["dead_lettered"]) == (3, 1)
    status = await api.loop.wait_for("src:203.0.113.8", lambda s: s.alert_count == 3)
    assert status.alert_count == ledger_alerts(api.loop, "src:203.0.113.8") == 3


# -- read API, health, metrics ----------------------------------------------------------------------------


async def test_read_api_lists_filters_shows_and_reports(api: Api) -> None:
    alerts = [alert(i, "203.0.113.9", source="native") for i in range(2)]
    assert (await api.post(lines(alerts))).status_code == 202
    key = "src:203.0.113.9"
    await api.loop.wait_for(key, lambda s: s.alert_count == 2)
    listed = (await api.get("/v1/incidents", source="native")).json()
    assert key in [row["key"] for row in listed["incidents"]] and listed["temporal"] is None
    assert key not in [r["key"] for r in (await api.get("/v1/incidents", source="suricata")).json()["incidents"]]
    shown = (await api.get(f"/v1/incidents/{key}")).json()
    assert shown["view"] == "workflow" and shown["status"]["alert_count"] == 2
    report = (await api.get(f"/v1/incidents/{key}/report")).json()
    assert report["incident_key"] == key and report["alert_count"] == 2
    markdown = await api.get(f"/v1/incidents/{key}/report", format="markdown")
    assert markdown.headers["content-type"].startswith("text/markdown") and key in markdown.text
    assert (await api.get("/v1/incidents/src:192.0.2.250")).status_code == 404
    assert (await api.get("/v1/incidents/src:192.0.2.250/report")).status_code == 404


@workflow.defn(name="NotAnIncident")
class SilentWorkflow:
    """A workflow under an incident's key whose `status` query fails (another team's, or one whose worker cannot
    replay it): Temporal answers, the query does not."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="status")
    def status(self) -> dict[str, str]:
        raise ApplicationError("this workflow keeps its status to itself")


async def test_a_workflow_whose_query_fails_is_a_note_on_its_row_not_a_failed_list(api: Api) -> None:
    key = "src:203.0.113.77"
    api.loop.ledger.append(key, RecordKind.ALERT, "ingest", alert(0, "203.0.113.77").model_dump(mode="json"))
    client = api.loop.client
    async with Worker(
        client, task_queue="silent", workflows=[SilentWorkflow], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await client.start_workflow(SilentWorkflow.run, id=key, task_queue="silent")
        try:
            listed = await api.get("/v1/incidents")
            assert listed.status_code == 200, listed.text
            [row] = [r for r in listed.json()["incidents"] if r["key"] == key]
            assert row["phase"] is None and "keeps its status to itself" in row["note"], row
            shown = await api.get(f"/v1/incidents/{key}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["view"] == "ledger" and "keeps its status to itself" in shown.json()["note"]
        finally:
            await handle.terminate("test over")


ASKED: list[str] = []
"""The incidents whose CountedWorkflow was asked for its status (queries run in this process's worker)."""


@workflow.defn(name="CountedIncident")
class CountedWorkflow:
    """A workflow under an incident's key that notes each status query it answers."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="status")
    def status(self) -> dict[str, str]:
        ASKED.append(workflow.info().workflow_id)
        raise ApplicationError("counted")


async def test_a_list_asks_temporal_only_about_the_incidents_it_returns(api: Api) -> None:
    """A page of `limit` incidents asks that many workflows for their status, not every incident in the ledger;
    a phase filter asks until it has found `limit` (in chunks), not beyond."""
    keys = [f"src:203.0.113.{n}" for n in range(80, 86)]
    for n, key in enumerate(keys):
        record = alert(n, key.removeprefix("src:"), source="counted-sensor").model_dump(mode="json")
        api.loop.ledger.append(key, RecordKind.ALERT, "ingest", record)
    client = api.loop.client
    runner = UnsandboxedWorkflowRunner()
    async with Worker(client, task_queue="counted", workflows=[CountedWorkflow], workflow_runner=runner):
        handles = [await client.start_workflow(CountedWorkflow.run, id=key, task_queue="counted") for key in keys]
        try:
            ASKED.clear()
            page = (await api.get("/v1/incidents", source="counted-sensor", limit="2")).json()["incidents"]
            assert [row["key"] for row in page] == keys[:2] and sorted(ASKED) == keys[:2]
            ASKED.clear()
            none = (await api.get("/v1/incidents", source="counted-sensor", phase="closed", limit="2")).json()
            assert none["incidents"] == [] and sorted(ASKED) == keys  # no row has that phase: each asked once
        finally:
            for handle in handles:
                await handle.terminate("test over")


async def test_openapi_health_readiness_and_metrics(api: Api) -> None:
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    assert {"/v1/alerts", "/v1/incidents", "/v1/incidents/{key}", "/v1/incidents/{key}/report"} <= set(paths)
    health = await api.http.get("/healthz")
    assert health.json() == {"status": "ok"}
    assert health.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert (health.headers["x-content-type-options"], health.headers["cache-control"]) == ("nosniff", "no-store")
    refused = await api.http.post("/v1/alerts", content=b"{}")  # an error answer carries them too
    assert refused.status_code == 401 and refused.headers["referrer-policy"] == "no-referrer"
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert (await api.post(lines([alert(1, "203.0.113.10", source="native")]))).status_code == 202
    metrics = (await api.http.get("/metrics")).text
    assert 'autonomy_http_alerts_ingested_total{format="native"}' in metrics
    assert 'autonomy_http_request_seconds_count{method="POST",route="/v1/alerts",status="202"}' in metrics
    assert 'autonomy_http_request_seconds_count{method="POST",route="/v1/alerts",status="401"}' in metrics
    assert "autonomy_http_dead_letters_total" in metrics


# -- the outbox: a crash between the ledger and the signal ------------------------------------------------


async def test_ledger_alerts_no_workflow_has_seen_are_signalled_at_the_next_start(api: Api) -> None:
    """What a crash after the ledger write and before the flush leaves: ALERT records after the outbox's cursor.
    A new service signals them; alerts a closed run already received do not start it again."""
    loop, target = api.loop, api.loop.client.service_client.config.target_host
    closed_key, fresh_key = "src:203.0.113.12", "src:203.0.113.11"
    seen = [alert(i, "203.0.113.12") for i in range(2)]
    await loop.submit(seen, level=Level.L1)  # ledger + signal, as a flush that got out before the crash
    first_run = await loop.result(closed_key)
    cursor = loop.settings.state_dir / CURSOR_FILE
    before = min(r.seq for r in loop.ledger.records(closed_key, [RecordKind.ALERT])) - 1
    cursor.write_text(json.dumps({"signalled_through": before}))  # the crash came before the cursor moved on
    late = alert(7, "203.0.113.12")
    fresh = [alert(i, "203.0.113.11") for i in range(3)]
    Submitter(loop.client, loop.ledger).write({closed_key: [late], fresh_key: fresh})  # the ledger half only
    app = create_app(loop.settings, LIMITS, target)
    async with live(app):
        await loop.wait_for(fresh_key, lambda s: s.alert_count == 3)
        rerun = await loop.wait_for(closed_key, lambda s: s.run_id != first_run.run_id)
        assert rerun.alert_count == 1  # only the alert the closed run never received
        assert json.loads(cursor.read_text())["signalled_through"] >= max(
            r.seq for r in loop.ledger.records(fresh_key, [RecordKind.ALERT])
        )
