"""The trail for people: Markdown (tickets, wikis, diffs) and self-contained HTML (controller/render/html.py).

Both say the same things in the same order, and both treat every value as hostile: alert evidence, comments
and rationales are attacker- or person-controlled. HTML escapes through controller/render/html.py; Markdown through
controller/render/markdown.py (text escaped, literals in code spans, line breaks and invisible characters shown), so a
viewer that renders inline HTML still shows an `<img onerror=...>` as text and no value forges a heading.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from autonomy_controller.controller.ledger import observations
from autonomy_controller.controller.oversight.reports import case_page_link, safe_name
from autonomy_controller.controller.oversight.trail.model import (
    ActionTrail,
    Cite,
    Disagreement,
    Fact,
    Mark,
    RunInfo,
    Source,
    Step,
    Tone,
    Trail,
)
from autonomy_controller.controller.render.html import Html, badge, link, page, table, tag
from autonomy_controller.controller.render.markdown import code as md_code
from autonomy_controller.controller.render.markdown import text as md


class TrailFormat(StrEnum):
    MD = "md"
    HTML = "html"
    BOTH = "both"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _cites(cites: Iterable[Cite]) -> str:
    """ "ledger seqs 1, 2; history events 11, 13": every reference, grouped by source, each listed once."""
    groups: dict[Source, list[int]] = {}
    for cite in cites:
        refs = groups.setdefault(cite.source, [])
        if cite.ref not in refs:
            refs.append(cite.ref)
    names = {Source.LEDGER: ("ledger seq", "ledger seqs"), Source.HISTORY: ("history event", "history events")}
    return "; ".join(
        f"{names[source][len(refs) > 1]} {', '.join(map(str, sorted(refs)))}" for source, refs in groups.items()
    )


def _history_line(trail: Trail) -> str:
    history = trail.history
    if not history.available:
        return f"ABSENT: {history.reason}. This trail is told from the ledger alone; nothing was cross-checked."
    runs = ", ".join(f"{r.run_id} ({r.status}, {r.events} events)" for r in history.runs) or "no runs"
    return f"{len(history.runs)} run(s) from {history.address}: {runs}"


def _disagreement_line(trail: Trail) -> str:
    count = trail.disagreement_count
    if not trail.history.available:
        return "not checked (no workflow history)"
    return "none" if count == 0 else f"{count}: listed under each action and below"


# -- Markdown ---------------------------------------------------------------------------------------------


def _md_marks(marks: Iterable[Mark]) -> str:
    return "".join(f" **{md(m.text)}**" for m in marks)


def _md_fact(fact: Fact, indent: str) -> list[str]:
    cites = f" \\[{_cites(fact.cites)}\\]" if fact.cites else ""
    lines = [f"{indent}- {md(fact.text)}{_md_marks(fact.marks)}{cites}"]
    if fact.code is not None:
        lines.append(f"{indent}  {md_code(fact.code)}")
    return lines


def _md_step(number: int, step: Step) -> list[str]:
    at = f" ({_when(step.at)})" if step.at else ""
    lines = [f"{number}. **{md(step.title)}**{_md_marks(step.marks)}{at}"]
    for fact in step.facts:
        lines += _md_fact(fact, "   ")
    if step.grid is not None:
        lines += ["", "   | " + " | ".join(md(h) for h in step.grid.headers) + " |"]
        lines.append(
            "   |" + "|".join("---:" if i in step.grid.numeric else "---" for i in range(len(step.grid.headers))) + "|"
        )
        lines += ["   | " + " | ".join(md(cell) for cell in row) + " |" for row in step.grid.rows]
        lines.append("")
    return lines


def _md_disagreements(items: list[Disagreement], title: str) -> list[str]:
    if not items:
        return []
    lines = [f"**{title}**", ""]
    lines += [f"- **DISAGREEMENT** {md(d.text)}" + (f" \\[{_cites(d.cites)}\\]" if d.cites else "") for d in items]
    return [*lines, ""]


def _md_action(action: ActionTrail) -> list[str]:
    verdict = action.verdict or "undecided"
    lines = [
        f"## {md(action.action_id)} {md(action.action)}: {md(verdict)}, {md(action.outcome)}",
        "",
        f"Run {md(action.run_id or '-')}.",
        "",
        f"> {md(action.summary)}",
        "",
    ]
    for number, step in enumerate(action.steps, start=1):
        lines += _md_step(number, step)
    lines.append("")
    return lines + _md_disagreements(action.disagreements, "Ledger and history disagree")


def _md_run(run: RunInfo) -> list[str]:
    lines = [
        f"- run {md(run.run_id)}: {md(run.status)}, {run.events} events, started {_when(run.started_at)}, "
        f"closed {_when(run.closed_at)}, {run.alerts_signalled} alert(s) signalled"
        + (f"; requested {md(run.requested)}" if run.requested else "")
    ]
    for fact in run.timers:
        lines += _md_fact(fact, "  ")
    return lines


def render_markdown(trail: Trail) -> str:
    """The trail as Markdown: overview, one section per action with its numbered steps, notes, history."""
    out = [f"# Audit trail: {md(trail.incident_key)}", ""]
    out.append(f"- generated {_when(trail.generated_at)} from {trail.records} ledger record(s)")
    page_href = case_page_link(trail.incident_key)  # built from a canonical address: file-safe characters only
    if page_href:
        out.append(f"- source {md(observations.case_address(trail.incident_key))} ([attacker page]({page_href}))")
    out.append(f"- ledger chain: {'OK' if trail.ledger.ok else '**TAMPERED**'}: {md(trail.ledger.summary)}")
    out.append(f"- workflow history: {md(_history_line(trail))}")
    out.append(f"- ledger and history disagree: {md(_disagreement_line(trail))}")
    out += ["", "| action | run | verdict | outcome | disagreements |", "|---|---|---|---|---:|"]
    for action in trail.actions:
        out.append(
            f"| {md(action.action_id)} {md(action.action)} | {md((action.run_id or '-')[:8])} | "
            f"{md(action.verdict or '-')} | {md(action.outcome)} | {len(action.disagreements)} |"
        )
    out.append("")
    for action in trail.actions:
        out += _md_action(action)
    if trail.notes or trail.disagreements:
        out += ["## Incident notes", ""]
        for fact in trail.notes:
            out += _md_fact(fact, "")
        out.append("")
        out += _md_disagreements(trail.disagreements, "Incident-level disagreements")
    out += ["## Workflow history", ""]
    if trail.history.available:
        for run in trail.history.runs:
            out += _md_run(run)
    else:
        out.append(f"**Workflow history absent**: {md(trail.history.reason)}")
    out += ["", "## Ledger verification", "", md(trail.ledger.summary), ""]
    return "\n".join(out)


# -- HTML -------------------------------------------------------------------------------------------------


def _badges(marks: Iterable[Mark]) -> Html:
    return Html("".join(" " + badge(m.text, m.tone.value) for m in marks))


def _html_cites(cites: list[Cite]) -> Html:
    return tag("span", f" [{_cites(cites)}]", cls="muted") if cites else Html("")


def _html_fact(fact: Fact) -> Html:
    code = tag("div", tag("code", fact.code)) if fact.code is not None else ""
    return tag("li", fact.text, _badges(fact.marks), _html_cites(fact.cites), code)


def _html_step(step: Step) -> Html:
    at = tag("span", f" {_when(step.at)}", cls="muted") if step.at else ""
    facts = tag("ul", *(_html_fact(f) for f in step.facts)) if step.facts else ""
    grid = table(step.grid.headers, step.grid.rows, step.grid.numeric) if step.grid else ""
    return tag("li", tag("b", step.title), _badges(step.marks), at, facts, grid)


def _html_disagreements(items: list[Disagreement]) -> Html:
    if not items:
        return Html("")
    rows = (tag("li", badge("disagreement", Tone.BAD.value), " ", d.text, _html_cites(d.cites)) for d in items)
    return tag("div", tag("h3", "Ledger and history disagree"), tag("ul", *rows))


def _html_action(action: ActionTrail) -> Html:
    verdict = action.verdict or "undecided"
    title = tag(
        "h2",
        f"{action.action_id} {action.action} ",
        badge(verdict, _verdict_tone(verdict)),
        " ",
        badge(action.outcome, action.outcome_tone.value),
    )
    return tag(
        "section",
        title,
        tag("p", "run ", tag("span", action.run_id or "-", cls="mono"), cls="sub"),
        tag("p", action.summary),
        tag("ol", *(_html_step(s) for s in action.steps), cls="steps"),
        _html_disagreements(action.disagreements),
    )


def _verdict_tone(verdict: str) -> str:
    return {"execute": "ok", "approve": "warn", "deny": "bad"}.get(verdict, "info")


def _html_overview(trail: Trail) -> Html:
    ledger = badge("chain OK", "ok") if trail.ledger.ok else badge("TAMPERED", "bad")
    history = badge("history joined", "ok") if trail.history.available else badge("history ABSENT", "bad")
    count = trail.disagreement_count
    agree = (
        badge("not cross-checked", "warn")
        if not trail.history.available
        else badge("sources agree", "ok")
        if count == 0
        else badge(f"{count} disagreement(s)", "bad")
    )
    page_href = case_page_link(trail.incident_key)
    source = observations.case_address(trail.incident_key)
    facts = tag(
        "ul",
        tag("li", "source ", tag("span", source, cls="mono"), " (", link(page_href, "attacker page"), ")")
        if page_href
        else "",
        tag("li", ledger, " ", trail.ledger.summary),
        tag("li", history, " ", _history_line(trail)),
        tag("li", agree, " ledger and history disagree: ", _disagreement_line(trail)),
    )
    rows = [
        [f"{a.action_id} {a.action}", (a.run_id or "-")[:8], a.verdict or "-", a.outcome, len(a.disagreements)]
        for a in trail.actions
    ]
    return Html(facts + table(["action", "run", "verdict", "outcome", "disagreements"], rows, numeric=[4]))


def _html_history(trail: Trail) -> Html:
    if not trail.history.available:
        return tag(
            "section", tag("h2", "Workflow history"), tag("p", badge("absent", "bad"), " ", trail.history.reason)
        )
    rows = [
        [r.run_id, r.status, r.events, _when(r.started_at), _when(r.closed_at), r.alerts_signalled, r.requested or "-"]
        for r in trail.history.runs
    ]
    timers = [
        tag("li", f"run {r.run_id[:8]}: ", t.text, _html_cites(t.cites)) for r in trail.history.runs for t in r.timers
    ]
    return tag(
        "section",
        tag("h2", "Workflow history"),
        table(["run", "status", "events", "started", "closed", "alerts signalled", "input"], rows, numeric=[2, 5]),
        tag("h3", "Timers"),
        tag("ul", *timers),
    )


def render_html(trail: Trail) -> str:
    """The same trail as one self-contained page (no script, strict CSP): badges for what must not be missed."""
    notes = (
        tag(
            "section",
            tag("h2", "Incident notes"),
            tag("ul", *(_html_fact(f) for f in trail.notes)),
            _html_disagreements(trail.disagreements),
        )
        if trail.notes or trail.disagreements
        else ""
    )
    return page(
        f"Audit trail: {trail.incident_key}",
        _html_overview(trail),
        *(_html_action(a) for a in trail.actions),
        notes,
        _html_history(trail),
        tag("section", tag("h2", "Ledger verification"), tag("p", trail.ledger.summary)),
        subtitle=f"{trail.records} ledger records · {trail.format}",
    )


def write_trail(trail: Trail, out_dir: Path, fmt: TrailFormat = TrailFormat.BOTH) -> list[Path]:
    """Write the trail beside the incident reports (<key>.trail.md / .html) and return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = safe_name(trail.incident_key)
    written = []
    if fmt in (TrailFormat.MD, TrailFormat.BOTH):
        path = out_dir / f"{name}.trail.md"
        path.write_text(render_markdown(trail))
        written.append(path)
    if fmt in (TrailFormat.HTML, TrailFormat.BOTH):
        path = out_dir / f"{name}.trail.html"
        path.write_text(render_html(trail))
        written.append(path)
    return written
