"""For security leads: what autonomy did (scorecards) and whether a shadow trial earns a promotion.

Both read the ledger only, so they can run against a copy of production state.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.levels import LevelConfigError, load_level_config, parse_scope_name
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.ledger.outcomes import outcomes
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.promotion import Criterion, TrialEvidence, gather, judge
from autonomy_controller.controller.oversight.scorecards import (
    ApproverCard,
    RuleCard,
    build_approver_cards,
    build_rule_cards,
    build_scorecards,
)
from autonomy_controller.controller.oversight.scorecards_html import (
    APPROVER_COLUMNS,
    COLUMNS,
    RULE_COLUMNS,
    RULE_NOTE,
    approver_row,
    rule_row,
    scorecards_page,
    table_row,
)

SinceOption = Annotated[
    float | None, typer.Option("--since-days", min=0, help="Only decisions from the last N days. Default: all.")
]


def _since(days: float | None) -> datetime | None:
    return None if days is None else datetime.now(UTC) - timedelta(days=days)


def scorecard(
    scope: Annotated[
        str | None, typer.Option("--scope", help="Only this scope, e.g. environment:production or default.")
    ] = None,
    since_days: SinceOption = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML page with charts here.")] = None,
    by_approver: Annotated[
        bool, typer.Option("--by-approver", help="Per approver instead: votes, rejections, unsigned, latency.")
    ] = False,
    by_rule: Annotated[
        bool,
        typer.Option("--by-rule", help="Per rule id instead: containment people approved vs rejected or reverted."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Per scope and effective level: share handled alone, approvals asked/granted/rejected/timed out, approval
    latency, verification failures, reverts and mean time to contain (first alert -> verified containment).

    The scope is the one that assigned the level (levels/scopes.yaml); an incident's containment time counts
    where its first verified containment was decided.
    """
    if scope is not None:
        try:
            parse_scope_name(scope)
        except ValueError as exc:
            fail(str(exc), 2)
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        incidents = list(outcomes(ledger, _since(since_days)))
    cards, approvers = build_scorecards(incidents, scope), build_approver_cards(incidents, scope)
    rules = build_rule_cards(incidents, scope)
    window = "all time" if since_days is None else f"last {since_days:g} days"
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        subtitle = f"ledger {settings.ledger_url.split('@')[-1]} · {window}"
        html.write_text(scorecards_page(cards, approvers, subtitle, rules))
    if by_approver:
        _print_approvers(approvers, window, as_json)
    elif by_rule:
        _print_rules(rules, window, as_json)
    elif as_json:
        for card in cards:
            emit_json(card.summary())
    else:
        table = Table(title=f"Scorecards ({window})")
        for index, column in enumerate(COLUMNS):
            table.add_column(column, justify="right" if index >= 2 else "left", overflow="fold")
        for card in cards:
            table.add_row(*(escape(str(value)) for value in table_row(card)))
        console.print(table if cards else "[dim]no decisions in the ledger for this window[/]")
    if html is not None and not as_json:
        console.print(f"html: {escape(str(html))}", soft_wrap=True)


def _print_approvers(approvers: list[ApproverCard], window: str, as_json: bool) -> None:
    if as_json:
        for approver in approvers:
            emit_json(approver.summary())
        return
    table = Table(title=f"Approvers ({window})")
    for index, column in enumerate(APPROVER_COLUMNS):
        table.add_column(column, justify="right" if index else "left")
    for approver in approvers:
        table.add_row(*(escape(str(value)) for value in approver_row(approver)))
    console.print(table if approvers else "[dim]no votes in the ledger for this window[/]")


def _print_rules(rules: list[RuleCard], window: str, as_json: bool) -> None:
    if as_json:
        for rule in rules:
            emit_json(rule.summary())
        return
    table = Table(title=f"Rules: people's overrides of containment ({window})", caption=RULE_NOTE)
    for index, column in enumerate(RULE_COLUMNS):
        table.add_column(column, justify="right" if index else "left")
    for rule in rules:
        table.add_row(*(escape(str(value)) for value in rule_row(rule)))
    console.print(table if rules else "[dim]no containment decided in the ledger for this window[/]")


def promote_check(
    scope: Annotated[str, typer.Argument(help="The trial's scope, e.g. environment:staging, category:scanner.")],
    to: Annotated[Level, typer.Option("--to", help="The level the scope would be promoted to.")],
    as_json: JsonFlag = False,
) -> None:
    """Say whether SCOPE's shadow trial at --to meets that level's `promotion:` criteria, with the numbers.

    Reads the trial's decisions (scopes.yaml `trials: {SCOPE: LEVEL}`) from the ledger and what happened to the
    live actions: an action the candidate would have run alone that a person rejected is an override. Exit 0
    when every criterion holds, 1 when one does not (no evidence is never a pass), 2 on a usage error.
    """
    try:
        parse_scope_name(scope)
    except ValueError as exc:
        fail(str(exc), 2)
    settings = Settings()
    try:
        criteria = load_level_config(settings.levels_dir).levels[to].promotion
    except LevelConfigError as exc:
        fail(str(exc), 2)
    if criteria is None:
        fail(f"{to.value}.yaml declares no promotion: criteria, so nothing can be checked", 2)
    with Ledger.from_url(settings.ledger_url) as ledger:
        evidence = gather(outcomes(ledger), scope, to.value)
    checks = judge(evidence, criteria)
    ready = evidence.decisions > 0 and all(c.met for c in checks)
    if as_json:
        emit_json(
            {
                "scope": scope,
                "to": to.value,
                "ready": ready,
                "criteria": [asdict(c) for c in checks],
                "evidence": evidence.as_json(),
            }
        )
    else:
        _print_check(scope, to, checks, evidence, ready)
    if not ready:
        raise typer.Exit(1)


def _print_check(scope: str, to: Level, checks: list[Criterion], evidence: TrialEvidence, ready: bool) -> None:
    table = Table(title=f"promote {escape(scope)} to {to.value}: {'READY' if ready else 'NOT READY'}")
    for column in ("criterion", "required", "measured", "met"):
        table.add_column(column)
    for check in checks:
        table.add_row(check.name, check.required, check.measured, "[green]yes[/]" if check.met else "[red]no[/]")
    console.print(table)
    console.print(
        f"{evidence.would_run_alone} of {evidence.decisions} trial decisions would have run alone: "
        f"{evidence.agreed} approved by people, {evidence.overridden} rejected (overrides), "
        f"{evidence.unanswered} unanswered; the candidate was stricter than live {evidence.candidate_stricter} time(s)."
    )
    if evidence.decisions == 0:
        console.print(f'[yellow]no trial decisions: add trials: {{"{escape(scope)}": {to.value}}} to scopes.yaml[/]')
    for override in evidence.overrides:
        console.print(
            f"  override: {escape(override['incident'])} {override['action_id']} {escape(override['action'])} "
            f"(ledger seq {override['decision_seq']}): {escape(override['detail'])}"
        )
