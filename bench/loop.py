"""The incident loop on Temporal: throughput next to a bare workflow, grouping of a storm, unloaded latency.

Three figures, each from one run on one embedded dev server (in memory), worker in this process:

1. incidents/s through the whole loop (alerts written to the ledger and signalled, attacker profiles folded,
   triage, plan, guard, pre-flight, act, verify, TTL revert, report; ledger on SQLite) next to a bare workflow
   that runs the same number of activities, local activities, patches and timers of no work, started the same
   way; the ratio is what our steps cost on top of Temporal's own (target >= 0.7). An incident is one
   attacker's burst of BURST WAF alerts, which triage calls malicious, so L3 blocks alone (ticket and notify
   run too). The CPU split (worker process, dev server) says where the difference is spent.
2. 10,000 alerts from 50 sources become <= 100 workflows, and every alert is attached (0 lost).
3. unloaded alert burst -> block verified latency, p50 and p95 over `--runs` incidents.
Then how well the ledger's group commit batched (appends per transaction, so per fsync) over the whole run.

Durable timers (settle, quiet, the 1 h TTL) are skipped with the dev server's time skipping, in both runs.
Run: `make bench` or `.venv/bin/python -m bench.loop [--incidents N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import TimeSkipper, TimeSkippingConfig
from temporalio.worker import Worker

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, ActionStatus, Adapter, VerifyOutcome
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, Category, Level, Provenance, Severity
from autonomy_controller.controller.processes import free_port
from autonomy_controller.workflows.client import SIGNALS_IN_FLIGHT, Submitter, incident_handle
from autonomy_controller.workflows.devserver import TIME_SKIPPING_FLAG, DevServer
from autonomy_controller.workflows.worker import connect, incident_worker, settle_heap
from bench.bare import BareWorkflow, bare_noop


class MemoryFirewall:
    """An enforcement point with no I/O, so the bench measures the loop, not a firewall."""

    def __init__(self, action: str, blocked: set[str]) -> None:
        self.action = action
        self.blocked = blocked

    def execute(self, request: ActionRequest) -> ActionOutcome:
        ip = str(request.params["ip"])
        (self.blocked.add if self.action == "network.block_ip" else self.blocked.discard)(ip)
        return ActionOutcome(status=ActionStatus.DONE, detail=self.action)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        present = str(request.params["ip"]) in self.blocked
        return VerifyOutcome(ok=present == (self.action == "network.block_ip"), detail="read back")


# One request of a tool-driven attack as ModSecurity v3 logs it (triage reads these rule facts): a burst of
# BURST of them is what triage calls malicious, so L3 blocks alone and the whole loop runs (a single alert
# waits for a person, and the bench would measure a loop that never acts).
WAF_RAW = {
    "transaction": {
        "messages": [
            {"message": text, "details": {"ruleId": rule, "severity": "2", "tags": ["paranoia-level/1", tag]}}
            for rule, text, tag in (
                ("942100", "SQL Injection Attack Detected via libinjection", "attack-sqli"),
                ("941100", "XSS Attack Detected via libinjection", "attack-xss"),
                ("932100", "Remote Command Execution: Unix Command Injection", "attack-rce"),
            )
        ]
        + [{"message": "Inbound Anomaly Score Exceeded (Total Score: 15)", "details": {"ruleId": "949110"}}],
        "response": {"http_code": 403},
    }
}
BURST = 10


def attack(n: int, source: str, category: Category = Category.SQLI) -> Alert:
    return Alert(
        id=f"bench-{source}-{n}",
        source="modsecurity3",
        provenance=Provenance.SENSOR,  # as the ModSecurity v3 adapter gives it
        observed_at=datetime(2026, 11, 23, tzinfo=UTC) + timedelta(milliseconds=n),
        category=category,
        severity=Severity.CRITICAL,
        confidence=0.9,
        src_ip=source,
        dst_ip="198.51.100.1",
        rule_ids=["942100", "941100", "932100", "949110"],
        blocked=True,
        src_connected=True,  # an HTTP request, as the adapter says
        evidence="GET /?id=1' OR 1=1--",
        raw=WAF_RAW,
    )


def burst(source: str) -> list[Alert]:
    """One attacker's incident: BURST alerts, one batch, one signal."""
    return [attack(n, source) for n in range(BURST)]


ROUNDS = 5
"""Loop and bare rounds, alternated; the figure is their ratios' median (one round moves by +-0.05 on this shared
machine, and a median of three moved with it)."""
LOCAL_ACTIVITY_MARKER, PATCH_MARKER = "core_local_activity", "core_patch"  # what sdk-core names its markers
LATENCY_WAIT_S = 60


def cpu_seconds(server_pid: int | None) -> tuple[float, float]:
    """CPU time (user + system) so far of this process (worker, submitter) and of the dev server."""
    server = 0.0
    if server_pid is not None:
        fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return time.process_time(), server


def source(n: int) -> str:
    return f"198.18.{n // 250}.{n % 250 + 1}"


def isolated_settings(tmp: Path) -> Settings:
    base = Settings()
    shutil.copytree(base.levels_dir, tmp / "levels")
    shutil.copytree(base.policies_dir, tmp / "policies")
    (tmp / "levels" / "L3.yaml").write_text(
        (tmp / "levels" / "L3.yaml").read_text().split("budgets:")[0]  # no blast-radius caps in a throughput run
    )
    # The bench's sources are RFC 2544's benchmarking range, which the shipped policy never blocks (a source
    # there is spoofed or a lab of ours): this copy lets it, so every incident blocks, verifies and reverts.
    special = tmp / "policies" / "special_purpose" / "data.yaml"
    text = special.read_text()
    benchmarking = text.index("198.18.0.0/15:")
    text = text[:benchmarking] + text[benchmarking:].replace("decision: deny", "decision: allow", 1)
    special.write_text(text)
    return replace(base, levels_dir=tmp / "levels", policies_dir=tmp / "policies", state_dir=tmp / "var")


async def loop_throughput(client: Client, settings: Settings, incidents: int, round_: int) -> tuple[float, list[int]]:
    submitter = Submitter(client, _ledger(settings), level=Level.L3, settle_seconds=0, quiet_seconds=0)
    started = time.perf_counter()
    report = await submitter.add_all(a for n in range(incidents) for a in burst(source(n + round_ * incidents)))
    await asyncio.gather(*(incident_handle(client, key).result() for key in report.incidents))
    elapsed = time.perf_counter() - started
    history = await incident_handle(client, next(iter(report.incidents))).fetch_history()
    scheduled = sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    timers = sum(1 for e in history.events if e.HasField("timer_started_event_attributes"))
    return incidents / elapsed, [scheduled, markers.count(LOCAL_ACTIVITY_MARKER), markers.count(PATCH_MARKER), timers]


async def bare_throughput(client: Client, incidents: int, shape: list[int], task_queue: str, round_: int) -> float:
    started = time.perf_counter()
    slots = asyncio.Semaphore(SIGNALS_IN_FLIGHT)  # started as the Submitter signals: that many calls at once

    async def start(n: int) -> WorkflowHandle[Any, int]:
        async with slots:
            return await client.start_workflow(BareWorkflow.run, shape, id=f"bare-{round_}-{n}", task_queue=task_queue)

    handles = await asyncio.gather(*(start(n) for n in range(incidents)))
    await asyncio.gather(*(h.result() for h in handles))
    return incidents / (time.perf_counter() - started)


def queued_activity_tasks(metrics_port: int) -> float:
    """Activity tasks the dev server has put in a task queue for a poller to match, from its Prometheus metrics.
    An activity dispatched eagerly (with the workflow task's answer, while the worker has a free slot) is not one."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("service_requests{") and 'operation="AddActivityTask"' in line
    )


def _ledger(settings: Settings) -> Ledger:
    return Ledger.from_url(settings.ledger_url)


async def storm_grouping(client: Client, settings: Settings, alerts: int, sources: int) -> dict[str, float]:
    submitter = Submitter(client, _ledger(settings), level=Level.L1, settle_seconds=1, quiet_seconds=2)
    started = time.perf_counter()
    storm = (attack(n, f"192.0.2.{n % sources + 1}", Category.SCANNER) for n in range(alerts))
    report = await submitter.add_all(storm)
    submitted = time.perf_counter() - started
    finals = await asyncio.gather(*(incident_handle(client, key).result() for key in report.incidents))
    attached = sum(f.alert_count for f in finals)
    ledger = _ledger(settings)
    recorded = sum(len(ledger.records(key, [RecordKind.ALERT])) for key in report.incidents)
    return {
        "alerts": alerts,
        "workflows": len(report.incidents),
        "signals": report.signals,
        "attached": attached,
        "in_ledger": recorded,
        "lost": alerts - attached,
        "submit_alerts_per_s": alerts / submitted,
    }


async def unloaded_latency(client: Client, settings: Settings, runs: int) -> list[float]:
    ledger = _ledger(settings)
    latencies = []
    for n in range(runs):
        key_source = f"198.19.0.{n + 1}"
        submitter = Submitter(client, ledger, level=Level.L3, settle_seconds=0, quiet_seconds=0)
        submitted = datetime.now(UTC)
        (key,) = (await submitter.add_all(burst(key_source))).incidents
        deadline = time.monotonic() + LATENCY_WAIT_S
        while True:
            done = [
                r
                for r in ledger.records(key, [RecordKind.VERIFICATION])
                if r.payload.get("action") == "network.block_ip" and r.payload.get("ok")
            ]
            if done:
                latencies.append((done[0].created_at - submitted).total_seconds() * 1000)
                break
            if time.monotonic() > deadline:  # the loop did not block (a policy or triage change): say so, not hang
                status = await incident_handle(client, key).query("status")
                raise SystemExit(f"{key}: no verified block after {LATENCY_WAIT_S} s: {status}")
            await asyncio.sleep(0.005)
        await incident_handle(client, key).result()
    return latencies


async def main(incidents: int, storm_alerts: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(Path(tmp))
        blocked: set[str] = set()
        firewall: dict[str, Adapter] = {
            name: MemoryFirewall(name, blocked) for name in ("network.block_ip", "network.unblock_ip")
        }
        metrics_port = free_port()
        with DevServer(extra_args=[*TIME_SKIPPING_FLAG, "--metrics-port", str(metrics_port)]) as server:
            raw = await connect(server.address)
            client = TimeSkipper(raw, config=TimeSkippingConfig(enabled=True)).client
            async with incident_worker(raw, settings, extra_adapters=firewall) as parts:
                settle_heap()  # as `autonomy worker` does
                bare_worker = Worker(raw, task_queue="bare", workflows=[BareWorkflow], activities=[bare_noop])
                async with bare_worker:
                    ratios, cpu_ratios, queued = [], [], []
                    server_pid = server.process.pid if server.process else None
                    print(f"loop vs bare, {incidents} incidents per round, same dev server and worker process")
                    for round_ in range(1, ROUNDS + 1):  # alternate, so drift on a shared machine hits both
                        before, tasks_before = cpu_seconds(server_pid), queued_activity_tasks(metrics_port)
                        loop_rate, shape = await loop_throughput(client, settings, incidents, round_)
                        between, tasks_between = cpu_seconds(server_pid), queued_activity_tasks(metrics_port)
                        bare_rate = await bare_throughput(client, incidents, shape, "bare", round_)
                        after, tasks_after = cpu_seconds(server_pid), queued_activity_tasks(metrics_port)
                        queued.append(
                            ((tasks_between - tasks_before) / incidents, (tasks_after - tasks_between) / incidents)
                        )
                        # ms per incident: (worker process, dev server)
                        loop_ms = [(b - a) * 1000 / incidents for a, b in zip(before, between, strict=True)]
                        bare_ms = [(b - a) * 1000 / incidents for a, b in zip(between, after, strict=True)]
                        loop_cpu, bare_cpu = sum(loop_ms), sum(bare_ms)
                        ratios.append(loop_rate / bare_rate)
                        cpu_ratios.append(bare_cpu / loop_cpu)
                        print(
                            f"  round {round_}: whole loop {loop_rate:6.1f} incidents/s, bare {bare_rate:6.1f} "
                            f"workflows/s, ratio {loop_rate / bare_rate:.2f}; CPU per incident "
                            f"{loop_cpu:.0f} ms vs {bare_cpu:.0f} ms (worker {loop_ms[0]:.0f} vs {bare_ms[0]:.0f} + "
                            f"dev server {loop_ms[1]:.0f} vs {bare_ms[1]:.0f}), ratio {bare_cpu / loop_cpu:.2f}"
                        )
                    print(
                        f"  one incident = {shape[0]} activities, {shape[1]} local activities, {shape[2]} patches, "
                        f"{shape[3]} timers"
                    )
                    print(
                        f"  activities through the server's task queue per incident (not dispatched eagerly): loop "
                        f"{statistics.mean(q[0] for q in queued):.2f}, bare {statistics.mean(q[1] for q in queued):.2f}"
                    )
                    print(f"  ratio loop/bare median of {ROUNDS} = {statistics.median(ratios):.2f}  (target >= 0.7)")
                    print(
                        f"  CPU ratio bare/loop median of {ROUNDS} = {statistics.median(cpu_ratios):.2f}  (the same "
                        "comparison in CPU spent, which a loaded machine moves less than wall-clock rates)"
                    )
                    storm = await storm_grouping(raw, settings, storm_alerts, 50)
                    print(f"alert storm: {storm_alerts} alerts from 50 sources")
                    for name, value in storm.items():
                        print(f"  {name:>20}: {value:,.1f}" if isinstance(value, float) else f"  {name:>20}: {value:,}")
                    latencies = await unloaded_latency(client, settings, runs)
                    q = statistics.quantiles(latencies, n=20)
                    print(
                        f"unloaded alert -> block verified, {runs} runs: p50 {statistics.median(latencies):.0f} ms, "
                        f"p95 {q[18]:.0f} ms, min {min(latencies):.0f} ms"
                    )
                    watch = parts.guards.watch
                    print(
                        f"guard reloads during the run: {parts.guards.reloads}; config read {watch.rescans} time(s) "
                        f"({'inotify' if watch.watching else 'a stat per file on every use'})"
                    )
                    commits = parts.ledger.committer
                    print(
                        f"ledger group commit: {commits.requests:,} appends in {commits.transactions:,} transactions "
                        f"({commits.requests / max(commits.transactions, 1):.2f} per fsync)"
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=100)
    parser.add_argument("--storm-alerts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.incidents, args.storm_alerts, args.runs))
