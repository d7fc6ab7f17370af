"""`autonomy demo`: the sample alerts through the real loop at several levels, and what came of it.

The machinery is in `demo_run`; this module shows the progress and turns the outcome into four answers a
security lead asks: what ran (and did it work), what waits for a person, what the controller would not do
(and why), and where the reports are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from autonomy_controller.controller.cli.common import (
    JsonFlag,
    cell,
    console,
    emit_json,
    err_console,
    fail,
    run_async,
    status_text,
    verdict_text,
)
from autonomy_controller.controller.cli.demo_run import DemoResult, LevelRun, Linger, Lingering, Timings, run_demo
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.runtime import ENGINE_HELP, EngineName
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.contracts import ActionState, ActionStatus

if TYPE_CHECKING:
    from autonomy_controller.controller.cli.demo_serve import Newcomer

RAN = frozenset(
    {
        ActionStatus.EXECUTING,
        ActionStatus.VERIFIED,
        ActionStatus.FAILED,
        ActionStatus.VERIFICATION_FAILED,
        ActionStatus.COMPENSATED,
        ActionStatus.AWAITING_REVERT,
        ActionStatus.REVERTED,
    }
)
"""The controller called (or is calling) the action's adapter."""
DEFAULT_LEVELS = [Level.L1, Level.L2, Level.L3]
DEFAULT_PORT = 8080
"""`demo --serve`'s port, `autonomy serve`'s own default."""
Row = tuple[str, str, str, str]


def _quiet_temporal_core() -> None:
    """The SDK core warns when a workflow task runs over 5 s, which a 2-core machine does under the demo's
    burst of incidents; for the demo that is noise, not news (workers keep the default)."""
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    quiet = TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")))
    Runtime.set_default(Runtime(telemetry=quiet), error_if_already_set=False)


def _actions(run: LevelRun) -> list[tuple[str, ActionState]]:
    return [(key, action) for key, outcome in run.incidents.items() for action in outcome.status.actions]


def _summary(result: DemoResult) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    for run in result.levels:
        actions = [a for _key, a in _actions(run)]
        levels[run.level.value] = {
            "incidents": len(run.incidents),
            "closed": sum(1 for o in run.incidents.values() if o.status.phase == "closed"),
            "ran": sum(1 for a in actions if a.status in RAN),
            "verified": sum(1 for a in actions if a.status in (ActionStatus.VERIFIED, ActionStatus.AWAITING_REVERT)),
            "failed": sum(1 for a in actions if a.status is ActionStatus.FAILED),
            "awaiting_approval": sum(1 for a in actions if a.status is ActionStatus.AWAITING_APPROVAL),
            "recommended": sum(1 for a in actions if a.status is ActionStatus.NOT_RUN and a.verdict == "recommend"),
            "denied": sum(1 for a in actions if a.status is ActionStatus.NOT_RUN and a.verdict == "deny"),
            "unsettled": run.unsettled,
            "state_dir": str(run.state_dir),
            "identity": [outcome.as_dict() for outcome in run.identity],
        }
    return {
        "levels": levels,
        "alerts": result.alerts,
        "ingest": result.ingest.as_dict(),
        "webhook": {"url": result.webhook_url, "received": len(result.notifications)},
        "state_dir": str(result.root),
        "scorecards_html": str(result.scorecards_html),
        "enforcement": result.enforcement.as_dict(),
    }


def _grouped(rows: Sequence[Row]) -> list[tuple[Row, int]]:
    """Identical rows folded into one with a count: 20 incidents with the same outcome read as one line."""
    return list(Counter(rows).items())


def _why(level: Level, action: ActionState) -> str:
    """The reason that decided it: for a deny, the guardrail that fired rather than the level's class rule
    ("L2 requires approval ...") that precedes it in the policy's reasons."""
    reasons = action.detail.split("; ")
    if action.verdict == "deny":
        return next((r for r in reasons if not r.startswith(f"{level.value} ")), reasons[0])
    return reasons[0]


def _print_result(result: DemoResult) -> None:
    summary = _summary(result)["levels"]
    table = Table(
        title=f"{result.alerts} sample alerts through the loop at each level",
        caption=f"containment enforced by {escape(result.enforcement.label)}; identity containment on "
        f"{escape(result.enforcement.directory_label)}; scorecards: the same counts per level",
    )
    for column in ("level", "incidents", "ran", "verified", "failed", "awaiting approval", "recommended", "denied"):
        table.add_column(column, justify="right" if column != "level" else "left")
    for level, row in summary.items():
        table.add_row(
            level,
            f"{row['incidents']} ({row['closed']} closed)",
            str(row["ran"]),
            f"[green]{row['verified']}[/]",
            f"[red]{row['failed']}[/]" if row["failed"] else "0",
            f"[yellow]{row['awaiting_approval']}[/]",
            f"[cyan]{row['recommended']}[/]",
            f"[red]{row['denied']}[/]",
        )
    console.print(table)

    ran = Table(title="what ran (the controller called the adapter), grouped by outcome")
    for column in ("level", "action", "status", "incidents", "detail"):
        ran.add_column(column, overflow="fold")
    rows = [
        (run.level.value, a.action, a.status.value, a.detail)
        for run in result.levels
        for _k, a in _actions(run)
        if a.status in RAN
    ]
    for (level, action, status, detail), count in _grouped(rows):
        ran.add_row(level, action, status_text(ActionStatus(status)), str(count), cell(detail, 90))
    console.print(ran)

    waiting = Table(title="waiting for a person (approve with `autonomy approve` on a real server)")
    for column in ("level", "incident", "id", "action", "may approve", "deadline"):
        waiting.add_column(column, overflow="fold")
    for run in result.levels:
        for key, a in _actions(run):
            if a.status is ActionStatus.AWAITING_APPROVAL:
                deadline = a.deadline.isoformat(timespec="seconds") if a.deadline else "-"
                waiting.add_row(
                    run.level.value, escape(key), a.action_id, a.action, escape(", ".join(a.waiting_on)), deadline
                )
    console.print(waiting)

    refused = Table(title="not run by the controller: recommended to a person, or denied (grouped)")
    for column in ("level", "action", "verdict", "incidents", "why"):
        refused.add_column(column, overflow="fold")
    rows = [
        (run.level.value, a.action, a.verdict, _why(run.level, a))
        for run in result.levels
        for _k, a in _actions(run)
        if a.status is ActionStatus.NOT_RUN
    ]
    for (level, action, verdict, why), count in _grouped(rows):
        refused.add_row(level, action, verdict_text(verdict), str(count), cell(why, 90))
    console.print(refused)
    _print_identity(result)

    for run in result.levels:
        closed = sum(1 for o in run.incidents.values() if not o.snapshot)
        console.print(
            f"{run.level.value}: reports in {escape(str(run.state_dir / 'reports'))} "
            f"({closed} closed, {len(run.incidents) - closed} snapshot(s) of incidents still waiting)"
        )
        if run.unsettled:
            err_console.print(
                f"[yellow]{run.level.value}: still moving at the timeout: {escape(', '.join(run.unsettled))}[/]"
            )
    example = next(
        (o.report_markdown for run in result.levels for o in run.incidents.values() if o.report_markdown), None
    )
    if example:
        console.print(f"e.g. [bold]{escape(example)}[/]", soft_wrap=True)
    console.print(f"scorecards of all levels: {escape(str(result.scorecards_html))}", soft_wrap=True)
    console.print(
        f"{len(result.notifications)} notification(s) reached the local webhook {escape(result.webhook_url)}; "
        f"tickets are in <level>/tickets/; ledgers in <level>/ledger.db (try "
        f"`AUTONOMY_STATE_DIR={escape(str(result.levels[-1].state_dir))} autonomy audit verify`)"
    )
    console.print(f"containment (network.*, host.*) enforced by: {escape(result.enforcement.label)}", soft_wrap=True)
    console.print(f"identity containment (identity.*) on: {escape(result.enforcement.directory_label)}", soft_wrap=True)
    if not result.enforcement.netns:
        err_console.print(
            "[yellow]without an enforcement point containment fails closed ('no adapter configured'): nothing was "
            "half-done. As root the demo enforces with nftables in a throwaway network namespace; real blocks "
            "against a real WAF: `autonomy lab up` (root), see examples/lab/README.md[/]"
        )
    if result.ingest.dead_lettered:
        err_console.print(f"[yellow]{result.ingest.dead_lettered} sample record(s) dead-lettered[/]")


def _yes_no(value: bool | None, yes: str, no: str) -> str:
    return "-" if value is None else f"[green]{yes}[/]" if value else f"[red]{no}[/]"


def _print_identity(result: DemoResult) -> None:
    """The account disables: who approved, what the controller verified, what the directory itself answers."""
    enforcement = result.enforcement
    if not enforcement.directory:
        err_console.print(
            f"[yellow]identity containment skipped: {escape(enforcement.directory_why)}. Without a directory the "
            "account disables are left waiting for iam-admins (nothing approves them). As root, with slapd "
            "installed, the demo provisions a throwaway slapd holding the sample accounts, its iam-admins approve "
            "each disable with a signed vote, and the directory is deleted after the run[/]"
        )
        return
    table = Table(
        title="account disables: iam-admins of the identities data approve each one with a signed vote "
        "(`autonomy approve --key`'s path); policy and the adapter still decide",
        caption="directory: asked by the demo after the level, apart from the controller",
    )
    for column in ("level", "incident", "account", "status", "approved by", "controller", "TTL revert", "directory"):
        table.add_column(column, overflow="fold")
    for run in result.levels:
        for o in run.identity:
            who = ", ".join(o.approvers) + (" (signed)" if o.signed else " (unsigned)") if o.approvers else "-"
            directory = (
                f"{_yes_no(o.locked, 'locked', 'not locked')}, {_yes_no(o.bind_refused, 'bind refused', 'bind works')}"
            )
            table.add_row(
                run.level.value,
                escape(o.incident),
                escape(o.account),
                status_text(o.status),
                escape(who),
                cell(o.detail, 200),
                o.revert_at or "-",
                directory,
            )
    console.print(table)


def demo(
    levels: Annotated[
        list[Level] | None,
        typer.Option("--level", help="A level to run the samples at (repeat it). Default: L1, L2 and L3."),
    ] = None,
    engine: Annotated[EngineName | None, typer.Option(help=ENGINE_HELP)] = None,
    settle: Annotated[float, typer.Option(min=0, help="Seconds each incident collects alerts.")] = 0.5,
    quiet: Annotated[float, typer.Option(min=0, help="Seconds without alerts before an incident closes.")] = 1.0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per level to wait for incidents to settle.")] = 90.0,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Then keep the last level running and serve it over HTTP (API and approval inbox, with an "
            "account and tokens printed once) until Ctrl-C; approving there really runs the action.",
        ),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help=f"With --serve: the TCP port on 127.0.0.1 [default: {DEFAULT_PORT}]."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the bundled sample alerts through the whole loop, for real, at L1, L2 and L3.

    Starts an in-memory Temporal dev server and a worker in this process, submits every sample at each
    level (a Temporal namespace and a state folder per level: <state dir>/demo/, replaced on each run),
    and shows what ran, what waits for approval and what was only recommended or denied, with the reports.
    Tickets are real files, notifications really POST to a local HTTP receiver. Incidents waiting for a
    person are left waiting (the demo does not approve for you) and vanish with the in-memory server,
    unless --serve keeps the last level running: then `autonomy serve` answers on 127.0.0.1 (default port
    8080), an approver signs in to the inbox with the printed password and approves for real, and Ctrl-C
    stops and deletes everything the demo started.
    """
    if port is not None and not serve:
        fail("--port is for --serve", 2)
    settings = Settings()
    chosen = sorted(set(levels or DEFAULT_LEVELS), key=lambda lv: lv.rank)
    timings = Timings(settle_seconds=settle, quiet_seconds=quiet, timeout_seconds=timeout)
    serve_port = port or DEFAULT_PORT
    linger = _serving(settings, engine, timings, serve_port, as_json) if serve else None
    _quiet_temporal_core()
    if as_json:
        result = run_async(run_demo(settings, chosen, engine, timings, lambda *_: None, linger))
    else:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            tasks: dict[Level, TaskID] = {lv: progress.add_task(f"{lv.value} waiting", total=None) for lv in chosen}

            def update(level: Level, what: str, done: int, total: int) -> None:
                progress.update(tasks[level], description=f"{level.value} {what}", completed=done, total=total)

            if linger is not None:
                linger = _after(progress.stop, linger)
            result = run_async(run_demo(settings, chosen, engine, timings, update, linger))
    if not serve:
        _show(result, as_json, served=False)
    elif not as_json:
        console.print("stopped: the service, the worker, the dev server and the enforcement points are gone")


def _serving(settings: Settings, engine: EngineName | None, timings: Timings, port: int, as_json: bool) -> Linger:
    """`--serve`'s part of the run, its port checked now (before the levels run, not a minute later). Imported
    only then: the plain demo does not load the HTTP service."""
    from autonomy_controller.controller.cli.demo_serve import ServeError, port_taken, serve_last_level

    if taken := port_taken(port):
        fail(taken, 2)

    async def linger(lingering: Lingering) -> None:
        _show(lingering.result, as_json, served=True)
        try:
            await serve_last_level(lingering, settings, engine, timings, port, lambda n: _print_newcomer(n, as_json))
        except ServeError as exc:
            fail(f"--serve: {exc}", 1)  # typer.Exit passes through run_demo's teardown first

    return linger


def _after(first: Callable[[], object], linger: Linger) -> Linger:
    """`linger`, once `first` ran (the progress bar cleared before the tables are printed)."""

    async def then(lingering: Lingering) -> None:
        first()
        await linger(lingering)

    return then


def _show(result: DemoResult, as_json: bool, served: bool) -> None:
    if as_json:
        for run in result.levels:
            for key, outcome in run.incidents.items():
                emit_json({"level": run.level.value, "incident": key, **outcome.as_dict()})
        emit_json({"summary": _summary(result)})
        return
    _print_result(result)
    if not served:
        _print_service_hint(result)


def _print_newcomer(newcomer: Newcomer, as_json: bool) -> None:
    """The URLs and credentials, once (the password and tokens are stored hashed), then the `serving` line."""
    if as_json:
        emit_json({"serving": newcomer.as_dict()})
        return
    url = escape(newcomer.url)
    signed = (
        f"votes signed with the service-held key {escape(newcomer.signing_key)}"
        if newcomer.signing_key
        else "votes unsigned (the approver keys config allows it)"
    )
    for line in (
        f"approval inbox: {url}/inbox  sign in as [bold]{escape(newcomer.account)}[/] with password "
        f"[bold]{escape(newcomer.password)}[/] (shown once; may approve {newcomer.waiting} waiting action(s); "
        f"{signed})",
        f"read API: curl -H 'Authorization: Bearer {escape(newcomer.read_token)}' {url}/v1/incidents",
        f"ingest API: curl -H 'Authorization: Bearer {escape(newcomer.ingest_token)}' "
        f"-H 'Content-Type: application/x-ndjson' --data-binary @alerts.jsonl {url}/v1/alerts",
        f"health and metrics: {url}/healthz {url}/readyz {url}/metrics; OpenAPI {url}/openapi.json; "
        f"service log {escape(newcomer.log)}",
        f"[bold green]serving[/] the demo's {newcomer.level} at [bold]{url}[/] until Ctrl-C (a worker runs its "
        "incidents; the enforcement points stay up)",
    ):
        console.print(line, soft_wrap=True)


def _print_service_hint(result: DemoResult) -> None:
    """How to put the demo on HTTP. Without --serve the demo's Temporal is in memory and gone when it returns:
    over the ledger the read API still works; live approvals need --serve (or the lab)."""
    state_dir = escape(str(result.levels[-1].state_dir))
    level = result.levels[-1].level.value
    console.print(
        f"over HTTP, live: [bold]autonomy demo --level {level} --serve[/] keeps {level} running and serves it at "
        "http://127.0.0.1:8080 (approval inbox with a printed account, read API) until Ctrl-C. After the demo: "
        f"[bold]AUTONOMY_STATE_DIR={state_dir} autonomy serve[/] serves this level's ledger (read API; "
        "`autonomy tokens add me --scope read`); `autonomy lab up` serves the lab (docs/http.md)",
        soft_wrap=True,
    )
