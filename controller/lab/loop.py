"""The loop on the lab, in one process: what the end-to-end tests and the benchmark drive.

`autonomy lab up` runs Temporal, the worker and the follow ingest as separate processes, which is right for a
person watching. A test needs control over time instead: the TTL revert is an hour away, and waiting for it is
not an option. So here the same parts run in-process: a Temporal dev server with time skipping (a workflow's
clock can be fast-forwarded), a worker (`incident_worker`) whose enforcement file is the lab's, and the
follow ingest (`Follower`) either once per call or in the background. The WAF, the namespaces, nft and curl
stay real: only who starts the Python parts changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import TimeSkipper

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.lab.lab import Lab, LabError
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.reports import write_incident_report
from autonomy_controller.workflows.client import Submitter, incident_handle, incident_status
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, IncidentStatus
from autonomy_controller.workflows.devserver import TIME_SKIPPING_FLAG, DevServer
from autonomy_controller.workflows.follow import Flush, Follower, LineSource, OffsetStore
from autonomy_controller.workflows.worker import WorkerParts, connect, incident_worker

BLOCK = "network.block_ip"


def action_of(status: IncidentStatus, name: str) -> ActionState | None:
    return next((a for a in status.actions if a.action == name), None)


def block_status(status: IncidentStatus) -> ActionStatus | None:
    """The status of the case's latest block: a later decision round's, once there is one."""
    blocks = [a for a in status.actions if a.action == BLOCK]
    return blocks[-1].status if blocks else None


@dataclass
class Ingest:
    """Counts of what the follow ingest submitted, by incident, over this loop's life."""

    incidents: dict[str, int] = field(default_factory=dict)
    flushes: list[Flush] = field(default_factory=list)

    def on_flush(self, flush: Flush) -> None:
        self.flushes.append(flush)
        for key, count in flush.incidents.items():
            self.incidents[key] = self.incidents.get(key, 0) + count


@dataclass
class LabLoop:
    lab: Lab
    client: Client
    address: str
    settings: Settings
    ingested: Ingest = field(default_factory=Ingest)
    _worker: contextlib.AsyncExitStack | None = None
    _parts: WorkerParts | None = None

    @property
    def parts(self) -> WorkerParts:
        if self._parts is None:
            raise LabError("no worker is running (stop_worker was called)")
        return self._parts

    @property
    def ledger(self) -> Ledger:
        return self.parts.ledger

    async def start_worker(self) -> WorkerParts:
        if self._parts is None:
            stack = contextlib.AsyncExitStack()
            self._parts = await stack.enter_async_context(incident_worker(self.client, self.settings))
            self._worker = stack
        return self._parts

    async def stop_worker(self) -> None:
        """Shut the worker down (as a deploy or a crash-restart would): incidents wait in Temporal meanwhile."""
        stack, self._worker, self._parts = self._worker, None, None
        if stack is not None:
            await stack.aclose()

    async def restart_worker(self) -> None:
        await self.stop_worker()
        await self.start_worker()

    def _follower(
        self, log: Path, ledger: Ledger, level: Level | None, settle: float, quiet: float, interval: float
    ) -> Follower:
        """A follower of one sensor log with a ledger of its own, as the separate `ingest --follow` process has:
        it keeps working while the worker restarts."""
        store = OffsetStore(self.settings.state_dir, log)
        submitter = Submitter(self.client, ledger, level=level, settle_seconds=settle, quiet_seconds=quiet)
        return Follower(
            LineSource(log, store.load()),
            store,
            submitter,
            DeadLetter(self.settings.dead_letter_path),
            IngestReport(),
            interval=interval,
            on_flush=self.ingested.on_flush,
        )

    async def ingest_once(
        self,
        level: Level | None = None,
        settle: float = 0.2,
        quiet: float = 1.0,
        expect: int = 1,
        timeout: float = 10.0,
        logs: Sequence[Path] = (),
    ) -> dict[str, int]:
        """`ingest --follow --once` until at least `expect` alerts went in (or `timeout`): what the sensor logs
        (`logs`; by default the WAF's audit log) hold beyond their saved offsets, submitted now.

        curl has its answer before nginx's log phase has written the audit line, so a single pass right after
        an attack can find the file still without it; the saved offset makes each further pass read only what
        is new, so repeating never submits a line twice."""
        before = dict(self.ingested.incidents)
        deadline = time.monotonic() + timeout
        with Ledger.from_url(self.settings.ledger_url) as ledger:
            while True:
                for log in logs or [self.lab.audit_log]:
                    follower = self._follower(log, ledger, level, settle, quiet, interval=0.05)
                    await follower.run(once=True, stop=asyncio.Event())
                added = {k: n - before.get(k, 0) for k, n in self.ingested.incidents.items() if n != before.get(k, 0)}
                if sum(added.values()) >= expect or time.monotonic() > deadline:
                    return added
                await asyncio.sleep(0.05)

    @asynccontextmanager
    async def following(
        self, level: Level | None = None, settle: float = 0.0, quiet: float = 1.0, interval: float = 0.05
    ) -> AsyncIterator[None]:
        """`ingest --follow` in the background for the duration of the block (stops cleanly, offset saved)."""
        stop = asyncio.Event()
        with Ledger.from_url(self.settings.ledger_url) as ledger:
            follower = self._follower(self.lab.audit_log, ledger, level, settle, quiet, interval)
            task = asyncio.create_task(follower.run(once=False, stop=stop))
            try:
                yield
            finally:
                stop.set()
                await task

    async def status(self, key: str) -> IncidentStatus:
        return await incident_status(self.client, key)

    async def wait_for(
        self, key: str, check: Callable[[IncidentStatus], bool], timeout: float = 60.0, poll: float = 0.05
    ) -> IncidentStatus:
        """Poll the workflow's status query until `check` holds; LabError with the last status on timeout."""
        deadline = time.monotonic() + timeout
        last: IncidentStatus | None = None
        while True:
            with contextlib.suppress(Exception):  # not started yet, or a transient RPC error
                last = await self.status(key)
                if check(last):
                    return last
            if time.monotonic() > deadline:
                raise LabError(f"{key} did not reach the expected state within {timeout} s; last: {last}")
            await asyncio.sleep(poll)

    async def wait_block(self, key: str, *wanted: ActionStatus, timeout: float = 60.0) -> IncidentStatus:
        return await self.wait_for(key, lambda s: block_status(s) in wanted, timeout)

    async def fast_forward(self, key: str, duration: timedelta) -> None:
        """Skip the workflow's clock (the TTL revert's timer) without waiting in real time."""
        await TimeSkipper(self.client).fast_forward(incident_handle(self.client, key), duration)

    async def result(self, key: str, timeout: float = 60.0) -> IncidentStatus:
        return await asyncio.wait_for(incident_handle(self.client, key).result(), timeout)

    def verified_block(self, key: str, purpose: str = "execute") -> LedgerRecord | None:
        """The ledger's VERIFICATION record of a block that held (ok), when there is one."""
        for record in self.ledger.records(key, [RecordKind.VERIFICATION]):
            p = record.payload
            if p.get("action") == BLOCK and p.get("purpose") == purpose and p.get("ok") is True:
                return record
        return None

    def report_markdown(self, key: str) -> str:
        """The incident report (controller/oversight/reports.py) as the ledger has it now."""
        return write_incident_report(self.ledger, key, self.settings.reports_dir).markdown.read_text()


@asynccontextmanager
async def lab_loop(lab: Lab, settings: Settings) -> AsyncIterator[LabLoop]:
    """A time-skipping dev server and a worker enforcing on the lab's nftables, for the block's duration.

    The lab must be up (namespaces, WAF); its enforcement config is written to `settings.enforcement_file`
    (inside the settings' state folder: this never overwrites a file named by AUTONOMY_ENFORCEMENT_FILE)."""
    if os.environ.get("AUTONOMY_ENFORCEMENT_FILE"):
        raise LabError("AUTONOMY_ENFORCEMENT_FILE is set: unset it, the in-process lab loop writes its own")
    lab.write_enforcement(settings.enforcement_file)
    server = DevServer(extra_args=TIME_SKIPPING_FLAG, log_file=settings.state_dir / "temporal.log")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(server.start)
    loop: LabLoop | None = None
    try:
        loop = LabLoop(lab, await connect(server.address), server.address, settings)
        await loop.start_worker()
        yield loop
    finally:
        if loop is not None:
            await loop.stop_worker()
        await asyncio.to_thread(server.stop)
