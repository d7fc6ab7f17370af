"""The demo's machinery: the whole loop, for real, on one machine, in a minute.

One embedded Temporal dev server (in memory) with a namespace per level, so the same incident key can run at
L1, L2 and L3 side by side without workflow ids colliding; per level a worker in this process with its own
state folder (ledger, tickets, reports), so each level's audit trail stands alone. notify.webhook posts to a
tiny HTTP receiver on 127.0.0.1, so notifications really leave the process and are counted on arrival.

Workflows that wait for a person (approval) or a timer (TTL revert) would wait for an hour: the demo never
awaits their results. It polls each incident's status until it is closed or parked on such a wait, writes a
snapshot report for the parked ones, and then stops the worker and the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from controller.config import Settings
from controller.ingest import DeadLetter, IngestReport, read_alerts
from controller.ledger import Ledger
from controller.models import Alert, Level
from controller.outcomes import IncidentEpisodes, outcomes
from controller.reports import write_incident_report
from controller.runtime import EngineName
from controller.scorecards import build_approver_cards, build_scorecards
from controller.scorecards_html import scorecards_page
from workflows.client import SubmitReport, Submitter, incident_status
from workflows.contracts import ActionStatus, IncidentStatus
from workflows.devserver import DevServer
from workflows.worker import connect, incident_worker

DEMO_CHANNEL = "soc-alerts"
"""The channel the shipped playbooks notify (workflows/playbooks/*.yaml)."""
PARKED = frozenset({ActionStatus.AWAITING_APPROVAL, ActionStatus.AWAITING_REVERT})
"""Statuses that wait for a person or a long timer: an incident whose actions all rest is done for the demo."""
MOVING = frozenset({ActionStatus.PLANNED, ActionStatus.EXECUTING})


@dataclass(frozen=True)
class Timings:
    settle_seconds: float = 0.5
    quiet_seconds: float = 1.0
    timeout_seconds: float = 90.0
    """Per level: how long to wait for incidents to close or park before reporting what is still moving."""


class WebhookReceiver:
    """A local HTTP endpoint that accepts JSON POSTs and keeps them: the demo's SOC chat channel."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    document: Any = json.loads(body)
                except ValueError:
                    document = body.decode("utf-8", "replace")
                with lock:
                    received.append({"path": self.path, "body": document})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
                pass  # the demo prints its own summary; no access log on the terminal

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{DEMO_CHANNEL}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def demo_environment(channels_file: Path) -> Iterator[None]:
    """Point notify.webhook at the demo's channels file and keep tickets inside each level's state folder,
    for the demo's duration only (the settings read these variables when used)."""
    saved = {name: os.environ.get(name) for name in ("AUTONOMY_CHANNELS_FILE", "AUTONOMY_TICKETS_DIR")}
    os.environ["AUTONOMY_CHANNELS_FILE"] = str(channels_file)
    os.environ.pop("AUTONOMY_TICKETS_DIR", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class IncidentOutcome:
    status: IncidentStatus
    report_markdown: str | None = None
    report_json: str | None = None
    snapshot: bool = False
    """The report was written by the demo from the ledger because the incident is still open (parked)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.status.model_dump(mode="json"),
            "report": {"markdown": self.report_markdown, "json": self.report_json, "snapshot": self.snapshot},
        }


@dataclass
class LevelRun:
    level: Level
    state_dir: Path
    ledger_url: str
    submitted: SubmitReport
    incidents: dict[str, IncidentOutcome] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)
    """Incidents still moving when the level's timeout struck."""


@dataclass
class DemoResult:
    root: Path
    levels: list[LevelRun]
    ingest: IngestReport
    webhook_url: str
    notifications: list[dict[str, Any]]
    alerts: int

    @property
    def scorecards_html(self) -> Path:
        return self.root / "scorecards.html"


def write_scorecards(result: DemoResult) -> None:
    """One scorecard page over every level's ledger: the demo's levels side by side."""
    incidents: list[IncidentEpisodes] = []
    for run in result.levels:
        with Ledger.from_url(run.ledger_url) as ledger:
            incidents.extend(outcomes(ledger))
    levels = ", ".join(run.level.value for run in result.levels)
    page = scorecards_page(build_scorecards(incidents), build_approver_cards(incidents), f"demo at {levels}")
    result.scorecards_html.write_text(page)


Progress = Callable[[Level, str, int, int], None]
"""(level, what is happening, done, total): the CLI turns it into a progress bar."""


def prepare_root(base: Settings) -> Path:
    """`<state_dir>/demo`, emptied: each demo run starts from nothing and leaves its trail for inspection."""
    root = base.state_dir / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def load_samples(files: list[Path], dead_letter: DeadLetter, report: IngestReport) -> list[Alert]:
    alerts: list[Alert] = []
    for path in files:
        alerts.extend(read_alerts(path, dead_letter=dead_letter, report=report))
    return alerts


def _resting(status: IncidentStatus) -> bool:
    """Closed, or every action rests and at least one waits on a person or a long timer."""
    if status.phase == "closed":
        return True
    if status.phase != "acting" or not status.actions:
        return False
    states = {a.status for a in status.actions}
    return not states & MOVING and bool(states & PARKED)


async def _watch(
    client: Any, keys: list[str], level: Level, timeout: float, progress: Progress
) -> tuple[dict[str, IncidentStatus], list[str]]:
    latest: dict[str, IncidentStatus] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for key in keys:
            if key in latest and _resting(latest[key]):
                continue
            try:
                latest[key] = await incident_status(client, key)
            except Exception:  # not started yet, or a transient RPC error: ask again next round
                continue
        done = sum(1 for k in keys if k in latest and _resting(latest[k]))
        progress(level, "running incidents", done, len(keys))
        if done == len(keys) or asyncio.get_running_loop().time() > deadline:
            return latest, [k for k in keys if not (k in latest and _resting(latest[k]))]
        await asyncio.sleep(0.2)


async def run_level(
    address: str,
    level: Level,
    settings: Settings,
    alerts: list[Alert],
    engine: EngineName,
    timings: Timings,
    progress: Progress,
) -> LevelRun:
    """One level: a worker on the level's namespace, every sample alert submitted at that level, watched
    until each incident closes or parks."""
    progress(level, "starting worker", 0, 1)
    client = await connect(address, namespace=namespace(level))
    async with incident_worker(client, settings, engine) as parts:
        submitter = Submitter(
            client,
            parts.ledger,
            level=level,
            settle_seconds=timings.settle_seconds,
            quiet_seconds=timings.quiet_seconds,
        )
        progress(level, "submitting alerts", 0, len(alerts))
        submitted = await submitter.add_all(alerts)
        keys = list(submitted.incidents)
        statuses, unsettled = await _watch(client, keys, level, timings.timeout_seconds, progress)
        run = LevelRun(level, settings.state_dir, settings.ledger_url, submitted, unsettled=unsettled)
        for key in keys:
            status = statuses.get(key) or IncidentStatus(key=key, phase="unknown", alert_count=0)
            outcome = IncidentOutcome(status)
            if status.report:
                outcome.report_markdown, outcome.report_json = status.report["markdown"], status.report["json"]
            else:  # still open: a snapshot from the ledger, which already holds every step taken so far
                paths = await asyncio.to_thread(write_incident_report, parts.ledger, key, settings.reports_dir)
                outcome.report_markdown, outcome.report_json, outcome.snapshot = (
                    str(paths.markdown),
                    str(paths.json),
                    True,
                )
            run.incidents[key] = outcome
        progress(level, "done", len(keys), len(keys))
    return run


def namespace(level: Level) -> str:
    return f"demo-{level.value.lower()}"


async def run_demo(
    base: Settings, levels: list[Level], engine: EngineName, timings: Timings, progress: Progress
) -> DemoResult:
    """The sample alerts through the real loop at each level, one level after the other."""
    root = prepare_root(base)
    ingest = IngestReport()
    alerts = load_samples(base.example_alert_files, DeadLetter(root / "dead-letter.jsonl"), ingest)
    channels_file = root / "channels.yaml"
    runs: list[LevelRun] = []
    with WebhookReceiver() as hook, demo_environment(channels_file):
        channels = {"channels": {DEMO_CHANNEL: {"url": hook.url, "timeout_seconds": 5}}}
        channels_file.write_text(yaml.safe_dump(channels))
        namespaces = [arg for lv in levels for arg in ("--namespace", namespace(lv))]
        server = DevServer(extra_args=namespaces, log_file=root / "temporal.log")
        await asyncio.to_thread(server.start)
        try:
            for level in levels:
                settings = replace(base, state_dir=root / level.value, ledger_url_override=None)
                runs.append(await run_level(server.address, level, settings, alerts, engine, timings, progress))
        finally:
            await asyncio.to_thread(server.stop)
        notifications = list(hook.received)
        url = hook.url
    result = DemoResult(root, runs, ingest, url, notifications, len(alerts))
    await asyncio.to_thread(write_scorecards, result)
    return result
