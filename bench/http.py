"""Sustained ingest over HTTP next to `autonomy submit` of the same file, in one run.

The same N alerts (NDJSON, S sources) go in twice, each time into a fresh in-memory Temporal dev server and
an empty SQLite ledger, with no worker (the figure is the ingest path: ledger write + signal-with-start, not
the decisions):

1. `autonomy submit`'s code path (workflows.operations.submit_files), in this process, timed without start-up;
2. `autonomy serve` in its own process, fed by C concurrent HTTP clients POSTing B records a request; its
   clock stops when the last signal is sent (the outbox is empty) and the attacker profiles hold every alert,
   as submit's does (Submitter.flush returns once they do), not at the last 202.

The clients share the machine's CPU with the service, so they are kept cheap: the request bodies are the
file's own lines, cut into B-record bodies before the clock starts (no JSON encoding in the clients), sent
by one asyncio process. Both sides are timed to their last signal, on the same file, the same ledger kind and
the same Temporal; each round runs both, and the ratio is the median of the rounds' ratios (this machine's
load moves a single run's figures by tens of percent).

Prints, per round, alerts/s and signal-with-starts for each side, the HTTP requests' p50/p99 latency, and
what each ledger holds (0 lost: every alert of the file is an ALERT record), and the CPU each side's ingest
and Temporal used (less moved by the machine's load than wall-clock rates); then the median ratio (target
>= 0.8). Run: `.venv/bin/python -m bench.http`.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, Category, Severity
from autonomy_controller.controller.service.tokens import Scope, TokenStore, tokens_file
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.operations import open_client, submit_files

FEED = "bench-feed"
"""The alerts' source: a trusted native feed on both sides (docs/sensors.md, "Provenance"), so the workflows
decide as they did when native JSON was read as sensor facts."""


def alerts_file(path: Path, n: int, sources: int) -> Path:
    start = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    with path.open("w") as out:
        for i in range(n):
            alert = Alert(
                id=f"bench-http-{i}",
                source=FEED,
                observed_at=start + timedelta(milliseconds=i),
                category=Category.SQLI,
                severity=Severity.HIGH,
                confidence=0.9,
                src_ip=f"198.18.{i % sources // 250}.{i % sources % 250 + 1}",
                rule_ids=["942100"],
                src_connected=True,  # the feed's requests held a connection
                evidence="GET /?id=1' OR 1=1--",
            )
            out.write(alert.model_dump_json() + "\n")
    return path


def ledger_alerts(state: Path) -> int:
    with Ledger.from_url(f"sqlite:///{state / 'ledger.db'}") as ledger:
        return sum(len(ledger.records(h.incident_key, [RecordKind.ALERT])) for h in ledger.incidents())


@dataclass
class Side:
    seconds: float
    signals: int
    latencies: list[float] = field(default_factory=list)
    """Per HTTP request, the time to its 202."""
    writes: int = 0
    """The service's ledger writes (requests that queue while one runs share the next)."""
    cpu: float = 0.0
    """CPU seconds of the ingesting process (submit's, or the service) while timed."""
    temporal_cpu: float = 0.0
    """CPU seconds of the Temporal dev server while timed."""
    clients_cpu: float = 0.0
    """CPU seconds of the HTTP clients (this process) while timed."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc: this bench measures this machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def temporal_pid(dev: DevServer) -> int:
    assert dev.process is not None, "the dev server is started"
    return dev.process.pid


async def run_submit(path: Path, state: Path, dev: DevServer) -> Side:
    client = await open_client(dev.address)
    temporal = temporal_pid(dev)
    with Ledger.from_url(f"sqlite:///{state / 'ledger.db'}") as ledger:
        cpu, temporal_cpu = time.process_time(), cpu_seconds(temporal)
        began = time.perf_counter()
        report = await submit_files(
            client,
            ledger,
            [path],
            dead_letter=DeadLetter(state / "dead-letter.jsonl"),
            ingest=IngestReport(),
            level=None,
            settle_seconds=5,
            quiet_seconds=60,
            trusted=frozenset({FEED}),
        )
        seconds = time.perf_counter() - began
        return Side(
            seconds,
            report.signals,
            cpu=time.process_time() - cpu,
            temporal_cpu=cpu_seconds(temporal) - temporal_cpu,
        )


async def run_http(path: Path, state: Path, dev: DevServer, clients: int, batch: int) -> Side:
    token = TokenStore(tokens_file(state)).add("bench", [Scope.INGEST], [FEED])[0]
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "AUTONOMY_STATE_DIR": str(state), "AUTONOMY_TEMPORAL_ADDRESS": dev.address}
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

            cpu, temporal_cpu = cpu_seconds(server.pid), cpu_seconds(temporal_pid(dev))
            clients_cpu = time.process_time()
            began = time.perf_counter()
            await asyncio.gather(*(sender() for _ in range(clients)))
            while not await _done(http):
                await asyncio.sleep(0.01)
            seconds = time.perf_counter() - began
            cpu = cpu_seconds(server.pid) - cpu
            temporal_cpu = cpu_seconds(temporal_pid(dev)) - temporal_cpu
            clients_cpu = time.process_time() - clients_cpu
            signals = int(await _gauge(http, "autonomy_http_incidents_submitted_total"))
            writes = int(await _gauge(http, "autonomy_http_ledger_writes_total"))
            return Side(seconds, signals, latencies, writes, cpu, temporal_cpu, clients_cpu)
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _done(http: httpx.AsyncClient) -> bool:
    """Every signal sent and the attacker profiles folded: where submit's clock stops (Submitter.flush returns
    once the profiles hold the batch)."""
    names = ("autonomy_http_outbox_alerts", "autonomy_http_unfolded_alerts")
    return all([await _gauge(http, name) == 0 for name in names])


async def _gauge(http: httpx.AsyncClient, name: str) -> float:
    """One of the service's metrics: the outbox (acknowledged, not yet signalled), the signals sent."""
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise RuntimeError(f"the service exports no {name} metric")


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
    parser.add_argument("--rounds", type=int, default=3, help="each round runs both sides")
    args = parser.parse_args()
    print(f"bench.http: {args.alerts} alerts from {args.sources} sources, no worker (the ingest path only)")
    ratios = []
    for n in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="bench-http-") as folder:
            root = Path(folder)
            path = alerts_file(root / "alerts.ndjson", args.alerts, args.sources)
            with DevServer() as dev:
                submit = asyncio.run(run_submit(path, root / "submit", dev))
            with DevServer() as dev:
                http = asyncio.run(run_http(path, root / "http", dev, args.clients, args.batch))
            lost_submit = args.alerts - ledger_alerts(root / "submit")
            lost_http = args.alerts - ledger_alerts(root / "http")
        submit_rate, http_rate = args.alerts / submit.seconds, args.alerts / http.seconds
        quantiles = statistics.quantiles(http.latencies, n=100)
        ratios.append(http_rate / submit_rate)
        print(f"round {n}:")
        print(
            f"  autonomy submit: {submit_rate:8.0f} alerts/s ({submit.seconds:.2f} s), "
            f"{submit.signals} signals, lost {lost_submit}"
        )
        print(
            f"  HTTP ingest:     {http_rate:8.0f} alerts/s ({http.seconds:.2f} s), {http.signals} signals, "
            f"{args.clients} clients x {args.batch} records/request in {http.writes} ledger writes, "
            f"p50 {quantiles[49] * 1000:.0f} ms, "
            f"p99 {quantiles[98] * 1000:.0f} ms, lost {lost_http}"
        )
        submit_cpu, http_cpu = submit.cpu + submit.temporal_cpu, http.cpu + http.temporal_cpu
        print(
            f"  CPU s (ingest + Temporal): submit {submit.cpu:.2f} + {submit.temporal_cpu:.2f}, HTTP {http.cpu:.2f} + "
            f"{http.temporal_cpu:.2f} (+ clients {http.clients_cpu:.2f}): CPU ratio submit / HTTP "
            f"{submit_cpu / http_cpu:.2f}"
        )
        print(f"  ratio HTTP / submit: {ratios[-1]:.2f}")
    print(
        f"ratio HTTP / submit, median of {len(ratios)}: {statistics.median(ratios):.2f} "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.8)"
    )


if __name__ == "__main__":
    main()
