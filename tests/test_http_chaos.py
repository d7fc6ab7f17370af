"""Chaos over HTTP: SIGKILL `autonomy serve` and the worker mid-ingest, restart both; every alert a 202
acknowledged is in the ledger, and every ALERT record the ledger holds reaches its workflow.

The service runs as its own process (`python -m controller.cli serve`), so the kill lands wherever it lands:
in a request's ledger write, between the 202 and the outbox's signal, in a flush. What the outbox had not
signalled is found again at the next start (controller/service/outbox.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from autonomy_controller.workflows.client import alert_record_key, incident_status
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.worker import connect
from tests.harness import alert
from tests.test_http import free_port, lines

SOURCES = 24
PER_REQUEST = 30
CLIENTS = 3


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


async def ready(http: httpx.AsyncClient) -> None:
    for _ in range(600):
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the service never became ready")


async def test_killing_the_server_and_worker_mid_ingest_loses_no_acknowledged_alert(
    config_copy: Settings, tmp_path: Path
) -> None:
    state = config_copy.state_dir
    token = TokenStore(tokens_file(state)).add("chaos", [Scope.INGEST])[0]
    port = free_port()
    env = {
        **os.environ,
        "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir),
        "AUTONOMY_POLICIES_DIR": str(config_copy.policies_dir),
        "AUTONOMY_STATE_DIR": str(state),
    }
    work = ["-m", "tests.chaos_worker", "ADDRESS", str(tmp_path / "effects")]
    serve = [
        "-m",
        "autonomy_controller.controller.cli",
        "serve",
        "--port",
        str(port),
        "--settle",
        "1",
        "--quiet",
        "600",
    ]
    server_log, worker_log = tmp_path / "serve.log", tmp_path / "worker.log"
    acknowledged: dict[str, Alert] = {}
    counter = iter(range(10**9))
    stop = asyncio.Event()

    async def sender(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            batch = [alert(n, f"198.18.7.{n % SOURCES + 1}") for n in (next(counter) for _ in range(PER_REQUEST))]
            try:
                response = await http.post("/v1/alerts", content=lines(batch), headers=auth)
            except httpx.TransportError:  # the server is dead or not back yet: this batch was never acknowledged
                await asyncio.sleep(0.05)
                continue
            if response.status_code == 202:
                acknowledged.update((a.id, a) for a in batch)

    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    with DevServer() as dev:
        env["AUTONOMY_TEMPORAL_ADDRESS"] = work[2] = dev.address
        worker = spawn(work, env, worker_log)
        server = spawn(serve, env, server_log)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                await ready(http)
                senders = [asyncio.create_task(sender(http)) for _ in range(CLIENTS)]
                for _ in range(3):  # three kills, each once some more alerts were acknowledged
                    floor = len(acknowledged) + 150
                    while len(acknowledged) < floor:
                        await asyncio.sleep(0.01)
                    kill(server)
                    kill(worker)
                    worker = spawn(
                        ["-m", "tests.chaos_worker", dev.address, str(tmp_path / "effects")], env, worker_log
                    )
                    server = spawn(serve, env, server_log)
                    await ready(http)
                floor = len(acknowledged) + 150
                while len(acknowledged) < floor:
                    await asyncio.sleep(0.01)
                stop.set()
                await asyncio.gather(*senders)

            with Ledger.from_url(config_copy.ledger_url) as ledger:
                missing = [i for i, a in acknowledged.items() if ledger.find(alert_record_key(a)) is None]
                assert not missing, f"{len(missing)} acknowledged alerts are not in the ledger"
                keys = {incident_key(a) for a in acknowledged.values()}
                in_ledger = {key: len(ledger.records(key, [RecordKind.ALERT])) for key in keys}
            client = await connect(dev.address)
            for key, count in in_ledger.items():  # every ALERT record, acknowledged or not, reaches its workflow
                for _ in range(300):
                    try:
                        if (await incident_status(client, key)).alert_count == count:
                            break
                    except Exception:  # not started yet, or no worker answering yet
                        pass
                    await asyncio.sleep(0.1)
                else:
                    seen = (await incident_status(client, key)).alert_count
                    pytest.fail(f"{key}: the workflow saw {seen} of the ledger's {count} alerts")
        finally:
            kill(server)
            kill(worker)
    recovered = [line for line in server_log.read_text().splitlines() if "queued again" in line]
    print(f"\nhttp chaos: {len(acknowledged)} alerts acknowledged, 3 kills; re-queued at start: {recovered}")
