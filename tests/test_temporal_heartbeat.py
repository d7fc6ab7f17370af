"""A worker lost in the middle of planning costs the planning heartbeat's timeout, not the planning timeout.

The Claude planner talks to a local HTTP server that answers slowly (longer than the heartbeat timeout) with a
real Messages API body. The worker (a separate process, tests/chaos_worker.py) is killed with SIGKILL while the
planner waits on that answer; a second worker process starts. Temporal's own facts are asserted: the planning
activity's second attempt was started by the second worker after a *heartbeat* timeout (not a start-to-close
one), and that attempt, slower than the heartbeat timeout itself, completed because it heartbeated while
waiting. The incident then closes with Claude's plan carried out.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import TimeoutType
from temporalio.api.history.v1 import ActivityTaskScheduledEventAttributes, ActivityTaskStartedEventAttributes
from temporalio.client import WorkflowHistory

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Category, Level
from autonomy_controller.workflows.client import Submitter, incident_handle
from autonomy_controller.workflows.cluster import wait_pollers
from autonomy_controller.workflows.contracts import TASK_QUEUE, ActionStatus
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.incident import PLAN_HEARTBEAT
from autonomy_controller.workflows.worker import connect
from tests.claude_fake import KEY, MODEL, choose
from tests.harness import burst
from tests.test_chaos import start_worker

ANSWER_AFTER = PLAN_HEARTBEAT.total_seconds() * 1.5
"""Longer than the heartbeat timeout: an attempt that did not heartbeat while waiting would time out."""


class SlowMessages(BaseHTTPRequestHandler):
    """POST /v1/messages: counts the request, waits ANSWER_AFTER, answers with a select-mode tool call."""

    requests: list[float] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        SlowMessages.requests.append(time.monotonic())
        time.sleep(ANSWER_AFTER)
        body = json.dumps(choose("protocol-anomaly-review")).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("request-id", "req_01TestSlow")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the worker that asked was killed meanwhile
            pass

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def slow_claude() -> Iterator[str]:
    SlowMessages.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowMessages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def plan_attempt(
    history: WorkflowHistory,
) -> tuple[ActivityTaskScheduledEventAttributes, ActivityTaskStartedEventAttributes]:
    """The planning activity's scheduled and started events (the started one is the last attempt's)."""
    scheduled = next(
        e
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "plan_round"
    )
    started = next(
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.scheduled_event_id == scheduled.event_id
    )
    return scheduled.activity_task_scheduled_event_attributes, started


async def test_a_worker_killed_mid_planning_is_retried_elsewhere_after_the_heartbeat_timeout(
    config_copy: Settings, slow_claude: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir),
        "AUTONOMY_POLICIES_DIR": str(config_copy.policies_dir),
        "AUTONOMY_STATE_DIR": str(config_copy.state_dir),
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": slow_claude,
        "AUTONOMY_CLAUDE_MODEL": MODEL,
        "AUTONOMY_CLAUDE_MODE": "select",
        "AUTONOMY_CLAUDE_MAX_RETRIES": "0",
    }
    effects = tmp_path / "effects"
    with DevServer() as server:
        client = await connect(server.address)
        first = start_worker(server.address, effects, env, tmp_path / "worker-1.log")
        second: subprocess.Popen[bytes] | None = None
        ledger = Ledger.from_url(config_copy.ledger_url)
        try:
            await wait_pollers(client, TASK_QUEUE, 1)
            submitter = Submitter(client, ledger, level=Level.L3, settle_seconds=0, quiet_seconds=0)
            (key,) = (await submitter.add_all(burst(category=Category.PROTOCOL))).incidents
            deadline = time.monotonic() + 60
            while not SlowMessages.requests:  # the first worker is now planning, waiting on Claude
                assert time.monotonic() < deadline, (tmp_path / "worker-1.log").read_text()[-3000:]
                await asyncio.sleep(0.1)
            first.send_signal(signal.SIGKILL)
            first.wait()
            second = start_worker(server.address, effects, env, tmp_path / "worker-2.log")
            final = await incident_handle(client, key).result()
            history = await incident_handle(client, key).fetch_history()
        finally:
            for worker in (first, second):
                if worker is not None and worker.poll() is None:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait()

    scheduled, started = plan_attempt(history)
    assert scheduled.heartbeat_timeout.ToTimedelta() == PLAN_HEARTBEAT
    assert started.attempt == 2
    timeout = started.last_failure.timeout_failure_info
    assert timeout.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT  # the dead worker, noticed by its silence
    assert second is not None and started.identity.startswith(f"{second.pid}@")
    assert len(SlowMessages.requests) == 2  # one Claude call per attempt: the second, slow one was kept alive
    assert final.phase == "closed" and final.planner == "claude"
    ticket = next(a for a in final.actions if a.action == "ticket.create")
    assert ticket.status is ActionStatus.VERIFIED
    plans = ledger.records(key, [RecordKind.PLAN])
    assert len(plans) == 1 and plans[0].payload["planner_outcome"] == "ok"
    ledger.close()
