"""`autonomy simulate`: replay historical alerts through candidate configs and count what would have happened.

Nothing runs and nothing talks to Temporal: this is `evaluate` at scale, for the question a security lead asks
before raising a level or merging a policy change: how much would the machine have done alone, how many
approvals would my analysts have had to give, and which decisions does this change flip, and why.
The work is in `controller.oversight.simulate`; this module only parses options and prints.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from autonomy_controller.controller.cli.common import (
    JsonFlag,
    TrustNativeOption,
    cell,
    console,
    emit_json,
    err_console,
    fail,
    trusted_native,
    verdict_text,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.runtime import ENGINE_HELP, EngineName
from autonomy_controller.controller.ingest import TRUST_NOTHING, DeadLetter, IngestReport, TrustedSources, read_alerts
from autonomy_controller.controller.models import Alert, Incident, Level, Verdict
from autonomy_controller.controller.oversight.simulate import (
    CSV_FIELDS,
    DEFAULT_MAX_ALERTS,
    DEFAULT_MAX_OPEN,
    DEFAULT_WINDOW,
    DiffRow,
    SimConfig,
    Simulation,
    SimulationResult,
    Tally,
    stream_incidents,
)
from autonomy_controller.controller.oversight.simulate_html import DiffSample, SimulationReport, simulation_page
from autonomy_controller.controller.oversight.simulate_triage import TRIAGE_VERDICTS, TriageChange


@dataclass
class BytesRead:
    """How far through the input files reading has got, in bytes as stored (compressed for .gz).

    The progress bar's total is the sum of the file sizes, known before the first alert is read, so the bar
    can show a percentage and an ETA; alert counts cannot (nobody knows how many a file holds until it is
    read). Each file counts fully once its reader is done, whatever its last read-buffer step reported."""

    sizes: list[int]
    finished: int = 0
    current: int = 0
    _index: int = field(default=0, init=False, repr=False)

    @classmethod
    def of(cls, files: list[Path]) -> BytesRead:
        return cls([path.stat().st_size for path in files])

    @property
    def total(self) -> int:
        return sum(self.sizes)

    @property
    def done(self) -> int:
        return self.finished + self.current

    def at(self, offset: int) -> None:
        """The reader's position in the current file (bounded by its size: a file still being written may
        have grown since it was measured)."""
        self.current = min(offset, self.sizes[self._index])

    def file_done(self) -> None:
        self.finished += self.sizes[self._index]
        self.current = 0
        self._index += 1


def read_all(
    files: list[Path],
    dead_letter: DeadLetter,
    report: IngestReport,
    progress: BytesRead,
    trusted: TrustedSources = TRUST_NOTHING,
) -> Iterator[Alert]:
    """Every file's alerts in turn, lazily, keeping `progress` up to date."""
    for path in files:
        yield from read_alerts(path, dead_letter=dead_letter, report=report, on_position=progress.at, trusted=trusted)
        progress.file_done()


def progress_bar(enabled: bool) -> Progress:
    """Bytes of input against their total (percentage, ETA), with the alert and incident counts judged so far;
    on stderr, only on a terminal, and gone once the run ends.

    It measures reading: the incidents still open when the last byte is read (at most --window alerts' worth)
    are judged after it, so the bar can rest at 100% for that last stretch."""
    return Progress(
        SpinnerColumn(),
        TextColumn("simulating"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[alerts]} alerts, {task.fields[incidents]} incidents"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not (enabled and err_console.is_terminal),
    )


def _share(tally: Tally, verdict: Verdict) -> str:
    count = tally.verdicts[verdict.value]
    return f"{count} ({100.0 * count / tally.decisions:.0f}%)" if tally.decisions else "0"


def _counts(counts: Mapping[str, int]) -> str:
    """execute/approve/recommend/deny counts in one narrow cell."""
    return "/".join(str(counts.get(v.value, 0)) for v in Verdict) if counts else "-"


def _triage_share(count: int, total: int) -> str:
    return f"{count} ({100.0 * count / total:.0f}%)" if total else "0"


def print_triage(result: SimulationResult) -> None:
    """Each config's triage verdicts, as counts and shares of the incidents and of their alerts."""
    table = Table(title="triage verdicts the guard was given (levels/triage.yaml)")
    for column in ("config", "of", "total", *TRIAGE_VERDICTS):
        table.add_column(column, overflow="fold")
    for config, tally in result.triage.items():
        for unit, counts in (("incidents", tally.incidents), ("alerts", tally.alerts)):
            total = sum(counts.values())
            table.add_row(cell(config), unit, str(total), *(_triage_share(counts[v], total) for v in TRIAGE_VERDICTS))
    console.print(table)


def print_summary(result: SimulationResult) -> None:
    """Triage verdict shares per config, then three tables: verdict shares and analyst workload per config and
    level, then the same by class and by category (counts, so the tables stay narrow)."""
    print_triage(result)
    table = Table(title=f"{result.alerts} alerts, {result.incidents} incidents")
    for column in ("config", "level", "decisions", *(v.value for v in Verdict), "approvals (votes)"):
        table.add_column(column, overflow="fold")
    for (config, level), tally in result.tallies.items():
        table.add_row(
            cell(config),
            level,
            str(tally.decisions),
            *(_share(tally, v) for v in Verdict),
            f"{tally.approvals} ({tally.approver_votes})",
        )
    console.print(table)
    for title, attribute in (("action class", "by_class"), ("alert category", "by_category")):
        for config in result.configs:
            tallies = {level: result.tallies[(config, level)] for level in result.levels}
            breakdown = Table(title=f"{config}, by {title}", caption="execute/approve/recommend/deny")
            breakdown.add_column(title)
            for level in result.levels:
                breakdown.add_column(level, justify="right")
            keys = sorted({key for tally in tallies.values() for key in getattr(tally, attribute)})
            for key in keys:
                breakdown.add_row(key, *(_counts(getattr(tally, attribute).get(key, {})) for tally in tallies.values()))
            console.print(breakdown)


def print_triage_diff(changes: list[TriageChange], result: SimulationResult) -> None:
    """Incidents whose triage changed, before -> after, with the decisions that changed because of it."""
    shown = f" (first {len(changes)} shown)" if result.triage_changes > len(changes) else ""
    table = Table(
        title=f"triage that changed: {result.triage_changes} incident(s), {result.triage_verdict_changes} verdict(s); "
        f"{result.decisions_changed_by_triage} decision(s) changed because of it{shown}"
    )
    for column in ("incident", "alerts", "triage before -> after", "decisions changed because of it"):
        table.add_column(column, overflow="fold")
    for change in changes:
        caused = "; ".join(str(c) for c in change.caused) or "-"
        table.add_row(
            cell(change.incident), str(change.alerts), cell(f"{change.old} -> {change.new}"), cell(caused, 400)
        )
    console.print(table)


def print_diff(rows: list[DiffRow], result: SimulationResult) -> None:
    """Verdict changes first (they are what a reviewer acts on), then decisions whose reasons alone changed;
    a verdict the triage change flipped says so."""
    shown = f" (first {len(rows)} shown)" if result.diff_rows > len(rows) else ""
    title = (
        f"decisions that changed: {result.verdict_changes} verdict(s), "
        f"{result.diff_rows - result.verdict_changes} reason(s) only{shown}"
    )
    table = Table(title=title)
    for column in ("incident", "action", "level", "verdict", "reasons added", "reasons removed", "risk factors"):
        table.add_column(column, overflow="fold")
    for row in rows:
        verdict = f"{verdict_text(row.old_verdict or '-')} -> {verdict_text(row.new_verdict or '-')}"
        if row.because_of_triage:
            verdict += f" (triage {row.old_triage} -> {row.new_triage})"
        risk = "; ".join(f"{c.name} {c.old} -> {c.new}" for c in row.risk_changes)
        table.add_row(
            cell(row.incident),
            cell(f"{row.action_id} {row.action}"),
            row.level,
            verdict,
            cell("; ".join(row.reasons_added), 400),
            cell("; ".join(row.reasons_removed), 400),
            cell(risk),
        )
    console.print(table)


def write_csv(path: Path, result: SimulationResult) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(result.csv_rows())


def _where(config: SimConfig) -> str:
    return f"levels {config.settings.levels_dir}, policies {config.settings.policies_dir}"


def write_html(path: Path, report: SimulationReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(simulation_page(report), encoding="utf-8")


def simulate(
    alert_files: Annotated[list[Path], typer.Argument(help="Alert files (any supported format, .gz too).")],
    levels_dir: Annotated[
        Path | None, typer.Option("--levels", exists=True, file_okay=False, help="Levels (default: levels/).")
    ] = None,
    policies_dir: Annotated[
        Path | None, typer.Option("--policies", exists=True, file_okay=False, help="Policies (default: policies/).")
    ] = None,
    against_levels: Annotated[
        Path | None,
        typer.Option("--against-levels", exists=True, file_okay=False, help="Candidate levels: diff the decisions."),
    ] = None,
    against_policies: Annotated[
        Path | None,
        typer.Option(
            "--against-policies", exists=True, file_okay=False, help="Candidate policies: diff the decisions."
        ),
    ] = None,
    only_levels: Annotated[
        list[Level] | None, typer.Option("--level", help="Only these levels (repeatable). Default: L1-L5.")
    ] = None,
    scoped: Annotated[
        bool, typer.Option("--scoped", help="Judge at each scope's assigned level instead of at every level.")
    ] = False,
    engine: Annotated[EngineName | None, typer.Option(help=ENGINE_HELP)] = None,
    csv_file: Annotated[Path | None, typer.Option("--csv", help="Write the counters to this CSV file.")] = None,
    html_file: Annotated[
        Path | None,
        typer.Option("--html", help="Write a self-contained HTML report (charts, per-level tables, the diff) here."),
    ] = None,
    window: Annotated[
        int, typer.Option(min=1, help="Close an incident after this many alerts without one for it.")
    ] = DEFAULT_WINDOW,
    max_open: Annotated[int, typer.Option(min=1, help="Most incidents held open at once.")] = DEFAULT_MAX_OPEN,
    max_alerts: Annotated[
        int, typer.Option(min=1, help="Most alerts per incident; a longer storm is judged in slices.")
    ] = DEFAULT_MAX_ALERTS,
    show_diff: Annotated[
        int, typer.Option(min=0, help="Diff rows shown in the table and the HTML (all go to --json).")
    ] = 200,
    progress: Annotated[bool, typer.Option(help="Progress on stderr (only on a terminal).")] = True,
    trust_native: TrustNativeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay ALERT_FILES through ingest, grouping, the offline planner and the guard at L1-L5; nothing runs.

    Prints each level's share of execute / approve / recommend / deny by action class and alert category, and
    the approvals analysts would have had to give. With --against-levels and/or --against-policies, a second
    config judges the same incidents and every decision whose verdict or reasons differ is listed with the
    reasons that appeared or disappeared and the risk factors that moved; each incident whose triage changed
    (another levels/triage.yaml) is listed with the decisions that changed because of it. Triage verdict shares
    per config are always shown. --json: one JSON line per diff row (type "diff" or "triage_diff"), then one
    summary document. --html: the same as a page with a stacked bar chart per level.
    """
    settings = Settings()
    trusted = trusted_native(trust_native)
    base = SimConfig.from_dirs("base", settings, levels_dir, policies_dir)
    against = (
        SimConfig.from_dirs("against", base.settings, against_levels, against_policies)
        if against_levels or against_policies
        else None
    )
    for path in alert_files:
        if not path.is_file():
            fail(f"no such alert file: {path}", 2)
    report = IngestReport()
    dead_letter = DeadLetter(settings.dead_letter_path)
    consumed = BytesRead.of(alert_files)
    alerts = read_all(alert_files, dead_letter, report, consumed, trusted)
    incidents = stream_incidents(alerts, window, max_open, max_alerts)
    sample = DiffSample(show_diff)  # bounded: the rest are counted, and all go to --json
    bar = progress_bar(progress)
    with Simulation(base, against, levels=only_levels, scoped=scoped, engine=engine) as simulation, bar:
        if simulation.result.unavailable:
            fail("; ".join(f"{name}: {why}" for name, why in simulation.result.unavailable.items()), 2)
        task = bar.add_task("simulate", total=consumed.total, alerts=0, incidents=0)

        def advance(_: Incident) -> None:
            done = simulation.result
            bar.update(task, completed=consumed.done, alerts=done.alerts, incidents=done.incidents)

        for row in simulation.run(incidents, on_incident=advance):
            sample.add(row)
            if as_json:
                emit_json(row.as_json())
    result = simulation.result
    if csv_file is not None:
        write_csv(csv_file, result)
    if html_file is not None:
        configs = {config.name: _where(config) for config in simulation.configs}
        inputs = [str(path) for path in alert_files]
        write_html(html_file, SimulationReport(result, report, inputs, configs, sample if against else None))
    if as_json:
        emit_json({**result.as_json(), "ingest": report.summary()})
    else:
        print_summary(result)
        if against is not None:
            print_triage_diff(sample.triage_changes(), result)
            print_diff(sample.rows(), result)
        err_console.print(f"[dim]{escape(report.summary())}[/]")
    if html_file is not None:
        err_console.print(f"[dim]HTML report: {escape(str(html_file))}[/]", soft_wrap=True)
    if report.dead_lettered:
        err_console.print(f"[yellow]{report.dead_lettered} malformed record(s) kept in {settings.dead_letter_path}[/]")
