"""The ingest outbox: a 202 once the alerts are in the ledger; their signals go out in coalesced batches.

A request can only batch what it carries: 500 alerts from 200 sources are 200 signal-with-starts if each
request signals its own. Here a request writes its alerts to the ledger (every incident's in one transaction,
`Submitter.write`) and is answered; one flusher shared by all requests sends what has gathered meanwhile, one
signal per incident (`Submitter.signal`), many in flight at once. The Submitter stays the one home of "ledger
then signal": the outbox only decides when the second half runs.

A crash between the two halves loses nothing. The outbox keeps `<state dir>/http-outbox.json`:
`signalled_through`, a ledger seq such that every ALERT record the service wrote up to it has been signalled
(written after each flush, fsynced, renamed into place, so it is never ahead of the truth). At start-up the
flusher first reads the ALERT records after it and signals again those no workflow has seen: an incident with
a running workflow gets them all (the workflow dedups by alert id), one whose latest run closed gets only the
ids its history never received (a closed run's signal would start a new run), an incident without a workflow
gets a signal-with-start. Without the file (the first start), the ledger's head is the starting point.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from autonomy_controller.controller.attackers import track_batch
from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.ledger import Ledger, RecordKind, schema
from autonomy_controller.controller.ledger.engine import read_snapshot
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.service.config import ServiceConfig
from autonomy_controller.controller.service.metrics import Metrics
from autonomy_controller.workflows.client import Submitter, alert_record_key
from autonomy_controller.workflows.contracts import AlertBatch

log = logging.getLogger(__name__)
CURSOR_FILE = "http-outbox.json"
PAGE = 5000


class Backlogged(RuntimeError):
    """The outbox holds too many unsignalled alerts (Temporal slow or down): refuse new ones (503)."""


@dataclass(frozen=True)
class Accepted:
    new: list[Alert]
    """The alerts the ledger did not hold before (nor an earlier record of the same body)."""


@dataclass
class Outbox:
    ledger: Ledger
    config: ServiceConfig
    state_dir: Path
    metrics: Metrics
    client: Callable[[], Awaitable[Client]]
    """The service's Temporal client getter (Unavailable while Temporal cannot be reached)."""
    pending: dict[str, list[tuple[int, Alert]]] = field(default_factory=dict)
    """Per incident, (ledger seq, alert) in the ledger and not yet signalled."""
    in_flight: dict[str, list[tuple[int, Alert]]] = field(default_factory=dict)
    written_through: int = 0
    """The highest ALERT seq this outbox wrote or recovered: the cursor once nothing is pending."""
    recovered: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _task: asyncio.Task[None] | None = None
    _submitter: Submitter | None = None

    @property
    def cursor_path(self) -> Path:
        return self.state_dir / CURSOR_FILE

    def backlog(self) -> int:
        return sum(len(v) for v in self.pending.values()) + sum(len(v) for v in self.in_flight.values())

    # -- the request's half: the ledger -------------------------------------------------------------------

    async def accept(self, alerts: list[Alert]) -> Accepted:
        """Write `alerts` to the ledger and queue their signals; returns once they are durable.

        The write runs to its end even when the caller gives up waiting (a timeout answered 503): what was
        committed is queued all the same, so it is signalled, and the client's retry finds it a duplicate."""
        if self.backlog() + len(alerts) > self.config.outbox_max_alerts:
            raise Backlogged(f"{self.backlog()} alerts await their signal (outbox_max_alerts)")
        submitter = await self._submitter_now()
        write = asyncio.ensure_future(self._write(submitter, alerts))
        return await asyncio.shield(write)

    async def _write(self, submitter: Submitter, alerts: list[Alert]) -> Accepted:
        batches: dict[str, list[Alert]] = {}
        seen: set[str] = set()
        for alert in alerts:
            key = alert_record_key(alert)
            if key not in seen:
                seen.add(key)
                batches.setdefault(incident_key(alert), []).append(alert)
        async with self._writing:  # one write at a time: seqs reach the queue in the order they were given
            held = await asyncio.to_thread(_existing, self.ledger, list(seen))
            written = await asyncio.to_thread(submitter.write, batches)
            new: list[Alert] = []
            for key, records in written.items():
                for alert, record in zip(batches[key], records, strict=True):
                    if alert_record_key(alert) not in held:
                        new.append(alert)
                        self.pending.setdefault(key, []).append((record.seq, alert))
                    self.written_through = max(self.written_through, record.seq)
            self.metrics.outbox.set(self.backlog())
        self._wake.set()
        return Accepted(new)

    async def _submitter_now(self) -> Submitter:
        client = await self.client()
        if self._submitter is None or self._submitter.client is not client:
            self._submitter = Submitter(
                client,
                self.ledger,
                level=self.config.level,
                settle_seconds=self.config.settle_seconds,
                quiet_seconds=self.config.quiet_seconds,
            )
        return self._submitter

    # -- the flusher's half: the signals -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingest-outbox")

    async def close(self, drain_seconds: float = 5.0) -> None:
        """Send what is pending (for at most `drain_seconds`), then stop; the rest is recovered at next start."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _drained(self) -> None:
        while self.backlog() or not self.recovered.is_set():
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        while True:
            try:
                if not self.recovered.is_set():
                    await self._recover()
                    self.recovered.set()
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Temporal or the ledger away: keep everything, try again shortly
                log.warning("ingest outbox: %s: %s (retrying)", type(exc).__name__, exc)
                await asyncio.sleep(self.config.outbox_retry_seconds)
                self._wake.set()
                continue
            await self._wake.wait()
            self._wake.clear()

    async def _flush(self) -> None:
        if not self.pending:
            self._save_cursor()
            return
        submitter = await self._submitter_now()
        self.in_flight, self.pending = self.pending, {}
        slots = asyncio.Semaphore(self.config.outbox_signals_in_flight)
        failures: list[BaseException] = []

        async def send(key: str, entries: list[tuple[int, Alert]]) -> None:
            async with slots:
                try:
                    await submitter.signal(key, [alert for _seq, alert in entries])
                except Exception as exc:  # kept in flight: queued again below, the cycle retried
                    failures.append(exc)
                    return
            del self.in_flight[key]
            self.metrics.incidents.inc()

        try:
            await asyncio.gather(*(send(key, entries) for key, entries in list(self.in_flight.items())))
        finally:
            for key, entries in self.in_flight.items():  # not sent: back in front of what arrived meanwhile
                self.pending[key] = entries + self.pending.get(key, [])
            self.in_flight = {}
            self.metrics.outbox.set(self.backlog())
        self._save_cursor()
        await asyncio.to_thread(track_batch, self.ledger)  # attacker profiles: once per flush, not per signal
        if failures:
            raise failures[0]

    # -- the cursor and the recovery ------------------------------------------------------------------------

    def signalled_through(self) -> int:
        waiting = [seq for entries in (*self.pending.values(), *self.in_flight.values()) for seq, _ in entries]
        return min(waiting) - 1 if waiting else self.written_through

    def _save_cursor(self) -> None:
        through = self.signalled_through()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.cursor_path.with_name(f".{CURSOR_FILE}.{os.getpid()}.tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump({"signalled_through": through}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.cursor_path)

    def _load_cursor(self) -> int | None:
        try:
            document = json.loads(self.cursor_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        through = document.get("signalled_through") if isinstance(document, dict) else None
        if not isinstance(through, int) or through < 0:  # fail closed: an unreadable cursor is no cursor at all
            raise ValueError(f"{self.cursor_path}: no signalled_through seq in it")
        return through

    async def _recover(self) -> None:
        """Queue again the ALERT records after the cursor that no workflow has seen (see the module doc)."""
        through = await asyncio.to_thread(self._load_cursor)
        if through is None:
            self.written_through = max(self.written_through, (await asyncio.to_thread(self.ledger.head)).seq)
            self._save_cursor()
            return
        found: dict[str, list[tuple[int, Alert]]] = {}
        after = through
        while True:
            page = await asyncio.to_thread(self.ledger.excerpts, after, [RecordKind.ALERT], list(Alert.model_fields))
            for record in page.records:
                alert = Alert.model_validate({k: v for k, v in record.payload.items() if v is not None})
                found.setdefault(record.incident_key, []).append((record.seq, alert))
            after = page.through
            if not page.more:
                break
        client = await self.client()
        queued = 0
        for key, entries in found.items():
            seen = await _seen_by_latest_closed_run(client, key)
            fresh = [(seq, alert) for seq, alert in entries if alert.id not in seen]
            if fresh:
                self.pending[key] = fresh + self.pending.get(key, [])
                queued += len(fresh)
        self.written_through = max(self.written_through, after)
        if found:
            total = sum(len(v) for v in found.values())
            log.warning("ingest outbox: %d alerts after seq %d, %d queued again", total, through, queued)
        self._wake.set()


def _existing(ledger: Ledger, keys: list[str]) -> set[str]:
    """The idempotency keys among `keys` the ledger holds: one query per request, not one per alert."""
    held: set[str] = set()
    column = schema.records.c.idempotency_key
    with read_snapshot(ledger.engine) as conn:
        for i in range(0, len(keys), 500):
            held.update(conn.execute(select(column).where(column.in_(keys[i : i + 500]))).scalars())
    return held


async def _seen_by_latest_closed_run(client: Client, key: str) -> set[str]:
    """Alert ids the incident's latest run received, when that run has closed (a signal would start a new run
    and decide again); empty when it runs (it dedups by id itself) or no workflow exists."""
    handle = client.get_workflow_handle(key)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return set()
        raise
    if description.status is WorkflowExecutionStatus.RUNNING:
        return set()
    seen: set[str] = set()
    run = client.get_workflow_handle(key, run_id=description.run_id)
    async for event in run.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            continue
        signalled = event.workflow_execution_signaled_event_attributes
        if signalled.signal_name != "add_alerts":
            continue
        batch = (await client.data_converter.decode(signalled.input.payloads, [AlertBatch]))[0]
        seen.update(alert.id for alert in batch.alerts)
    return seen


def group(alerts: Iterable[Alert]) -> dict[str, int]:
    """Alerts per incident key (new and duplicate), as the 202 reports them."""
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[incident_key(alert)] = counts.get(incident_key(alert), 0) + 1
    return counts
