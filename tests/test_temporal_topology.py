"""The production topology, for real: a Temporal server built from source (mTLS on its frontend, PostgreSQL
persistence), two worker processes on one task queue, OPA as a server beside them (AUTONOMY_OPA_URL), the ledger
on PostgreSQL. Incidents run through it while one worker is killed (SIGKILL) and restarted, then the Temporal
server itself is killed and restarted: every incident closes, nothing is lost, no action runs twice (counted at
the enforcement point, tests/chaos_worker.py), and the ledger's chain verifies.

The workers get their connection the way docs/deploy.md says: AUTONOMY_TEMPORAL_* variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from temporalio.testing import TimeSkipper, TimeSkippingConfig

from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.engines.opa_server import OpaServer
from autonomy_controller.controller.decision.levels import load_level_config
from autonomy_controller.controller.decision.policy_bundle import load_bundle
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.ledger.engine import private_schema
from autonomy_controller.controller.models import Category, Level
from autonomy_controller.workflows.client import Submitter, incident_handle
from autonomy_controller.workflows.cluster import wait_pollers
from autonomy_controller.workflows.contracts import TASK_QUEUE, ActionStatus
from tests import test_chaos
from tests.harness import BURST, burst, edit_yaml
from tests.temporal_server import TemporalServer, require_server, wait_serving

INCIDENTS = 30
Receiver = test_chaos.Receiver
webhook = test_chaos.receiver  # the webhook receiver fixture (a local HTTP server counting Idempotency-Keys)
POSTGRES_URL = os.environ.get("AUTONOMY_TEST_POSTGRES_URL")


def start_worker(env: dict[str, str], effects: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.chaos_worker", env["AUTONOMY_TEMPORAL_ADDRESS"], str(effects)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def test_two_workers_a_tls_server_opa_and_postgres_survive_kills(
    config_copy: Settings, webhook: str, tmp_path: Path
) -> None:
    require_server()
    if not POSTGRES_URL:
        pytest.fail("AUTONOMY_TEST_POSTGRES_URL is not set: `bash .ci/postgres.sh` prints it (make unit does)")
    edit_yaml(config_copy.levels_dir / "L3.yaml", budgets={})  # about crashes, not blast radius
    config_copy.state_dir.mkdir(parents=True, exist_ok=True)
    channels = config_copy.state_dir / "channels.yaml"
    channels.write_text(yaml.safe_dump({"channels": {"soc-alerts": {"url": webhook, "timeout_seconds": 5}}}))
    started = time.monotonic()
    bundle = load_bundle(config_copy.policies_dir, load_level_config(config_copy.levels_dir))
    server = TemporalServer.time_skipping(tmp_path, POSTGRES_URL)
    server.setup_schema()
    effects = tmp_path / "effects"
    alerts = [
        a
        for n in range(INCIDENTS)
        for a in burst(f"198.51.100.{n + 10}", Category.PROTOCOL if n % 3 == 0 else Category.SQLI)
    ]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        with OpaServer(config_copy.opa_bin, bundle) as opa, private_schema(POSTGRES_URL, "topology") as ledger_url:
            env = {
                **os.environ,
                **server.client_env(),
                "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir),
                "AUTONOMY_POLICIES_DIR": str(config_copy.policies_dir),
                "AUTONOMY_STATE_DIR": str(config_copy.state_dir),
                "AUTONOMY_CHANNELS_FILE": str(channels),
                "AUTONOMY_POLICY_ENGINE": "opa",
                "AUTONOMY_OPA_URL": opa.url,
                "AUTONOMY_LEDGER_URL": ledger_url,
            }
            server.start()
            raw = await wait_serving(server, server.client_connection())
            workers = [start_worker(env, effects, tmp_path / f"worker-{i}.log") for i in range(2)]
            await wait_pollers(raw, TASK_QUEUE, 2)
            client = TimeSkipper(raw, config=TimeSkippingConfig(enabled=True)).client
            ledger = Ledger.from_url(ledger_url)
            submitter = Submitter(client, ledger, level=Level.L3, settle_seconds=1, quiet_seconds=5)
            submit = asyncio.create_task(submitter.add_all(alerts))
            await asyncio.sleep(2)
            workers[0].send_signal(signal.SIGKILL)  # one worker dies mid-run; the other carries on
            workers[0].wait()
            report = await submit
            submitted = time.monotonic()
            workers[0] = start_worker(env, effects, tmp_path / "worker-0.log")
            await asyncio.sleep(1)
            assert server.process is not None
            server.process.send_signal(signal.SIGKILL)  # then Temporal itself
            server.stop()
            server.start()
            await wait_serving(server, server.client_connection())
            finals = await asyncio.wait_for(
                asyncio.gather(*(incident_handle(client, key).result() for key in report.incidents)), timeout=600
            )

            closed = time.monotonic()
            assert report.alerts == INCIDENTS * BURST and len(report.incidents) == INCIDENTS
            assert len(finals) == INCIDENTS and all(f.phase == "closed" and f.report for f in finals)
            actions = [(f.key, a) for f in finals for a in f.actions]
            failed = [(k, a.action, a.detail) for k, a in actions if a.status is ActionStatus.FAILED]
            assert not failed, failed[:5]
            blocks = [k for k, a in actions if a.action == "network.block_ip"]
            assert blocks, "no incident blocked: the topology ran nothing worth counting"
            effect_files = [json.loads(p.read_text()) for p in effects.glob("*.json")]
            per_action = Counter((e["action"], e["key"].split("/")[0]) for e in effect_files)
            assert sorted(per_action.values()) == [1] * len(per_action)  # 0 duplicate actions
            assert Counter(e["action"] for e in effect_files) == {
                "network.block_ip": len(blocks),
                "network.unblock_ip": len(blocks),
            }
            notified = [k for k, a in actions if a.action == "notify.webhook" and a.status is ActionStatus.VERIFIED]
            assert len(Receiver.posts) == len(notified) == len(blocks)
            assert ledger.verify().ok
            for key in report.incidents:
                kinds = Counter(r.kind for r in ledger.records(key))
                assert kinds[RecordKind.ALERT] == BURST
                assert kinds[RecordKind.PLAN] == 1 and kinds[RecordKind.REPORT] == 1
            print(
                f"\ntopology: {INCIDENTS} incidents, {len(blocks)} blocks, {len(effect_files)} effects, 0 duplicates; "
                f"setup+submit {submitted - started:.0f} s, to all closed {closed - submitted:.0f} s"
            )
            ledger.close()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        server.stop()
        server.drop()
