"""`autonomy demo`: the sample alerts through the real loop at several levels, and what came of it.

The machinery is in `demo_run`; this module shows the progress and turns the outcome into four answers a
security lead asks: what ran (and did it work), what waits for a person, what the controller would not do
(and why), and where the reports are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

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
    run_async,
    status_text,
    verdict_text,
)
from autonomy_controller.controller.cli.demo_run import DemoResult, LevelRun, Timings, run_demo
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.runtime import ENGINE_HELP, EngineName
from autonomy_controller.workflows.contracts import ActionState, ActionStatus

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
    if not result.enforcement.directory:
        err_console.print(
            "[yellow]without a directory identity containment fails closed ('no adapter configured'). As root "
            "(with slapd installed) the demo provisions a throwaway slapd holding the sample accounts and deletes "
            "it after the run[/]"
        )
    if not result.enforcement.netns:
        err_console.print(
            "[yellow]without an enforcement point containment fails closed ('no adapter configured'): nothing was "
            "half-done. As root the demo enforces with nftables in a throwaway network namespace; real blocks "
            "against a real WAF: `autonomy lab up` (root), see examples/lab/README.md[/]"
        )
    if result.ingest.dead_lettered:
        err_console.print(f"[yellow]{result.ingest.dead_lettered} sample record(s) dead-lettered[/]")


def demo(
    levels: Annotated[
        list[Level] | None,
        typer.Option("--level", help="A level to run the samples at (repeat it). Default: L1, L2 and L3."),
    ] = None,
    engine: Annotated[EngineName | None, typer.Option(help=ENGINE_HELP)] = None,
    settle: Annotated[float, typer.Option(min=0, help="Seconds each incident collects alerts.")] = 0.5,
    quiet: Annotated[float, typer.Option(min=0, help="Seconds without alerts before an incident closes.")] = 1.0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per level to wait for incidents to settle.")] = 90.0,
    as_json: JsonFlag = False,
) -> None:
    """Run the bundled sample alerts through the whole loop, for real, at L1, L2 and L3.

    Starts an in-memory Temporal dev server and a worker in this process, submits every sample at each
    level (a Temporal namespace and a state folder per level: <state dir>/demo/, replaced on each run),
    and shows what ran, what waits for approval and what was only recommended or denied, with the reports.
    Tickets are real files, notifications really POST to a local HTTP receiver. Incidents waiting for a
    person are left waiting (the demo does not approve for you) and vanish with the in-memory server.
    """
    settings = Settings()
    chosen = sorted(set(levels or DEFAULT_LEVELS), key=lambda lv: lv.rank)
    timings = Timings(settle_seconds=settle, quiet_seconds=quiet, timeout_seconds=timeout)
    _quiet_temporal_core()
    if as_json:
        result = run_async(run_demo(settings, chosen, engine, timings, lambda *_: None))
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

            result = run_async(run_demo(settings, chosen, engine, timings, update))
    if as_json:
        for run in result.levels:
            for key, outcome in run.incidents.items():
                emit_json({"level": run.level.value, "incident": key, **outcome.as_dict()})
        emit_json({"summary": _summary(result)})
        return
    _print_result(result)
