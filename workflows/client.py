"""Talking to running incidents: submit alerts (signal-with-start), vote, and read their state.

Submitting groups alerts by incident key and sends one signal per incident per batch, so an alert storm is a
few signals to a few workflows; a flush writes every pending batch in one ledger transaction, then signals
them. Each alert is written to the ledger first (whole, raw record included), keyed by incident and alert id:
a resubmitted file neither duplicates ledger records nor double-counts alerts in the workflow (the workflow
dedups by alert id too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from autonomy_controller.controller.attackers import track_batch
from autonomy_controller.controller.attackers.impact import batch_stage, late_stage
from autonomy_controller.controller.case.digest import LedgerTally
from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind, observations
from autonomy_controller.controller.ledger import cases as case_ledger
from autonomy_controller.controller.models import Alert, Level
from autonomy_controller.workflows.approvals import REFUSED_AND_RECORDED, WRONG_RUN, VoteRefused, WrongRun
from autonomy_controller.workflows.contracts import (
    SIGNAL_ALERTS,
    SIGNAL_BYTES,
    TASK_QUEUE,
    ActionState,
    AlertBatch,
    ApprovalVote,
    IncidentStart,
    IncidentStatus,
    slim_alert,
)
from autonomy_controller.workflows.incident import IncidentWorkflow

BATCH_SIZE = 200
SIGNALS_IN_FLIGHT = 32
"""Signal-with-start calls a flush has outstanding at once: a file of many sources is not one round trip each in
turn, nor thousands at once."""


@dataclass
class SubmitReport:
    alerts: int = 0
    signals: int = 0
    incidents: dict[str, int] = field(default_factory=dict)
    observed: dict[str, int] = field(default_factory=dict)
    """Access-log lines kept per `_access:<address>` key: observations, in no case
    (controller/ledger/observations.py)."""
    late: dict[str, str] = field(default_factory=dict)
    """Open cases woken by late access-log lines, with the stage signalled (controller/attackers/impact.py
    `late_stage`)."""


def alert_record_key(alert: Alert) -> str:
    """The idempotency key of an alert's ALERT record: a resubmitted alert (a replayed log, a retried POST) finds
    its first record instead of writing a second one. An access-log line's ACCESS record has its own key."""
    if observations.is_observation(alert):
        return observations.record_key(alert)
    return f"alert:{incident_key(alert)}:{alert.id}"


class Submitter:
    """Buffers alerts per incident and flushes a batch as one ledger transaction plus one signal-with-start."""

    def __init__(
        self,
        client: Client,
        ledger: Ledger,
        *,
        level: Level | None = None,
        settle_seconds: float = 5.0,
        quiet_seconds: float = 60.0,
        batch_size: int = BATCH_SIZE,
        task_queue: str = TASK_QUEUE,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.start_template = IncidentStart(
            key="", level=level, settle_seconds=settle_seconds, quiet_seconds=quiet_seconds
        )
        self.batch_size = batch_size
        self.task_queue = task_queue
        self.pending: dict[str, list[Alert]] = {}
        self.report = SubmitReport()
        self._folding: asyncio.Task[None] | None = None
        self._fold_again = False

    async def add(self, alert: Alert) -> None:
        key = incident_key(alert)
        bucket = self.pending.setdefault(key, [])
        bucket.append(alert)
        if len(bucket) >= self.batch_size:
            await self._flush(key)

    async def add_all(self, alerts: Iterable[Alert]) -> SubmitReport:
        for alert in alerts:
            await self.add(alert)
        await self.flush()
        return self.report

    async def flush(self) -> None:
        """Write every pending batch in one ledger transaction, then signal them, SIGNALS_IN_FLIGHT at a time;
        returns once the attacker profiles hold them too."""
        batches, self.pending = self.pending, {}
        if batches:
            await self._submit(batches)
        if self._folding is not None:
            await self._folding

    async def _flush(self, key: str) -> None:
        alerts = self.pending.pop(key, [])
        if alerts:
            await self._submit({key: alerts})

    async def _submit(self, batches: dict[str, list[Alert]]) -> None:
        tallies = await asyncio.to_thread(self._write_and_tally, batches)  # a thread: the loop runs workflows
        slots = asyncio.Semaphore(SIGNALS_IN_FLIGHT)

        async def start(key: str, alerts: list[Alert]) -> None:
            async with slots:
                await self._start(key, alerts, tallies.get(key))

        await asyncio.gather(*(start(key, alerts) for key, alerts in batches.items()))
        for key, alerts in batches.items():  # counted in submission order, once every signal went out
            self._count(key, alerts)
        self._fold_soon()

    def _fold_soon(self) -> None:
        """Attacker profiles (controller/attackers) after each batch, off the signal path: one fold runs at a time,
        and a batch written while it runs is folded by the next one (a fold takes everything past the profiles'
        cursor, so folds that cover several batches count every alert exactly once)."""
        if self._folding is None or self._folding.done():
            self._folding = asyncio.create_task(self._fold())
        else:
            self._fold_again = True

    async def _fold(self) -> None:
        while True:
            self._fold_again = False
            await asyncio.to_thread(track_batch, self.ledger)
            if not self._fold_again:
                return

    def _write_and_tally(self, batches: dict[str, list[Alert]]) -> dict[str, LedgerTally]:
        """`write`, then each case's ledger tally (controller/ledger/cases.py), which its signal carries."""
        written = self.write(batches)
        tallies: dict[str, LedgerTally] = {}
        for key, records in written.items():
            seqs = [r.seq for r in records if r.kind is RecordKind.ALERT]
            if (tally := case_ledger.tally(self.ledger, key, seqs)) is not None:
                tallies[key] = tally
        return tallies

    def write(self, batches: dict[str, list[Alert]]) -> dict[str, list[LedgerRecord]]:
        """The first half: the alerts' ALERT records, every incident's in one transaction (idempotent by alert:
        an alert the ledger holds returns its first record). Only after this returns may they be signalled.
        Access-log lines go to the observation store first (controller/ledger/observations.py); each batch's records
        come back in its order, theirs included."""
        split = {key: observations.split(alerts) for key, alerts in batches.items()}
        observed = observations.write(self.ledger, [a for _, seen in split.values() for a in seen])
        written = self.ledger.append_groups(
            RecordKind.ALERT,
            "ingest",
            {
                key: [(a.model_dump(mode="json"), alert_record_key(a)) for a in cased]
                for key, (cased, _) in split.items()
                if cased
            },
        )
        return observations.merged(batches, written, observed)

    async def signal(self, key: str, alerts: list[Alert], seqs: Sequence[int]) -> None:
        """The second half: one signal-with-start carrying alerts the ledger holds already (see `write`), whose
        record seqs the caller has from that write (the outbox). Access-log lines are never signalled (they open
        no case); they count toward the batch's stage."""
        cased = [seq for seq, alert in zip(seqs, alerts, strict=True) if not observations.is_observation(alert)]
        tally = await asyncio.to_thread(case_ledger.tally, self.ledger, key, cased)
        await self._start(key, alerts, tally)
        self._count(key, alerts)

    async def _start(self, key: str, alerts: list[Alert], tally: LedgerTally | None) -> None:
        """Signal-with-start the case's workflow with its alerts, as many signals as SIGNAL_ALERTS and SIGNAL_BYTES
        take, each with the case's ledger tally (None only for a batch without alerts); a batch of access-log
        lines only may wake an open case."""
        cased, observed = observations.split(alerts)
        if not cased:
            if observed:
                await self._wake(key, observed)
            return
        stage = batch_stage(alerts)
        for chunk in _chunks([slim_alert(a) for a in cased]):
            await self.client.start_workflow(
                IncidentWorkflow.run,
                self.start_template.model_copy(update={"key": key}),
                id=key,
                task_queue=self.task_queue,
                start_signal="add_alerts",
                start_signal_args=[AlertBatch(alerts=chunk, stage=stage, tally=tally)],
            )

    async def _wake(self, key: str, observed: list[Alert]) -> None:
        """Late evidence: access-log lines that raised an open case's stage are signalled to it (never a start:
        they open no case). No case, or a closed one, and nothing is sent (controller/attackers/impact.py)."""
        stage = await asyncio.to_thread(late_stage, self.ledger, key, observed)
        if stage is None:
            return
        try:
            await incident_handle(self.client, key).signal(
                IncidentWorkflow.add_alerts, AlertBatch(alerts=[], stage=stage)
            )
        except RPCError:  # not running (closed, or never started here): its source's next case reads the lines
            return
        self.report.late[key] = stage

    def _count(self, key: str, alerts: list[Alert]) -> None:
        cased, observed = observations.split(alerts)
        for alert in observed:  # counted under the key they are kept under
            kept = observations.observation_key(str(alert.src_ip))
            self.report.observed[kept] = self.report.observed.get(kept, 0) + 1
        if not cased:
            return
        self.report.alerts += len(cased)
        self.report.signals += 1
        self.report.incidents[key] = self.report.incidents.get(key, 0) + len(cased)


def _chunks(alerts: list[Alert]) -> Iterator[list[Alert]]:
    """The alerts in runs of at most SIGNAL_ALERTS and about SIGNAL_BYTES (a rough size: the free-text fields)."""
    chunk: list[Alert] = []
    size = 0
    for alert in alerts:
        weight = 400 + len(alert.evidence) + len(alert.url or "") + len(alert.signature or "")
        weight += sum(len(rule) + 4 for rule in alert.rule_ids)
        if chunk and (len(chunk) >= SIGNAL_ALERTS or size + weight > SIGNAL_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(alert)
        size += weight
    if chunk:
        yield chunk


def incident_handle(client: Client, key: str) -> WorkflowHandle[IncidentWorkflow, IncidentStatus]:
    return client.get_workflow_handle_for(IncidentWorkflow.run, key)


async def incident_status(client: Client, key: str) -> IncidentStatus:
    return await incident_handle(client, key).query(IncidentWorkflow.status)


async def cast_vote(client: Client, ledger: Ledger, key: str, vote: ApprovalVote) -> ActionState:
    """Send a vote; a refused vote raises VoteRefused and is recorded in the ledger (who tried, and why not).

    A vote whose token the worker refused was recorded by the worker already (REFUSED_AND_RECORDED); only
    refusals the worker never recorded (validation, Temporal errors) are written here. A vote naming another
    run than the incident's current one (`ApprovalVote.run_id`) is refused by the run's validator: WrongRun.
    """
    try:
        return await incident_handle(client, key).execute_update(IncidentWorkflow.vote, vote)
    except (WorkflowUpdateFailedError, RPCError) as exc:
        cause = exc.cause if isinstance(exc, WorkflowUpdateFailedError) and exc.cause else exc
        reason = getattr(cause, "message", None) or str(cause)
        if isinstance(cause, ApplicationError) and cause.type == REFUSED_AND_RECORDED:
            raise VoteRefused(reason) from exc
        refused = WrongRun if isinstance(cause, ApplicationError) and cause.type == WRONG_RUN else VoteRefused
        ledger.append(
            key,
            RecordKind.APPROVAL,
            f"user:{vote.approver}",
            {
                "action_id": vote.action_id,
                "event": "vote_refused",
                "approver": vote.approver,
                "choice": vote.choice.value,
                "detail": reason,
                "with_token": vote.token is not None,
                "run_id": vote.run_id,
            },
        )
        raise refused(reason) from exc
