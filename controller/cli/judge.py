"""Judging without running: `evaluate` (plan and guard a file of alerts), `levels ...` and `policy test`.

Nothing here talks to Temporal or executes an action: these are the commands a security lead or a policy
author uses to see what the controller *would* do, and to check the declarative config before it is live.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.attackers.impact import case_impact
from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.cli.common import (
    VERDICT_STYLE,
    JsonFlag,
    TrustNativeOption,
    console,
    err_console,
    trusted_native,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.levels import LevelConfigError, load_level_config
from autonomy_controller.controller.decision.runtime import ENGINE_HELP, EngineName, open_guard
from autonomy_controller.controller.ingest import DeadLetter, IngestReport, read_alerts
from autonomy_controller.controller.models import (
    GuardDecision,
    Incident,
    Level,
    Plan,
    PlannerTriage,
    ProposedAction,
    TriageSummary,
)
from autonomy_controller.controller.planning import ClaudeConfigError, ClaudeSettings, OfflinePlanner
from autonomy_controller.controller.planning.choice import PlanChoice, make_plan
from autonomy_controller.controller.render import triage_view
from autonomy_controller.controller.triage import TriageResult


class PlanFileError(ValueError):
    pass


def load_plan_file(path: Path, incident_key: str) -> Plan:
    """A hand-written plan: {"actions": [{"action", "params", "rationale", "confidence"}], "planner_triage"?};
    ids are assigned.

    A plan file is untrusted, like any planner's output: its `planner_triage` ({verdict, confidence, rationale})
    may lower the controller's triage for the guard, never raise it (Plan.planner_triage), and nothing else is
    read: a `triage` field claiming "malicious, confidence 1" is ignored, because the triage the guard weighs
    is the controller's own (set on the plan by `evaluate`, as the workflow's plan step does)."""
    try:
        document = json.loads(path.read_text())
        actions = [
            ProposedAction.model_validate({"id": f"a{i}", **entry})
            for i, entry in enumerate(document["actions"], start=1)
        ]
        claimed = document.get("planner_triage")
        planner_triage = PlannerTriage.model_validate(claimed) if claimed is not None else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlanFileError(f"{path}: not a valid plan file: {exc}") from exc
    return Plan(
        incident_key=incident_key, planner="file", mode="design", actions=actions, planner_triage=planner_triage
    )


def triage_of(guard: Guard | UnavailableGuard, incident: Incident) -> tuple[TriageResult | None, TriageSummary | None]:
    """The controller's triage (full, and the summary the guard weighs), made as the workflow's plan step makes
    it but without the ledger's history and feedback (evaluate has no ledger). None without a guard: every
    action is denied then anyway."""
    if not isinstance(guard, Guard):
        return None, None
    result = guard.triage(incident)
    return result, guard.triage_summary(result)


def incident_json(incident: Incident) -> dict[str, Any]:
    """The incident without raw sensor records (they stay in the ledger, not in every printout)."""
    return incident.model_dump(mode="json", exclude={"alerts": {"__all__": {"raw"}}})


def _params_text(params: dict[str, Any]) -> str:
    """Params for a table cell, escaped: they can carry alert text, which must never become Rich markup."""
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return escape(text if len(text) <= 60 else text[:57] + "...")


def triage_lines(result: TriageResult | None, judged: TriageSummary | None) -> list[str]:
    """The incident's triage for the table view, escaped (factor texts and rule ids are alert-derived): the
    verdict, confidence, score and ATT&CK ids, then what the guard was given when that is lower."""
    if result is None or judged is None:
        return ["triage: none (the guard is unavailable: every action is denied)"]
    detail = result.model_dump(mode="json")
    ids = ", ".join(triage_view.technique_ids(detail)) or "-"
    lines = [f"triage: {triage_view.verdict_text(detail)}; ATT&CK {ids}; model {result.model_revision}"]
    differs = triage_view.guard_differs(detail, judged.model_dump(mode="json"))
    return [escape(line) for line in lines + ([differs] if differs else [])]


def print_incident(
    incident: Incident,
    plan: Plan,
    decisions: list[GuardDecision],
    triage: tuple[TriageResult | None, TriageSummary | None] = (None, None),
) -> None:
    first = decisions[0] if decisions else None
    level = f"{first.declared_level} -> {first.effective_level}" if first else "-"
    console.print(
        f"\n[bold]{escape(incident.key)}[/] {incident.category.value} {incident.severity.value}, "
        f"{len(incident.alerts)} alert(s), source {incident.src_ip or '-'}, "
        f"{'blocked by sensor' if incident.blocked else 'NOT blocked by sensor'}; "
        f"plan by {plan.planner}{f' ({plan.playbook})' if plan.playbook else ''}; level {level}"
    )
    result, summary = triage
    # What the guard weighed: the decisions say (a planner may have lowered it); an empty plan, the same lowering.
    judged = first.triage if first else None
    if judged is None and summary is not None:
        judged = summary.lowered_to(plan.planner_triage, f"planner:{plan.planner}")
    for line in triage_lines(result, judged):
        console.print(f"  {line}", soft_wrap=True)
    if first and first.level_reasons:
        console.print("  level: " + escape("; ".join(first.level_reasons)), style="dim")
    table = Table(show_lines=False, pad_edge=False)
    for column in ("id", "action", "params", "verdict", "risk", "why"):
        table.add_column(column, overflow="fold")
    proposed = {a.id: a for a in plan.actions}
    for decision in decisions:
        action = proposed.get(decision.action_id)
        table.add_row(
            decision.action_id,
            decision.action,
            _params_text(action.params) if action else "",
            f"[{VERDICT_STYLE[decision.verdict]}]{decision.verdict.value}[/]",
            f"{decision.risk.score:.0f}" if decision.risk else "-",
            escape("; ".join(decision.reasons)),
        )
    console.print(table)


def evaluate(
    alert_file: Annotated[Path, typer.Argument(help="Alerts: ModSecurity v2/v3, Suricata EVE, OCSF or Alert JSON.")],
    plan_file: Annotated[
        Path | None, typer.Option("--plan", help="Judge this plan instead of the planner's (JSON file).")
    ] = None,
    level: Annotated[
        Level | None,
        typer.Option("--level", help="Judge at this level instead of the scope's assigned level."),
    ] = None,
    engine: Annotated[EngineName | None, typer.Option(help=ENGINE_HELP)] = None,
    trust_native: TrustNativeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Ingest ALERT_FILE, plan a response per incident and show each action's verdict, risk and reasons.

    Nothing is executed. Malformed lines go to the dead-letter file and are reported on stderr.
    """
    settings = Settings()
    trusted = trusted_native(trust_native)
    report = IngestReport()
    dead_letter = DeadLetter(settings.dead_letter_path)
    try:
        incidents = group_alerts(read_alerts(alert_file, dead_letter=dead_letter, report=report, trusted=trusted))
    except OSError as exc:
        err_console.print(f"[red]cannot read {alert_file}: {exc}[/]")
        raise typer.Exit(2) from exc
    try:
        claude_settings = ClaudeSettings.from_env()
    except ClaudeConfigError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from exc
    with open_guard(settings, engine) as guard:
        offline = OfflinePlanner(settings.playbooks_dir, asset_groups=guard.asset_groups)
        claude = None
        if claude_settings:  # the Anthropic SDK loads only when Claude is configured (it costs a second)
            from autonomy_controller.controller.planning import ClaudePlanner

            claude = ClaudePlanner(claude_settings, offline)
        for incident in map(guard.enrich, incidents):
            triage = triage_of(guard, incident)
            summary = triage[1]
            factors = triage[0].factors if triage[0] else []
            # as the loop's plan step assesses it; the access-log lines it reads apart are in the file's alerts here
            impact = case_impact(guard, incident.alerts, settings)
            try:  # Claude is told the controller's triage as the workflow tells it (the summary and its factors)
                choice = (
                    PlanChoice(load_plan_file(plan_file, incident.key))
                    if plan_file
                    else make_plan(guard, incident, offline, claude, summary, factors, impact)
                )
            except PlanFileError as exc:
                err_console.print(f"[red]{exc}[/]")
                raise typer.Exit(2) from exc
            # the controller's triage and impact, never the plan's own
            plan = choice.plan.model_copy(update={"triage": summary, "impact": impact})
            if choice.claude is not None and choice.claude.reason and not as_json:
                err_console.print(f"[yellow]{escape(incident.key)}: {escape(choice.claude.reason)}[/]")
            decisions = guard.decide_plan(incident, plan, level, triage=summary)
            if as_json:
                record = {
                    "incident": incident_json(incident),
                    "triage": triage[0].model_dump(mode="json") if triage[0] else None,
                    "plan": plan.model_dump(mode="json"),
                    "planner_outcome": choice.claude.outcome if choice.claude else "offline",
                    "planner_reason": choice.claude.reason if choice.claude else None,
                    "decisions": [d.model_dump(mode="json") for d in decisions],
                }
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                print_incident(incident, plan, decisions, triage)
    if report.dead_lettered:
        err_console.print(f"[yellow]{report.dead_lettered} malformed record(s) kept in {settings.dead_letter_path}[/]")
    if not as_json:
        err_console.print(f"[dim]{escape(report.summary())}[/]")


def levels_validate(as_json: JsonFlag = False) -> None:
    """Validate L1-L5, scopes and the risk model; print every error with its file and key."""
    settings = Settings()
    try:
        load_level_config(settings.levels_dir)
    except LevelConfigError as exc:
        if as_json:
            sys.stdout.write(json.dumps({"valid": False, "errors": exc.errors}) + "\n")
        else:
            for error in exc.errors:
                err_console.print(f"[red]{error}[/]")
        raise typer.Exit(1) from exc
    if as_json:
        sys.stdout.write(json.dumps({"valid": True, "errors": []}) + "\n")
    else:
        console.print(f"[green]levels in {settings.levels_dir} are valid[/]")


def levels_show(as_json: JsonFlag = False) -> None:
    """Show which level applies where (scopes), the kill switch and shadow flag, and each level's limits."""
    config = load_level_config(Settings().levels_dir)
    if as_json:
        document = {"scopes": config.scopes.model_dump(mode="json"), "levels": config.policy_data()}
        sys.stdout.write(json.dumps(document) + "\n")
        return
    scopes = config.scopes
    console.print(
        f"default level [bold]{scopes.default}[/], kill switch {'[red]ON[/]' if scopes.kill_switch else 'off'} "
        f"(drops to {scopes.kill_switch_level}), shadow mode {'on' if scopes.shadow else 'off'}"
    )
    table = Table(title="scope overrides (most restrictive match wins)")
    for column in ("scope", "value", "level"):
        table.add_column(column)
    for kind, mapping in (
        ("environment", scopes.environments),
        ("asset group", scopes.asset_groups),
        ("category", scopes.categories),
    ):
        for key, lv in mapping.items():
            table.add_row(kind, str(key), lv.value)
    console.print(table)
    for name, candidate in scopes.trials.items():
        console.print(
            f"shadow trial: {escape(name)} decided as {candidate.value} too (recorded, never run); "
            f"`autonomy levels promote-check {escape(name)} --to {candidate.value}` weighs it"
        )
    levels = Table(title="levels")
    for column in (
        "level",
        "name",
        "enabled",
        "auto risk <=",
        "approve risk <=",
        "approval",
        "operating domain",
    ):
        levels.add_column(column, overflow="fold")
    for lv, spec in config.levels.items():
        domain = spec.operating_domain
        levels.add_row(
            lv.value,
            spec.name,
            "yes" if spec.enabled else "[red]no[/]",
            f"{spec.risk.auto_max:g}",
            f"{spec.risk.approve_max:g}",
            f"quorum {spec.approval.quorum}, {spec.approval.timeout_seconds}s, then {spec.approval.on_timeout.value}",
            "-"
            if domain is None
            else f"{len(domain.categories) or 'all'} categories, env {domain.environments or 'any'}, "
            f"confidence >= {domain.min_confidence}",
        )
    console.print(levels)


def levels_explain(as_json: JsonFlag = False) -> None:
    """For each level, what each action class may do alone (execute), with approval, or only as advice."""
    config = load_level_config(Settings().levels_dir)
    classes = list(next(iter(config.levels.values())).classes)
    if as_json:
        document = {lv.value: {c.value: spec.classes[c].value for c in classes} for lv, spec in config.levels.items()}
        sys.stdout.write(json.dumps(document) + "\n")
        return
    table = Table(title="what the machine may do alone, per level and action class")
    table.add_column("class")
    for lv, spec in config.levels.items():
        table.add_column(f"{lv.value} {spec.name}" + ("" if spec.enabled else " (disabled)"))
    for action_class in classes:
        cells = []
        for spec in config.levels.values():
            verdict = spec.classes[action_class]
            cells.append(f"[{VERDICT_STYLE[verdict]}]{verdict.value}[/]")
        table.add_row(action_class.value, *cells)
    console.print(table)
    for lv, spec in config.levels.items():
        notes = [
            f"an action that changes something runs alone only at risk <= {spec.risk.auto_max:g}",
            f"above {spec.risk.approve_max:g} it is only recommended",
        ]
        domain = spec.operating_domain
        if spec.fallback and domain and (domain.categories or domain.environments or domain.min_confidence):
            notes.append(f"outside its operating domain it runs as {spec.fallback.level}")
        if not spec.enabled:
            notes.append(f"disabled: scopes assigned {lv.value} run as {spec.fallback.level if spec.fallback else '-'}")
        console.print(f"[bold]{lv.value}[/] {spec.j3016} ({'; '.join(notes)}.)")
