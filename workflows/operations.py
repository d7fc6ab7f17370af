"""The async plumbing behind the Temporal commands: connect, submit, vote, read incidents, export an audit.

Kept apart from the typer commands so that each command is "parse options, call one function here, render",
and so these functions return data (never print): the same call serves the table and the --json output, and
the tests. Every failure to reach Temporal becomes a `LoopError` whose message says where and what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from autonomy_controller.controller.approver_keys import ApproverSecret, Ballot, sign_token
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest import TRUST_NOTHING, DeadLetter, IngestReport, TrustedSources, read_alerts
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.client import SubmitReport, Submitter, cast_vote, incident_handle
from autonomy_controller.workflows.connection import ConnectionSettingsError, TemporalConnection
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalVote, IncidentStatus, VoteChoice
from autonomy_controller.workflows.incident import IncidentWorkflow
from autonomy_controller.workflows.worker import connect

CONNECT_TIMEOUT_S = 10.0
QUERY_TIMEOUT = timedelta(seconds=5)
VOTE_WATCH_S = 2.0
"""After a vote, how long to watch the action leave awaiting_approval (quorum reached) before reporting."""
CONTROLLER_KEYS = ("_",)
"""Ledger keys starting with these hold records about the controller itself (circuit breaker), not incidents."""


class LoopError(RuntimeError):
    """A Temporal-side failure, worded for the person at the terminal (what failed, where, what to try)."""


class TemporalUnavailable(LoopError):
    """Nothing answers at the address: the command cannot run (exit 2)."""


class TemporalMisconfigured(TemporalUnavailable):
    """A connection setting is wrong (named in the message): the command cannot run (exit 2), nothing was tried."""


class IncidentUnknown(LoopError):
    """Temporal answers but has no workflow under this incident key (exit 1)."""


class NoWorker(LoopError):
    """The workflow exists but no worker answered its query in time."""


def temporal_connection(address: str | None = None) -> TemporalConnection:
    """The connection settings (--address, the root --temporal-* flags, AUTONOMY_TEMPORAL_*), checked now:
    a bad one is a TemporalMisconfigured naming the setting."""
    try:
        return TemporalConnection.resolve(address=address)
    except ConnectionSettingsError as exc:
        raise TemporalMisconfigured(str(exc)) from exc


async def open_client(target: str | TemporalConnection | None, timeout: float = CONNECT_TIMEOUT_S) -> Client:
    """A client with the pydantic converter, or TemporalUnavailable naming the address (no retry loop).

    `target`: resolved settings, or an address to resolve with the rest of the settings from flags/environment."""
    connection = target if isinstance(target, TemporalConnection) else temporal_connection(target)
    try:
        return await asyncio.wait_for(connect(connection), timeout)
    except (RuntimeError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        if "ConnectionRefused" in reason or "Connection refused" in reason:
            reason = "connection refused"
        hint = (
            "check the AUTONOMY_TEMPORAL_TLS_* / API key settings against the server's"
            if connection.uses_tls
            else "start one with `autonomy server`, or pass --address / set AUTONOMY_TEMPORAL_ADDRESS"
        )
        raise TemporalUnavailable(f"cannot reach Temporal at {connection.describe()}: {reason} ({hint})") from exc


def _rpc_error(exc: RPCError, key: str) -> LoopError:
    if exc.status is RPCStatusCode.NOT_FOUND:
        return IncidentUnknown(f"Temporal has no workflow for incident {key}")
    if exc.status is RPCStatusCode.DEADLINE_EXCEEDED or (
        exc.status is RPCStatusCode.CANCELLED and "timeout" in exc.message.lower()
    ):  # a query nobody polls for: the server answers DEADLINE_EXCEEDED, or CANCELLED "Timeout expired"
        return NoWorker(
            f"no worker answered for incident {key} within {QUERY_TIMEOUT.seconds} s: is `autonomy worker` running?"
        )
    if exc.status is RPCStatusCode.UNAVAILABLE:
        return TemporalUnavailable(f"Temporal became unreachable: {exc.message}")
    return LoopError(f"Temporal refused the request for incident {key}: {exc.message}")


# -- submit -----------------------------------------------------------------------------------------------


async def submit_files(
    client: Client,
    ledger: Ledger,
    paths: Iterable[Path],
    *,
    dead_letter: DeadLetter,
    ingest: IngestReport,
    level: Level | None,
    settle_seconds: float,
    quiet_seconds: float,
    trusted: TrustedSources = TRUST_NOTHING,
) -> SubmitReport:
    """Stream every file's alerts into the Submitter (ledger first, then signal-with-start), bad records
    dead-lettered; the files were checked to be readable by the caller, so an OSError here is mid-read."""
    submitter = Submitter(client, ledger, level=level, settle_seconds=settle_seconds, quiet_seconds=quiet_seconds)
    try:
        for path in paths:
            for alert in read_alerts(path, dead_letter=dead_letter, report=ingest, trusted=trusted):
                await submitter.add(alert)
        await submitter.flush()
    except RPCError as exc:
        raise TemporalUnavailable(f"Temporal refused the submission: {exc.message}") from exc
    return submitter.report


# -- reading incidents ------------------------------------------------------------------------------------


def settled_state(state: ActionState) -> ActionState:
    """The state with `waiting_on` emptied once the action no longer awaits approval.

    The workflow's vote handler recomputes `waiting_on` after its ledger write, which can land after the
    approval loop has already settled the action and cleared it; a settled action waits on nobody, so the
    CLI never shows (or emits) that stale list.
    """
    if state.status is ActionStatus.AWAITING_APPROVAL or not state.waiting_on:
        return state
    return state.model_copy(update={"waiting_on": []})


def settled_status(status: IncidentStatus) -> IncidentStatus:
    return status.model_copy(update={"actions": [settled_state(a) for a in status.actions]})


async def describe_and_read(client: Client, key: str) -> tuple[str, IncidentStatus]:
    """Temporal's execution status of the incident's latest run, and the incident's live status: the final
    result of a completed run (no worker needed for that), else a query (a worker must answer it)."""
    handle = incident_handle(client, key)
    try:
        description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
        execution = description.status.name if description.status else "UNKNOWN"
        if description.status is WorkflowExecutionStatus.COMPLETED:
            status = await handle.result(follow_runs=False, rpc_timeout=QUERY_TIMEOUT)
        else:
            status = await handle.query(IncidentWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        raise _rpc_error(exc, key) from exc
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError, WorkflowFailureError) as exc:
        # the workflow under this key answered with a failure: one that is not ours, or that its worker cannot
        # replay; said about this incident, never a failed read of every other
        raise LoopError(f"the workflow of incident {key} could not tell its status: {exc}") from exc
    return execution, settled_status(status)


async def read_status(client: Client, key: str) -> IncidentStatus:
    return (await describe_and_read(client, key))[1]


@dataclass
class IncidentRow:
    """One line of `incidents list`: what the ledger knows, plus Temporal's view when it could be asked."""

    key: str
    records: int
    head_seq: int
    alerts: int
    workflow: str | None = None
    """Temporal's execution status (RUNNING, COMPLETED, ...), None when not asked or unknown."""
    status: IncidentStatus | None = None
    note: str | None = None
    """Why there is no status (no such workflow, no worker answered)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "records": self.records,
            "head_seq": self.head_seq,
            "alerts": self.alerts,
            "workflow": self.workflow,
            "status": self.status.model_dump(mode="json") if self.status else None,
            "note": self.note,
        }


async def _temporal_view(client: Client, row: IncidentRow, limit: asyncio.Semaphore) -> None:
    async with limit:
        try:
            row.workflow, row.status = await describe_and_read(client, row.key)
        except LoopError as exc:
            row.note = str(exc)
            with contextlib.suppress(RPCError):  # the workflow may exist though its status could not be read
                description = await incident_handle(client, row.key).describe(rpc_timeout=QUERY_TIMEOUT)
                row.workflow = description.status.name if description.status else None


async def list_incidents(ledger: Ledger, address: str | None) -> tuple[list[IncidentRow], str | None]:
    """Every incident in the ledger, with each workflow's phase when Temporal answers.

    Returns the rows and, when Temporal could not be reached, why: the ledger view is still worth showing
    (an auditor may have the ledger but no Temporal), so unreachability degrades instead of failing.
    """
    rows = [
        IncidentRow(
            key=head.incident_key,
            records=head.count,
            head_seq=head.seq,
            alerts=ledger.count(head.incident_key, [RecordKind.ALERT]),
        )
        for head in ledger.incidents()
        if not head.incident_key.startswith(CONTROLLER_KEYS)
    ]
    if address is None or not rows:
        return rows, None
    try:
        client = await open_client(address)
    except TemporalUnavailable as exc:
        return rows, str(exc)
    limit = asyncio.Semaphore(16)
    await asyncio.gather(*(_temporal_view(client, row, limit) for row in rows))
    return rows, None


# -- votes ------------------------------------------------------------------------------------------------


def find_action(status: IncidentStatus, action: str) -> ActionState | None:
    """By action id (a2), or by registry name (network.block_ip) when exactly one action has it."""
    by_id = next((a for a in status.actions if a.action_id == action), None)
    if by_id is not None:
        return by_id
    named = [a for a in status.actions if a.action == action]
    return named[0] if len(named) == 1 else None


@dataclass
class VoteResult:
    run_id: str
    """The run the vote was cast in (and bound to): the one the caller named, or the current one read first."""
    state: ActionState
    """The action as the vote left it; refreshed for a moment afterwards so "approved, now running" shows."""
    settled: bool
    """The action left awaiting_approval (quorum reached or rejected) within the watch window."""


async def vote(
    client: Client,
    ledger: Ledger,
    key: str,
    action: str,
    approver: str,
    choice: str,
    comment: str,
    secret: ApproverSecret | None = None,
    run_id: str | None = None,
) -> VoteResult:
    """Cast one vote, signed when `secret` is given. A refused vote raises VoteRefused (and is in the ledger).

    The vote is bound to a run of the incident, end to end: `run_id` (the run the person was shown), else the
    current run, read here once. The vote carries it, a token signs it, and the run the vote reaches refuses it
    when it is another (WrongRun): a run that changed after the person looked is never what they approve.
    """
    status = await read_status(client, key)
    run = run_id or status.run_id
    if not run:
        raise LoopError(f"the worker serving {key} does not report its run: too old to bind a vote to a run")
    found = find_action(status, action) if status.run_id == run else None
    action_id = found.action_id if found else action  # unknown: let the workflow refuse it, on the record
    token = None
    if secret is not None:
        token = sign_token(secret, Ballot(key, run, action_id, choice, secret.approver))
    ballot = ApprovalVote(
        action_id=action_id, approver=approver, choice=VoteChoice(choice), comment=comment, token=token, run_id=run
    )
    state = settled_state(await cast_vote(client, ledger, key, ballot))
    deadline = asyncio.get_running_loop().time() + VOTE_WATCH_S
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        try:
            now = await read_status(client, key)
        except LoopError:
            break
        fresh = find_action(now, action_id) if now.run_id == run else None  # a later run's a1 is another action
        if fresh is not None:
            state = fresh
            if fresh.status is not ActionStatus.AWAITING_APPROVAL:
                return VoteResult(run, state, settled=True)
    return VoteResult(run, state, settled=state.status is not ActionStatus.AWAITING_APPROVAL)


# -- audit export -----------------------------------------------------------------------------------------


async def workflow_histories(address: str, key: str) -> dict[str, Any]:
    """Every run of the incident's workflow with its full event history (Temporal's JSON), or why not.

    The history is the audit's skeleton (what the workflow did and when); the ledger is the flesh. An export
    without Temporal still carries the ledger, so absence is recorded with its reason instead of failing.
    """
    try:
        client = await open_client(address)
        runs: list[tuple[str, str]] = []
        try:
            async for execution in client.list_workflows(f'WorkflowId = "{key}"'):
                status = execution.status.name if execution.status else "UNKNOWN"
                runs.append((execution.run_id, status))
        except RPCError:
            runs = []  # a server without visibility queries: fall back to the latest run below
        if not runs:
            description = await incident_handle(client, key).describe(rpc_timeout=QUERY_TIMEOUT)
            runs = [(description.run_id, description.status.name if description.status else "UNKNOWN")]
        documents = []
        for run_id, status in reversed(runs):  # oldest first
            history = await client.get_workflow_handle(key, run_id=run_id).fetch_history(rpc_timeout=QUERY_TIMEOUT)
            documents.append({"run_id": run_id, "status": status, "history": json.loads(history.to_json())})
    except LoopError as exc:
        return {"available": False, "address": address, "reason": str(exc)}
    except RPCError as exc:
        return {"available": False, "address": address, "reason": str(_rpc_error(exc, key))}
    return {"available": True, "address": address, "workflow_id": key, "runs": documents}


def level_snapshot(levels_dir: Path) -> dict[str, Any]:
    """The level config as it is now: each YAML file's text and sha256, to read beside the decisions'
    policy revisions (which hash the levels too, so a mismatch shows the config changed since)."""
    files = {}
    for path in sorted(levels_dir.glob("*.y*ml")):
        data = path.read_bytes()
        files[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "text": data.decode("utf-8", "replace")}
    return {"dir": str(levels_dir), "files": files}


async def export_audit(settings: Settings, ledger: Ledger, key: str, address: str) -> dict[str, Any]:
    """One document with everything an auditor needs for one incident (see `autonomy audit export --help`)."""
    decisions = ledger.records(key, [RecordKind.DECISION])
    revisions = sorted({str(r.payload.get("policy_revision")) for r in decisions if r.payload.get("policy_revision")})
    verified = ledger.verify(key)
    return {
        "format": "autonomy-audit-export/1",
        "incident_key": key,
        "exported_at": datetime.now(UTC).isoformat(),
        "temporal": await workflow_histories(address, key),
        "ledger": ledger.export_incident(key),
        "ledger_verify": {"ok": verified.ok, "summary": verified.summary()},
        "policy_revisions": revisions,
        "levels": level_snapshot(settings.levels_dir),
    }
