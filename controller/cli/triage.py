"""`autonomy triage`: why triage said what it said about an incident, and which WAF rules people keep refusing.

Both read the ledger only. `explain` prints the TriageResult the controller recorded in the incident's PLAN
record (`triage_detail`) and the guard's summary (`triage`), not a triage recomputed now: the decision was made
on that one. `exclusions` lists rules and rule+path pairs whose containment people rejected or reverted, with a
ModSecurity exclusion for a person to review; nothing is ever applied.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import IncidentArg, JsonFlag, cell, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.triage import ExclusionRefused, FeedbackCounts, TriageResult, propose_exclusion
from autonomy_controller.controller.triage.ledger_view import ledger_view


def _row(rule: str, path: str | None, counts: FeedbackCounts) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rule_id": rule,
        "path": path,
        "rejected": counts.rejected,
        "reverted": counts.reverted,
        "confirmed": counts.confirmed,
        "proposal": None,
        "refused": None,
    }
    try:
        row["proposal"] = propose_exclusion(rule, path=path).model_dump(mode="json") if path else None
        if path is None:
            row["refused"] = "rule-wide: pick one of its paths below (removing a rule everywhere is not proposed)"
    except ExclusionRefused as exc:
        row["refused"] = str(exc)
    return row


def exclusions(
    min_rejections: Annotated[
        int, typer.Option("--min-rejections", min=1, help="Rejected + reverted at least this often.")
    ] = 3,
    as_json: JsonFlag = False,
) -> None:
    """Rules (and rule + URL path) whose containment people rejected or reverted at least N times, most first,
    with confirmations beside them and a ModSecurity exclusion line to review. Never applied: a person decides,
    and the path is the attacker's choice (an excluded path is where an attacker would aim)."""
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        feedback = ledger_view(ledger).all_feedback()
    rows = [_row(r, None, c) for r, c in feedback.rules.items() if c.rejected + c.reverted >= min_rejections]
    rows += [_row(r, p, c) for (r, p), c in feedback.rule_paths.items() if c.rejected + c.reverted >= min_rejections]
    rows.sort(key=lambda x: (-(x["rejected"] + x["reverted"]), x["rule_id"], x["path"] or ""))
    if as_json:
        for row in rows:
            emit_json(row)
        return
    table = Table(title=f"Rules people rejected or reverted at least {min_rejections} time(s)")
    for column in ("rule", "path", "rejected", "reverted", "confirmed", "exclusion to review"):
        table.add_column(column, overflow="fold", justify="right" if column in ("rejected", "reverted") else "left")
    for row in rows:
        proposal = row["proposal"]["directive"] if row["proposal"] else f"[dim]{escape(row['refused'])}[/]"
        table.add_row(
            escape(row["rule_id"]),
            cell(row["path"] or "(any)"),
            str(row["rejected"]),
            str(row["reverted"]),
            str(row["confirmed"]),
            escape(proposal) if row["proposal"] else proposal,
        )
    console.print(table if rows else "[dim]no rule reaches that many rejections in the ledger[/]")


def explain(incident: IncidentArg, as_json: JsonFlag = False) -> None:
    """The incident's triage as the controller recorded it before planning: verdict, confidence, score, every
    factor (value, weight, contribution, why, trust) and the ATT&CK techniques. Exit 1 when the ledger has no
    triage for it (no plan yet, or a guard that was unavailable)."""
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        plans = [r for r in ledger.records(incident, [RecordKind.PLAN]) if r.payload.get("triage_detail")]
    if not plans:
        fail(f"the ledger has no triage for incident {incident} (no plan recorded one; see `autonomy audit show`)")
    record = plans[-1]  # a reopened incident was planned again: its latest triage is the one acted on
    result = TriageResult.model_validate(record.payload["triage_detail"])
    summary = record.payload.get("triage") or {}
    if as_json:
        emit_json({"incident": incident, "plan_seq": record.seq, "guard": summary, "triage": result.model_dump()})
        return
    _print_explain(incident, record.seq, result, summary)


def _print_explain(incident: str, seq: int, result: TriageResult, summary: dict[str, Any]) -> None:
    title = (
        f"{escape(incident)}: {result.verdict.value} (confidence {result.confidence:.2f}, score {result.score:g}) "
        f"· ledger seq {seq}"
    )
    table = Table(title=title)
    for column in ("factor", "value", "weight", "points", "trust", "why"):
        numeric = column in ("value", "weight", "points")
        table.add_column(column, overflow="fold", justify="right" if numeric else "left")
    for f in result.factors:
        style = "red" if f.contribution < 0 else ""
        points = f"[{style}]{f.contribution:+.2f}[/]" if style else f"{f.contribution:+.2f}"
        table.add_row(escape(f.name), f"{f.value:.2f}", f"{f.weight:g}", points, f.trust, cell(f.why, 300))
    console.print(table)
    guard_verdict = summary.get("verdict")
    if guard_verdict and guard_verdict != result.verdict.value:
        console.print(
            f"the guard decided on [bold]{escape(str(guard_verdict))}[/] "
            f"(confidence {summary.get('confidence')}): points the request's own text earned do not count for it"
        )
    techniques = ", ".join(f"{t.id} {t.name}" for t in result.techniques) or "none"
    console.print(f"ATT&CK: {escape(techniques)}", soft_wrap=True)
    e = result.evidence
    console.print(
        f"[dim]{e.alerts} alert(s), {e.requests} request(s), {e.distinct_rules} rule(s), sensors "
        f"{escape(', '.join(e.sensors)) or '-'}; model {escape(result.model_revision[:12])}[/]"
    )
