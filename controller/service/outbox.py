"""The ingest outbox: a 202 once the alerts are in the ledger; their signals go out in coalesced batches.

A request can only batch what it carries: 500 alerts from 200 sources are 200 signal-with-starts if each
request signals its own. Here a request's alerts go to the ledger and the request is answered; the signals
follow from one flusher shared by all requests, one per incident (`Submitter.signal`), many in flight at once.
The Submitter stays the one home of "ledger then signal": the outbox only decides when each half runs.

Both halves batch across requests, as `autonomy submit` batches across a file. The writes: requests that
arrive while a write runs wait for it, then go together in the next one (`Submitter.write`: one transaction,
one append per incident for all of them; a SQLite transaction's cost is mostly per incident, not per alert).
The signals: an incident is signalled once it holds `outbox_batch_alerts` (the Submitter's batch size), once
ingest is idle (no request in progress for `outbox_idle_seconds`), or once its oldest alert has waited
`outbox_max_delay_seconds`. A signal-with-start costs Temporal about the same for one alert as for a hundred,
so under sustained load this is what keeps the signals few (1 s is also `ingest --follow`'s flush interval);
a case waits `settle_seconds` (5 s) before it decides anyway. Signalled alerts are folded into the attacker
profiles once ingest is idle, else every `outbox_fold_seconds`.

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
import time
from collections.abc import Awaitable, Callable, Iterator
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
    incidents: dict[str, int]
    """Alerts per incident key (new and duplicate), as the 202 reports them."""


@dataclass
class _Queued:
    """One request's alerts waiting for the next write, and the request's answer once it is durable."""

    alerts: list[Alert]
    done: asyncio.Future[Accepted]


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
    since: dict[str, float] = field(default_factory=dict)
    """Per incident in `pending`, when (monotonic) its oldest pending alert was queued."""
    in_flight: dict[str, list[tuple[int, Alert]]] = field(default_factory=dict)
    written_through: int = 0
    """The highest ALERT seq this outbox wrote or recovered: the cursor once nothing is pending."""
    recovered: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _queued: list[_Queued] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None
    _requests: int = 0
    """Ingest requests in progress (`receiving`): while any is, the flusher waits for more to gather."""
    _last_request: float = float("-inf")
    _closing: bool = False
    _unfolded: int = 0
    """Alerts signalled since the last fold into the attacker profiles."""
    _folded_at: float = float("-inf")
    _saved_through: int | None = None
    _task: asyncio.Task[None] | None = None
    _submitter: Submitter | None = None

    @property
    def cursor_path(self) -> Path:
        return self.state_dir / CURSOR_FILE

    def backlog(self) -> int:
        return sum(len(v) for v in self.pending.values()) + sum(len(v) for v in self.in_flight.values())

    # -- the request's half: the ledger -------------------------------------------------------------------

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Marks an ingest request in progress, from its first byte to its answer (the flusher's idle test)."""
        self._requests += 1
        try:
            yield
        finally:
            self._requests -= 1
            self._last_request = time.monotonic()
            self._wake.set()

    async def accept(self, alerts: list[Alert]) -> Accepted:
        """Write `alerts` to the ledger and queue their signals; returns once they are durable.

        The write runs to its end even when the caller gives up waiting (a timeout answered 503): what was
        committed is queued all the same, so it is signalled, and the client's retry finds it a duplicate."""
        waiting = self.backlog() + sum(len(q.alerts) for q in self._queued)
        if waiting + len(alerts) > self.config.outbox_max_alerts:
            raise Backlogged(f"{waiting} alerts await their signal (outbox_max_alerts)")
        await self._submitter_now()  # Unavailable (503) now when Temporal is away, before anything is written
        queued = _Queued(alerts, asyncio.get_running_loop().create_future())
        self._queued.append(queued)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="ingest-writer")
        return await asyncio.shield(queued.done)

    async def _write_queued(self) -> None:
        """Write every queued request's alerts in one go, again until none waits. One writer at a time: seqs
        reach `pending` in the order they were written, and requests that queue meanwhile share the next."""
        while self._queued:
            merged, self._queued = self._queued, []
            try:
                submitter = await self._submitter_now()
                written = await asyncio.to_thread(_write, self.ledger, submitter, [q.alerts for q in merged])
            except Exception as exc:  # every request of the write is refused (503); none of it was acknowledged
                for queued in merged:
                    queued.done.set_exception(exc)
                continue
            self.metrics.writes.inc()
            now = time.monotonic()
            for key, entries in written.queued.items():
                self.pending.setdefault(key, []).extend(entries)
                self.since.setdefault(key, now)
            self.written_through = max(self.written_through, written.through)
            self.metrics.outbox.set(self.backlog())
            for queued, new, incidents in zip(merged, written.new, written.incidents, strict=True):
                queued.done.set_result(Accepted(new, incidents))
            self._wake.set()

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
        self._closing = True  # everything pending is due now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _drained(self) -> None:
        while self.backlog() or self._unfolded or not self.recovered.is_set():
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        while True:
            try:
                if not self.recovered.is_set():
                    await self._recover()
                    self.recovered.set()
                await self._flush(self._due())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Temporal or the ledger away: keep everything, try again shortly
                log.warning("ingest outbox: %s: %s (retrying)", type(exc).__name__, exc)
                await asyncio.sleep(self.config.outbox_retry_seconds)
                self._wake.set()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_due())
            self._wake.clear()

    def _idle(self, now: float) -> bool:
        """No ingest request in progress or queued, and none for `outbox_idle_seconds`."""
        quiet = now - self._last_request >= self.config.outbox_idle_seconds
        return not self._requests and not self._queued and quiet

    def _due(self) -> list[str]:
        """The incidents to signal now: all when ingest is idle (or closing), else those holding a full batch
        or waiting since `outbox_max_delay_seconds`."""
        now = time.monotonic()
        if self._closing or self._idle(now):
            return list(self.pending)
        oldest = now - self.config.outbox_max_delay_seconds
        full = self.config.outbox_batch_alerts
        return [key for key, entries in self.pending.items() if len(entries) >= full or self.since[key] <= oldest]

    def _next_due(self) -> float | None:
        """Seconds until the flusher must look again without being woken: the oldest incident's deadline, the
        fold's, the next idle test; None when nothing is owed (a write or a request's end wakes it)."""
        deadlines = []
        if self.pending:
            deadlines.append(min(self.since.values()) + self.config.outbox_max_delay_seconds)
        if self._unfolded:
            deadlines.append(self._folded_at + self.config.outbox_fold_seconds)
        if not deadlines:
            return None
        if not self._requests and not self._queued:
            deadlines.append(self._last_request + self.config.outbox_idle_seconds)
        return max(min(deadlines) - time.monotonic(), 0.0)

    async def _flush(self, keys: list[str]) -> None:
        if keys:
            await self._signal(keys)
        elif not self.pending:
            self._save_cursor()
        now = time.monotonic()
        fold_due = self._closing or self._idle(now) or now - self._folded_at >= self.config.outbox_fold_seconds
        if self._unfolded and fold_due:  # attacker profiles: they describe, no decision waits for them
            await asyncio.to_thread(track_batch, self.ledger)
            self._folded_at, self._unfolded = now, 0
            self.metrics.unfolded.set(0)

    async def _signal(self, keys: list[str]) -> None:
        submitter = await self._submitter_now()
        self.in_flight = {key: self.pending.pop(key) for key in keys}
        since = {key: self.since.pop(key) for key in keys}
        slots = asyncio.Semaphore(self.config.outbox_signals_in_flight)
        failures: list[BaseException] = []

        async def send(key: str, entries: list[tuple[int, Alert]]) -> None:
            async with slots:
                try:
                    await submitter.signal(key, [alert for _, alert in entries], [seq for seq, _ in entries])
                except Exception as exc:  # kept in flight: queued again below, the cycle retried
                    failures.append(exc)
                    return
            del self.in_flight[key]
            self.metrics.incidents.inc()
            self._unfolded += len(entries)
            self.metrics.unfolded.set(self._unfolded)

        try:
            await asyncio.gather(*(send(key, entries) for key, entries in list(self.in_flight.items())))
        finally:
            for key, entries in self.in_flight.items():  # not sent: back in front of what arrived meanwhile
                self.pending[key] = entries + self.pending.get(key, [])
                self.since[key] = since[key]
            self.in_flight = {}
            self.metrics.outbox.set(self.backlog())
        self._save_cursor()
        if failures:
            raise failures[0]

    # -- the cursor and the recovery ------------------------------------------------------------------------

    def signalled_through(self) -> int:
        waiting = [seq for entries in (*self.pending.values(), *self.in_flight.values()) for seq, _ in entries]
        return min(waiting) - 1 if waiting else self.written_through

    def _save_cursor(self) -> None:
        through = self.signalled_through()
        if through == self._saved_through:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.cursor_path.with_name(f".{CURSOR_FILE}.{os.getpid()}.tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump({"signalled_through": through}, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.cursor_path)
        self._saved_through = through

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
                self.since.setdefault(key, time.monotonic())
                queued += len(fresh)
        self.written_through = max(self.written_through, after)
        if found:
            total = sum(len(v) for v in found.values())
            log.warning("ingest outbox: %d alerts after seq %d, %d queued again", total, through, queued)
        self._wake.set()


@dataclass(frozen=True)
class _Written:
    new: list[list[Alert]]
    """Per request, its alerts new to the ledger (an alert two requests carry is new to the first only)."""
    incidents: list[dict[str, int]]
    """Per request, its alerts (new and duplicate) per incident key."""
    queued: dict[str, list[tuple[int, Alert]]]
    """Per incident, (seq, alert) of the new alerts: what the flusher is to signal."""
    through: int
    """The highest seq written (or found)."""


def _write(ledger: Ledger, submitter: Submitter, requests: list[list[Alert]]) -> _Written:
    """Several requests' alerts in one `Submitter.write` (one transaction, one append per incident), each
    alert once; which of them the ledger held before is read first, in one query per 500 keys."""
    batches: dict[str, list[tuple[str, Alert]]] = {}
    owner: dict[str, int] = {}
    """Record key -> the request that carries the alert first."""
    incidents: list[dict[str, int]] = [{} for _ in requests]
    for n, alerts in enumerate(requests):
        counts = incidents[n]
        for alert in alerts:
            incident = incident_key(alert)
            counts[incident] = counts.get(incident, 0) + 1
            key = alert_record_key(alert)
            if key not in owner:
                owner[key] = n
                batches.setdefault(incident, []).append((key, alert))
    held = _existing(ledger, list(owner))
    records = submitter.write({key: [alert for _, alert in entries] for key, entries in batches.items()})
    new: list[list[Alert]] = [[] for _ in requests]
    queued: dict[str, list[tuple[int, Alert]]] = {}
    through = 0
    for incident, entries in batches.items():
        for (key, alert), record in zip(entries, records[incident], strict=True):
            if key not in held:
                new[owner[key]].append(alert)
                queued.setdefault(incident, []).append((record.seq, alert))
            through = max(through, record.seq)
    return _Written(new, incidents, queued, through)


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
