"""Sustained ingest over HTTP next to `autonomy submit` of the same file, in one run.

The same N alerts (NDJSON, S sources) go in twice, each time into a fresh in-memory Temporal dev server and
an empty SQLite ledger, with no worker (the figure is the ingest path: ledger write + signal-with-start, not
the decisions):

1. `autonomy submit`'s code path (workflows.operations.submit_files), in this process, timed without start-up;
2. `autonomy serve` in its own process, fed by C concurrent HTTP clients POSTing B records a request; its
   clock stops when the last signal is sent (the outbox is empty), not at the last 202.

Prints alerts/s for each, the HTTP requests' p50/p99 latency, the ratio (target >= 0.8) and what each ledger
holds (0 lost: every alert of the file is an ALERT record). Run: `.venv/bin/python -m bench.http`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, Category, Severity
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.operations import open_client, submit_files


def alerts_file(path: Path, n: int, sources: int) -> Path:
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    with path.open("w") as out:
        for i in range(n):
            alert = Alert(
                id=f"bench-http-{i}",
                source="native",
                observed_at=start + timedelta(milliseconds=i),
                category=Category.SQLI,
                severity=Severity.HIGH,
                confidence=0.9,
                src_ip=f"198.18.{i % sources // 250}.{i % sources % 250 + 1}",
                rule_ids=["942100"],
                evidence="GET /?id=1' OR 1=1--",
            )
            out.write(alert.model_dump_json() + "\n")
    return path


def ledger_alerts(state: Path) -> int:
    with Ledger.from_url(f"sqlite:///{state / 'ledger.db'}") as ledger:
        return sum(len(ledger.records(h.incident_key, [RecordKind.ALERT])) for h in ledger.incidents())


async def run_submit(path: Path, state: Path, address: str) -> float:
    client = await open_client(address)
    with Ledger.from_url(f"sqlite:///{state / 'ledger.db'}") as ledger:
        began = time.perf_counter()
        await submit_files(
            client,
            ledger,
            [path],
            dead_letter=DeadLetter(state / "dead-letter.jsonl"),
            ingest=IngestReport(),
            level=None,
            settle_seconds=5,
            quiet_seconds=60,
        )
        return time.perf_counter() - began


async def run_http(path: Path, state: Path, address: str, clients: int, batch: int) -> tuple[float, list[float]]:
    token = TokenStore(tokens_file(state)).add("bench", [Scope.INGEST])[0]
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "AUTONOMY_STATE_DIR": str(state), "AUTONOMY_TEMPORAL_ADDRESS": address}
    server = subprocess.Popen(
        [sys.executable, "-m", "autonomy_controller.controller.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    lines = path.read_bytes().splitlines(keepends=True)
    bodies = [b"".join(lines[i : i + batch]) for i in range(0, len(lines), batch)]
    latencies: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while not await _ready(http):
                await asyncio.sleep(0.1)
            queue = iter(bodies)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}

            async def sender() -> None:
                for body in queue:
                    began = time.perf_counter()
                    response = await http.post("/v1/alerts", content=body, headers=headers)
                    while response.status_code in (429, 503):  # the contract: retry after Retry-After
                        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                        response = await http.post("/v1/alerts", content=body, headers=headers)
                    response.raise_for_status()
                    latencies.append(time.perf_counter() - began)

            began = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(clients)))
            while await _outbox(http) > 0:  # the clock stops once every signal is sent, as submit's does
                await asyncio.sleep(0.01)
            return time.perf_counter() - began, latencies
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _outbox(http: httpx.AsyncClient) -> float:
    """Alerts the service has acknowledged but not yet signalled (its outbox)."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("autonomy_http_outbox_alerts "):
            return float(line.split()[1])
    raise RuntimeError("the service exports no autonomy_http_outbox_alerts gauge")


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--sources", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500, help="records per HTTP request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
        root = Path(folder)
        path = alerts_file(root / "alerts.ndjson", args.alerts, args.sources)
        with DevServer() as dev:
            submit_s = asyncio.run(run_submit(path, root / "submit", dev.address))
        with DevServer() as dev:
            http_s, latencies = asyncio.run(run_http(path, root / "http", dev.address, args.clients, args.batch))
        submit_rate, http_rate = args.alerts / submit_s, args.alerts / http_s
        quantiles = statistics.quantiles(latencies, n=100)
        lost_submit = args.alerts - ledger_alerts(root / "submit")
        lost_http = args.alerts - ledger_alerts(root / "http")
    print(f"bench.http: {args.alerts} alerts from {args.sources} sources, no worker (the ingest path only)")
    print(f"  autonomy submit: {submit_rate:8.0f} alerts/s ({submit_s:.2f} s), lost {lost_submit}")
    print(
        f"  HTTP ingest:     {http_rate:8.0f} alerts/s ({http_s:.2f} s), {args.clients} clients x {args.batch} "
        f"records/request, p50 {quantiles[49] * 1000:.0f} ms, p99 {quantiles[98] * 1000:.0f} ms, lost {lost_http}"
    )
    print(f"  ratio HTTP / submit: {http_rate / submit_rate:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
