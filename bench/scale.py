"""The production topology's scale figures: incidents/s on a real Temporal cluster, with 1 and 2 worker processes,
the ledger on SQLite and on PostgreSQL, next to a bare workflow on the same cluster and workers.

The cluster is the one the topology test runs (workflows/cluster.py): the Temporal server built from source, its
persistence on PostgreSQL, mTLS on its frontend. Workers are separate processes (`python -m bench.scale worker`)
configured the way docs/deploy.md says (AUTONOMY_TEMPORAL_*, AUTONOMY_LEDGER_URL), each also serving the bare
workflow of bench/bare.py. Per configuration, N incidents go through the whole loop (bench/loop.py's
`loop_throughput`: plan, guard, pre-flight, act, verify, TTL revert, report; durable timers skipped by the
server's time skipping), then N bare workflows of the same shape. CPU milliseconds per incident of the workers, the
Temporal server and this process (the submitter, which writes alerts to the ledger) say where the time goes.

All figures come from one run; nothing here passes or fails. A figure that cannot be measured says why.
Run: `make bench` or `AUTONOMY_TEST_POSTGRES_URL=... .venv/bin/python -m bench.scale [--incidents N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import TimeSkipper, TimeSkippingConfig
from temporalio.worker import Worker

from autonomy_controller.actions.adapters.base import Adapter
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.ledger.engine import private_schema
from autonomy_controller.workflows.cluster import TemporalServer, built, wait_pollers, wait_serving
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.contracts import TASK_QUEUE
from autonomy_controller.workflows.worker import connect, incident_worker
from bench.bare import BareWorkflow, bare_noop
from bench.loop import MemoryFirewall, bare_throughput, isolated_settings, loop_throughput

BARE_QUEUE = "bench-bare"
FIREWALL_ACTIONS = ("network.block_ip", "network.unblock_ip")
WARM_UP = 5
"""Incidents run through fresh workers before measuring (first workflow tasks, connections, the sandbox's imports)."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- a worker process --------------------------------------------------------------------------------------------


async def serve_worker() -> None:
    """One worker process: the incident worker (settings and connection from AUTONOMY_*) and the bare workflow."""
    blocked: set[str] = set()
    firewall: dict[str, Adapter] = {name: MemoryFirewall(name, blocked) for name in FIREWALL_ACTIONS}
    client = await connect(TemporalConnection.resolve())
    bare = Worker(client, task_queue=BARE_QUEUE, workflows=[BareWorkflow], activities=[bare_noop])
    async with incident_worker(client, Settings(), extra_adapters=firewall), bare:
        print("worker ready", flush=True)
        await asyncio.Event().wait()


# -- the run -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    workers: int
    ledger: str
    loop_rate: float
    bare_rate: float
    cpu_per_incident: dict[str, float]
    """CPU ms per incident of the loop: workers, temporal server, submitter."""


class Workers:
    """N worker processes with one environment; stopped (and their CPU read) on exit."""

    def __init__(self, count: int, env: dict[str, str], logs: Path) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.scale", "worker"],
                cwd=REPO_ROOT,
                env=env,
                stdout=(logs / f"worker-{n}.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            for n in range(count)
        ]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def measure(
    server: TemporalServer,
    client: Client,
    settings: Settings,
    workers: int,
    ledger: str,
    url: str,
    incidents: int,
    round_: int,
    logs: Path,
) -> Figure:
    env = {
        **os.environ,
        **server.client_env(),
        "AUTONOMY_LEVELS_DIR": str(settings.levels_dir),
        "AUTONOMY_POLICIES_DIR": str(settings.policies_dir),
        "AUTONOMY_STATE_DIR": str(settings.state_dir),
        "AUTONOMY_LEDGER_URL": url,
    }
    running = Workers(workers, env, logs)
    try:
        await wait_pollers(client, TASK_QUEUE, workers)
        await wait_pollers(client, BARE_QUEUE, workers)
        assert server.process is not None
        measured = replace(settings, ledger_url_override=url)
        await loop_throughput(client, measured, WARM_UP, 1000 + round_)  # sources apart from the measured rounds'
        before = (running.cpu(), cpu_seconds(server.process.pid), time.process_time())
        loop_rate, shape = await loop_throughput(client, measured, incidents, round_)
        after = (running.cpu(), cpu_seconds(server.process.pid), time.process_time())
        cpu = {
            name: (end - start) * 1000 / incidents
            for name, start, end in zip(("workers", "temporal", "submitter"), before, after, strict=True)
        }
        bare = await bare_throughput(client, incidents, shape, BARE_QUEUE, round_)
    finally:
        running.stop()
    return Figure(workers, ledger, loop_rate, bare, cpu)


async def run(incidents: int, postgres_url: str) -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        settings = isolated_settings(tmp)
        server = TemporalServer.time_skipping(tmp, postgres_url)
        server.setup_schema()
        try:
            server.start()
            raw = await wait_serving(server, server.client_connection())
            client = TimeSkipper(raw, config=TimeSkippingConfig(enabled=True)).client
            with private_schema(postgres_url, "bench_scale") as pg_url:
                urls = {"sqlite": f"sqlite:///{tmp / 'ledger.db'}", "postgresql": pg_url}
                for ledger, url in urls.items():
                    Ledger.from_url(url).close()  # its tables, before two workers race to create them
                    for workers in (1, 2):
                        figure = await measure(
                            server, client, settings, workers, ledger, url, incidents, len(figures) + 1, tmp
                        )
                        figures.append(figure)
                        print_figure(figure)
        finally:
            server.stop()
            server.drop()
    return figures


def print_figure(f: Figure) -> None:
    bare = f"bare {f.bare_rate:6.1f} workflows/s, ratio {f.loop_rate / f.bare_rate:.2f}"
    cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in f.cpu_per_incident.items())
    total = sum(f.cpu_per_incident.values())
    print(f"  {f.workers} worker(s), {f.ledger:>10} ledger: loop {f.loop_rate:6.1f} incidents/s  {bare}")
    print(
        f"      CPU ms per incident: {cpu} (PostgreSQL's own not counted); {total:.0f} ms in all: "
        f"at most {CORES * 1000 / total:.1f} incidents/s on this machine's {CORES} cores"
    )


def summary(figures: list[Figure]) -> None:
    by = {(f.workers, f.ledger): f for f in figures}
    print("ratios:")
    for ledger in ("sqlite", "postgresql"):
        one, two = by.get((1, ledger)), by.get((2, ledger))
        if one and two:
            print(f"  2 workers / 1 worker, {ledger} ledger: {two.loop_rate / one.loop_rate:.2f}x")
    for workers in (1, 2):
        lite, pg = by.get((workers, "sqlite")), by.get((workers, "postgresql"))
        if lite and pg:
            print(f"  PostgreSQL / SQLite ledger, {workers} worker(s): {pg.loop_rate / lite.loop_rate:.2f}x")


def main(incidents: int) -> None:
    if not built():
        print("bench.scale skipped: the Temporal server is not built (`make temporal-server`, needs Go)")
        return
    postgres_url = os.environ.get("AUTONOMY_TEST_POSTGRES_URL")
    if not postgres_url:
        print("bench.scale skipped: no PostgreSQL for the cluster (AUTONOMY_TEST_POSTGRES_URL; `bash .ci/postgres.sh`)")
        return
    print(f"scale on a real Temporal cluster (v1.32.0 from source, PostgreSQL, mTLS), {incidents} incidents each")
    summary(asyncio.run(run(incidents, postgres_url)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(serve_worker())
    else:
        parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--incidents", type=int, default=100)
        main(parser.parse_args().incidents)
