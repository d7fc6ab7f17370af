"""Chaos: kill -9 the worker several times while 100+ incidents run; nothing is lost, nothing runs twice.

The worker is a separate process (tests/chaos_worker.py) with real ticket and webhook adapters and an
on-disk enforcement point. Temporal re-delivers what the dead worker held; the idempotency keys make every
re-delivered step land on the record or effect its first attempt made. Time skipping fast-forwards the
durable timers (settle, quiet, TTL revert) so the run takes a minute, not an hour.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from autonomy_controller.actions.adapters.ticket import list_tickets
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Category, Level
from autonomy_controller.workflows.client import Submitter, incident_handle
from autonomy_controller.workflows.contracts import ActionStatus
from autonomy_controller.workflows.devserver import TIME_SKIPPING_FLAG, DevServer
from autonomy_controller.workflows.worker import connect
from tests.harness import BURST, burst, edit_yaml

INCIDENTS = 120
KILLS = 4


class Receiver(BaseHTTPRequestHandler):
    posts: Counter[str] = Counter()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Receiver.posts[self.headers.get("Idempotency-Key", "")] += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.posts = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def start_worker(address: str, effects: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos_worker", address, str(effects)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    return process


async def test_killing_the_worker_loses_nothing_and_runs_nothing_twice(
    config_copy: Settings, receiver: str, tmp_path: Path
) -> None:
    edit_yaml(config_copy.levels_dir / "L3.yaml", budgets={})  # this test is about crashes, not blast radius
    state = config_copy.state_dir
    state.mkdir(parents=True, exist_ok=True)
    channels = state / "channels.yaml"
    channels.write_text(yaml.safe_dump({"channels": {"soc-alerts": {"url": receiver, "timeout_seconds": 5}}}))
    env = {
        **os.environ,
        "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir),
        "AUTONOMY_POLICIES_DIR": str(config_copy.policies_dir),
        "AUTONOMY_STATE_DIR": str(state),
        "AUTONOMY_CHANNELS_FILE": str(channels),
    }
    effects, log = tmp_path / "effects", tmp_path / "worker.log"
    # a third of the incidents are protocol anomalies (ticket only), the rest web attacks (block, ticket, notify)
    # each a burst triage calls malicious, so L3 contains alone (a single alert would wait for a person)
    alerts = [
        a
        for n in range(INCIDENTS)
        for a in burst(f"198.51.100.{n + 10}", Category.PROTOCOL if n % 3 == 0 else Category.SQLI)
    ]
    with DevServer(extra_args=TIME_SKIPPING_FLAG) as server:
        worker = start_worker(server.address, effects, env, log)
        client = TimeSkipper(await connect(server.address), config=TimeSkippingConfig(enabled=True)).client
        ledger = Ledger.from_url(config_copy.ledger_url)
        try:
            submitter = Submitter(client, ledger, level=Level.L3, settle_seconds=1, quiet_seconds=5)
            submit = asyncio.create_task(submitter.add_all(alerts))
            for _ in range(KILLS):
                await asyncio.sleep(2.5)
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                worker = start_worker(server.address, effects, env, log)
            report = await submit
            assert report.alerts == INCIDENTS * BURST and len(report.incidents) == INCIDENTS
            finals = await asyncio.wait_for(
                asyncio.gather(*(incident_handle(client, key).result() for key in report.incidents)), timeout=600
            )
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()

        # every incident completed, with a report
        assert len(finals) == INCIDENTS and all(f.phase == "closed" and f.report for f in finals)
        actions = [(f.key, a) for f in finals for a in f.actions]
        failed = [(k, a.action, a.detail) for k, a in actions if a.status is ActionStatus.FAILED]
        assert not failed, failed[:5]

        # exactly once, counted at the adapters
        blocks = [k for k, a in actions if a.action == "network.block_ip"]
        block_states = Counter((a.status.value, a.detail) for _, a in actions if a.action == "network.block_ip")
        assert set(block_states) == {("reverted", "reverted after 3600 s")}, block_states
        effect_files = [json.loads(p.read_text()) for p in effects.glob("*.json")]
        per_action = Counter((e["action"], e["key"].split("/")[0]) for e in effect_files)
        assert sorted(per_action.values()) == [1] * len(per_action)
        assert Counter(e["action"] for e in effect_files) == {
            "network.block_ip": len(blocks),
            "network.unblock_ip": len(blocks),
        }
        tickets = list_tickets(config_copy.tickets_dir)
        ticket_actions = [k for k, a in actions if a.action == "ticket.create" and a.status is ActionStatus.VERIFIED]
        assert len(ticket_actions) == INCIDENTS
        assert sorted(t["incident_key"] for t in tickets) == sorted(ticket_actions)
        notify_actions = [k for k, a in actions if a.action == "notify.webhook" and a.status is ActionStatus.VERIFIED]
        assert len(Receiver.posts) == len(notify_actions) == len(blocks)
        duplicates = sum(Receiver.posts.values()) - len(Receiver.posts)
        assert duplicates <= KILLS, Receiver.posts  # a POST cut by a kill is re-sent with the same Idempotency-Key

        calls = (effects / "calls.jsonl").read_text().splitlines()
        print(
            f"\nchaos: {INCIDENTS} incidents, {KILLS} kills, {len(effect_files)} enforcement effects from "
            f"{len(calls)} adapter calls, {len(tickets)} tickets, webhook duplicates {duplicates}"
        )

        # the ledger chain holds, and has each step once
        assert ledger.verify().ok
        for key in report.incidents:
            kinds = Counter(r.kind for r in ledger.records(key))
            assert kinds[RecordKind.ALERT] == BURST and kinds[RecordKind.PLAN] == 1 and kinds[RecordKind.REPORT] == 1
        ledger.close()
