"""`autonomy simulate --html`: the replay as one self-contained page a security lead can read and forward.

The page answers the questions in the order they are asked before raising a level or merging a policy change:
how much would run alone at each level (a stacked bar per level, and per config with --against-*), how much
work would land on the analysts (approvals), how triage judged the incidents (its verdict shares gate what runs
alone), where exactly (per level, by action class and by alert category), and which incidents' triage and which
decisions the candidate config changes and why (the diffs). Built with `controller.render.html`
only: diff rows carry alert-derived text (user names in guardrail reasons, hostile file names in ingest
errors), so every value is escaped by the toolkit and the page can run no script.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from autonomy_controller.controller.ingest import IngestReport
from autonomy_controller.controller.models import Verdict
from autonomy_controller.controller.oversight.simulate import DiffRow, SimulationResult, Tally
from autonomy_controller.controller.oversight.simulate_triage import TRIAGE_VERDICTS, TriageChange
from autonomy_controller.controller.render.html import (
    VERDICT_COLOURS,
    Html,
    bars,
    esc,
    join,
    page,
    stacked_bars,
    table,
    tag,
)

VERDICTS = [v.value for v in Verdict]
NONE = "none"
"""The verdict shown for an action that only one config's plan proposed."""
ERRORS_SHOWN = 20
CANDIDATE_APPROVE = "#8d6e00"
"""Approval bars: the base config in the approve colour, the candidate in this darker shade of it."""
TRIAGE_COLOURS = {"malicious": "#8e1b1b", "suspicious": "#c77700", "noise": "#90a4ae"}
"""Triage verdicts, most to least malicious (not the action verdicts' palette: these say what, not what to do)."""

_STYLE = """
.figures{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0 4px}
.figure{border:1px solid #d5dae3;border-radius:6px;padding:6px 14px;min-width:110px;background:#f8fafc}
.figure b{display:block;font-size:22px;font-variant-numeric:tabular-nums}.figure span{color:#5b6577;font-size:12px}
.pair{display:flex;gap:14px;flex-wrap:wrap;align-items:flex-start}.pair h4{margin:4px 0 0;font-size:13px}
.pair table{font-size:12px}.pair th,.pair td{padding:2px 6px}
.diff table{font-size:12px}.diff td{max-width:330px;overflow-wrap:anywhere}
.diff ul{margin:0;padding-left:14px}.added{color:#1b5e20}.removed{color:#8e1b1b}
.nowrap{white-space:nowrap}.changed{font-weight:bold;white-space:nowrap}.diff code{word-break:normal;white-space:nowrap}
.verdict{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;color:#fff;white-space:nowrap}
td svg{vertical-align:middle}
""".strip()


@dataclass
class DiffSample:
    """The diff rows a report shows, bounded, plus exact counts that stay true when the rows are cut.

    A year of alerts can flip millions of decisions; only the first `limit` verdict changes and rewordings
    are kept (verdict changes first: they are what a reviewer acts on), while every verdict transition is
    counted per level (at most levels x verdicts^2 counters), so the summary never depends on the cut."""

    limit: int
    flips: list[DiffRow] = field(default_factory=list)
    rewordings: list[DiffRow] = field(default_factory=list)
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(level, old verdict, new verdict) -> decisions, verdict changes only."""
    triage_flips: list[TriageChange] = field(default_factory=list)
    """Incidents whose triage verdict changed, then (below) those whose confidence alone did; bounded alike."""
    triage_shifts: list[TriageChange] = field(default_factory=list)
    triage_transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(old triage verdict, new) -> incidents."""

    def add(self, row: DiffRow | TriageChange) -> None:
        if isinstance(row, TriageChange):
            self._add_triage(row)
            return
        if row.verdict_changed:
            self.transitions[(row.level, row.old_verdict or NONE, row.new_verdict or NONE)] += 1
        kept = self.flips if row.verdict_changed else self.rewordings
        if len(kept) < self.limit:
            kept.append(row)

    def rows(self) -> list[DiffRow]:
        return [*self.flips, *self.rewordings][: self.limit]

    def _add_triage(self, change: TriageChange) -> None:
        self.triage_transitions[(change.old.verdict, change.new.verdict)] += 1
        kept = self.triage_flips if change.verdict_changed else self.triage_shifts
        if len(kept) < self.limit:
            kept.append(change)

    def triage_changes(self) -> list[TriageChange]:
        """Triage verdict changes first (they flip playbooks and decisions), then confidence-only ones."""
        return [*self.triage_flips, *self.triage_shifts][: self.limit]


@dataclass(frozen=True)
class SimulationReport:
    """Everything the page shows; `configs` maps each config's name to where its levels and policies came from."""

    result: SimulationResult
    ingest: IngestReport
    inputs: Sequence[str] = ()
    configs: Mapping[str, str] = field(default_factory=dict)
    diff: DiffSample | None = None


def _section(ident: str, title: str, *body: object) -> Html:
    """A titled block with a stable id: a reader can link to it and a test can find it."""
    return Html(f'<section id="{esc(ident)}">{tag("h2", title)}{join(body)}</section>')


def _pct(count: int, total: int) -> str:
    """A share for a table cell, never rounded to a misleading 0% or 100%."""
    if total <= 0:
        return "-"
    share = count / total
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


def _count_share(count: int, total: int) -> str:
    return f"{count} ({_pct(count, total)})" if count else "0"


def _verdict(value: str) -> Html:
    """A verdict in the chart's colour, so the diff reads in the same colours as the bars."""
    colour = VERDICT_COLOURS.get(value, "#90a4ae")
    text = "#1d2330" if value == Verdict.APPROVE.value else "#fff"
    return Html(f'<span class="verdict" style="background:{esc(colour)};color:{text}">{esc(value)}</span>')


def _mini_bar(counts: Mapping[str, int], width: int = 120) -> Html:
    """A one-line 100% stacked bar for a table row: the shares at a glance, the exact figure in its tooltip."""
    total = sum(counts.get(v, 0) for v in VERDICTS)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="12" role="img">']
    parts.append(f'<rect width="{width}" height="12" fill="#eef1f5"/>')
    x = 0.0
    for verdict in VERDICTS:
        count = counts.get(verdict, 0)
        if total and count:
            w = count / total * width
            parts.append(
                f'<rect x="{x:.1f}" width="{w:.1f}" height="12" fill="{esc(VERDICT_COLOURS[verdict])}">'
                f"<title>{esc(verdict)}: {count} ({esc(_pct(count, total))})</title></rect>"
            )
            x += w
    parts.append("</svg>")
    return Html("".join(parts))


def _label(result: SimulationResult, config: str, level: str) -> str:
    """A chart row's name: the level alone, or "config level" when two configs are compared."""
    return f"{config} {level}" if len(result.configs) > 1 else level


def _pairs(result: SimulationResult) -> list[tuple[str, str, Tally]]:
    """(config, level, tally), level by level, so the configs being compared sit next to each other."""
    return [(c, lv, result.tallies[(c, lv)]) for lv in result.levels for c in result.configs]


def _headline(report: SimulationReport) -> Html:
    result = report.result
    first = result.tallies.get((result.configs[0], result.levels[0])) if result.levels else None
    figures: list[tuple[str, object]] = [
        ("alerts", result.alerts),
        ("incidents", result.incidents),
        ("decisions per level", first.decisions if first else 0),
        ("dead-lettered records", report.ingest.dead_lettered),
    ]
    if len(result.configs) > 1:
        figures += [("decisions changed", result.diff_rows), ("verdicts changed", result.verdict_changes)]
        figures += [("triage changed", result.triage_changes)]
    cards = "".join(f'<div class="figure"><b>{esc(value)}</b><span>{esc(name)}</span></div>' for name, value in figures)
    return Html(f'<div class="figures">{cards}</div>')


def _run_facts(report: SimulationReport) -> dict[str, object]:
    """What was replayed through what: enough to reproduce the run."""
    items: dict[str, object] = {"alert files": Html("<br>".join(esc(name) for name in report.inputs) or "-")}
    for name, where in report.configs.items():
        items[f"config {name}"] = where
    items["levels judged"] = ", ".join(report.result.levels)
    return items


def _triage(result: SimulationResult) -> Html:
    """Each config's triage verdicts, as shares of the incidents and of their alerts: a storm is one incident
    but many alerts, and the two shares answer different questions (how many cases, how much traffic)."""
    rows: list[tuple[str, dict[str, float]]] = []
    cells: list[list[object]] = []
    for config, tally in result.triage.items():
        for unit, counts in (("incidents", tally.incidents), ("alerts", tally.alerts)):
            label = f"{config} {unit}" if len(result.configs) > 1 else unit
            rows.append((label, {v: float(counts[v]) for v in TRIAGE_VERDICTS}))
            total = sum(counts.values())
            cells.append([config, unit, total, *(_count_share(counts[v], total) for v in TRIAGE_VERDICTS)])
    caption = tag(
        "p",
        "The triage verdict each incident's guard was given (levels/triage.yaml, without the points the "
        "request's own text earned); a level's triage bar decides whether containment may run alone.",
        cls="muted",
    )
    chart = stacked_bars(rows, TRIAGE_COLOURS, title="triage verdict shares", width=900)
    return join([caption, chart, table(["config", "of", "total", *TRIAGE_VERDICTS], cells, numeric=range(2, 6))])


def _verdict_chart(result: SimulationResult) -> Html:
    rows = [(_label(result, c, lv), {v: float(t.verdicts[v]) for v in VERDICTS}) for c, lv, t in _pairs(result)]
    shares = table(
        ["config", "level", "decisions", *VERDICTS, "shares"],
        [
            [c, lv, t.decisions, *(_count_share(t.verdicts[v], t.decisions) for v in VERDICTS), _mini_bar(t.verdicts)]
            for c, lv, t in _pairs(result)
        ],
        numeric=range(2, 3 + len(VERDICTS)),
    )
    caption = tag(
        "p",
        "Share of the planned actions that would execute alone, need approval, only be "
        "recommended, or be denied; the figure right of each bar is the number of decisions.",
        cls="muted",
    )
    return join([caption, stacked_bars(rows, VERDICT_COLOURS, title="verdict shares per level", width=900), shares])


def _approve_colour(result: SimulationResult, config: str) -> str:
    return VERDICT_COLOURS["approve"] if config == result.configs[0] else CANDIDATE_APPROVE


def _approval_chart(result: SimulationResult) -> Html:
    """Approvals per level in the approve colour (the candidate's darker): a palette's red would read as deny."""
    pairs = _pairs(result)
    legend = {c: _approve_colour(result, c) for c in result.configs} if len(result.configs) > 1 else None
    return bars(
        [(_label(result, c, lv), float(t.approvals)) for c, lv, t in pairs],
        title="approvals needed per level",
        unit=" approval(s)",
        width=900,
        colours=[_approve_colour(result, c) for c, _, _ in pairs],
        legend=legend,
    )


def _workload(result: SimulationResult) -> Html:
    figures = table(
        ["config", "level", "decisions", "approvals", "approver votes", "share needing approval", "per incident"],
        [
            [
                c,
                lv,
                t.decisions,
                t.approvals,
                t.approver_votes,
                _pct(t.approvals, t.decisions),
                f"{t.approvals / t.incidents:.2f}" if t.incidents else "-",
            ]
            for c, lv, t in _pairs(result)
        ],
        numeric=range(2, 7),
    )
    caption = tag(
        "p",
        "Each approve verdict is a task for an analyst; approver votes count the people a quorum needs.",
        cls="muted",
    )
    return join([caption, _approval_chart(result), figures])


def _compared(cells: list[str]) -> Html:
    """One figure, or where the configs differ the base's with the candidate's under it after an arrow: the
    change stands out, lines up with the stacked bars, and keeps the column narrow."""
    if len(set(cells)) == 1:
        return esc(cells[0])
    return Html(
        "<br>".join([esc(cells[0]), *(Html(f'<span class="changed">&rarr; {esc(c)}</span>') for c in cells[1:])])
    )


def _stacked_minis(per_config: list[Counter[str]]) -> Html:
    """One small bar, or one per config stacked (the candidate under the base) where their counts differ."""
    distinct = per_config if any(counts != per_config[0] for counts in per_config) else per_config[:1]
    return Html("<br>".join(_mini_bar(counts, 64) for counts in distinct))


def _breakdown(result: SimulationResult, level: str, attribute: str, title: str) -> Html:
    """One level's verdicts by action class or by alert category: a row per key, counts and shares."""
    by_config: list[dict[str, Counter[str]]] = [getattr(result.tallies[(c, level)], attribute) for c in result.configs]
    rows: list[list[object]] = []
    for key in sorted({key for breakdown in by_config for key in breakdown}):
        per_config = [breakdown.get(key, Counter()) for breakdown in by_config]
        totals = [sum(counts.values()) for counts in per_config]
        cells = [_compared([_count_share(c[v], n) for c, n in zip(per_config, totals, strict=True)]) for v in VERDICTS]
        rows.append([key, _compared([str(n) for n in totals]), *cells, _stacked_minis(per_config)])
    body = table([title, "decisions", *VERDICTS, "shares"], rows, numeric=range(1, 2 + len(VERDICTS)))
    return tag("div", tag("h4", f"by {title}"), body if rows else tag("p", "no decisions", cls="muted"))


def _levels(result: SimulationResult) -> Html:
    blocks = [
        join(
            [
                tag("h3", level),
                tag(
                    "div",
                    _breakdown(result, level, "by_class", "action class"),
                    _breakdown(result, level, "by_category", "alert category"),
                    cls="pair",
                ),
            ]
        )
        for level in result.levels
    ]
    caption = "Counts, with each verdict's share of the row's decisions."
    if len(result.configs) > 1:
        base, candidate = result.configs[0], result.configs[1]
        caption += f" Where {candidate} differs from {base}, {candidate}'s figure follows the arrow"
        caption += " and its bar is the lower one."
    return join([tag("p", caption, cls="muted"), *blocks])


def _reason_list(reasons: Iterable[str], cls: str, sign: str) -> Html:
    items = [tag("li", f"{sign} {reason}") for reason in reasons]
    return tag("ul", *items, cls=cls) if items else Html("")


def _verdict_change(row: DiffRow) -> Html:
    """old -> new, or the one verdict when only the reasons changed (an arrow would suggest a change); a flip
    the triage change caused says so."""
    old, new = row.old_verdict or NONE, row.new_verdict or NONE
    if old == new:
        return Html(f'<span class="nowrap">{_verdict(old)} <span class="muted">same</span></span>')
    cause = f'<br><span class="muted">triage {esc(row.old_triage)} &rarr; {esc(row.new_triage)}</span>'
    return Html(
        f'<span class="nowrap">{_verdict(old)} &rarr; {_verdict(new)}{cause if row.because_of_triage else ""}</span>'
    )


def _risk(row: DiffRow) -> str:
    moved = [f"{c.name} {_number(c.old)} \u2192 {_number(c.new)}" for c in row.risk_changes]
    if row.old_risk != row.new_risk:
        moved.insert(0, f"score {_number(row.old_risk)} \u2192 {_number(row.new_risk)}")
    return "; ".join(moved)


def _breakable(key: str) -> Html:
    """An incident key (category:subject) that wraps after its colon rather than inside an address."""
    category, colon, subject = key.partition(":")
    return Html(f"{esc(category)}{colon}<wbr>{esc(subject)}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _when(iso: str) -> str:
    """First-seen to the second, in UTC: the incident's name needs no microseconds, and they wrap the cell."""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def _diff_row(row: DiffRow, with_risk: bool) -> list[object]:
    cells: list[object] = [
        Html(f'{_breakable(row.incident)}<br><span class="muted nowrap">{esc(_when(row.first_seen))}</span>'),
        Html(f'<span class="nowrap">{esc(row.action_id)} <code>{esc(row.action)}</code></span>'),
        row.level,
        _verdict_change(row),
        _reason_list(row.reasons_added, "added", "+"),
        _reason_list(row.reasons_removed, "removed", "\u2212"),
    ]
    return [*cells, _risk(row)] if with_risk else cells


def _diff(result: SimulationResult, sample: DiffSample) -> Html:
    rows = sample.rows()
    reworded = result.diff_rows - result.verdict_changes
    shown = f"; the first {len(rows)} are listed" if result.diff_rows > len(rows) else ""
    summary = tag(
        "p",
        f"{result.verdict_changes} decision(s) change verdict and {reworded} change only their reasons{shown}.",
    )
    parts: list[Html] = [summary]
    if sample.transitions:
        transitions = sorted(sample.transitions.items(), key=lambda item: (item[0][0], -item[1]))
        parts.append(
            table(
                ["level", "verdict change", "decisions"],
                [[lv, Html(f"{_verdict(old)} &rarr; {_verdict(new)}"), n] for (lv, old, new), n in transitions],
                numeric=[2],
            )
        )
    if rows:
        with_risk = any(_risk(row) for row in rows)  # a column left empty on every row is noise
        headers = ["incident", "action", "level", "verdict", "reasons added", "reasons removed"]
        headers += ["risk moved"] if with_risk else []
        parts.append(tag("div", table(headers, [_diff_row(r, with_risk) for r in rows]), cls="diff"))
    return join(parts)


def _triage_diff(result: SimulationResult, sample: DiffSample) -> Html:
    """Incidents whose triage changed (before -> after) and the decisions that changed because of it."""
    changes = sample.triage_changes()
    shown = f"; the first {len(changes)} are listed" if result.triage_changes > len(changes) else ""
    parts: list[Html] = [
        tag(
            "p",
            f"{result.triage_changes} incident(s) were given another triage ({result.triage_verdict_changes} "
            f"another verdict, the rest another confidence); {result.decisions_changed_by_triage} decision(s) "
            f"changed verdict because of it{shown}. A decision changed because of triage when the candidate, "
            "given the base's triage, decides it as the base did.",
        )
    ]
    if sample.triage_transitions:
        transitions = sorted(sample.triage_transitions.items(), key=lambda item: -item[1])
        parts.append(
            table(
                ["triage change", "incidents"],
                [[f"{old} \u2192 {new}", n] for (old, new), n in transitions],
                numeric=[1],
            )
        )
    if changes:
        rows = [
            [
                Html(f'{_breakable(c.incident)}<br><span class="muted nowrap">{esc(_when(c.first_seen))}</span>'),
                c.alerts,
                Html(f"{esc(c.old)} &rarr; <b>{esc(c.new)}</b>"),
                tag("ul", *(tag("li", str(caused)) for caused in c.caused))
                if c.caused
                else tag("span", "none", cls="muted"),
            ]
            for c in changes
        ]
        parts.append(
            tag(
                "div",
                table(["incident", "alerts", "triage", "decisions changed because of it"], rows, numeric=[1]),
                cls="diff",
            )
        )
    return join(parts)


def _inputs(report: SimulationReport) -> Html:
    ingest = report.ingest
    items: dict[str, object] = {
        **_run_facts(report),
        "records read": ingest.records_read,
        "alerts": ingest.alerts,
        "non-alert records skipped": ingest.skipped_total,
        "dead-lettered": ingest.dead_lettered,
        "formats": ", ".join(f"{name} {n}" for name, n in sorted(ingest.formats.items())) or "-",
    }
    items.update({f"skipped: {reason}": n for reason, n in sorted(ingest.skipped.items())})
    parts = [table(["", ""], items.items())]
    if ingest.errors:
        errors = ingest.errors[:ERRORS_SHOWN]
        more = ingest.dead_lettered - len(errors)
        parts.append(tag("ol", *(tag("li", tag("code", error)) for error in errors), cls="steps"))
        if more > 0:
            parts.append(tag("p", f"... and {more} more in the dead-letter file.", cls="muted"))
    return join(parts)


def simulation_page(report: SimulationReport) -> str:
    """The whole report as one HTML document (no script, no remote load)."""
    result = report.result
    compared = " vs ".join(result.configs)
    subtitle = f"{len(report.inputs)} alert file(s) replayed through {compared}, nothing executed"
    body: list[Html] = [
        Html(f"<style>{_STYLE}</style>"),
        _headline(report),
        _section("verdicts", "Verdicts per level", _verdict_chart(result)),
        _section("workload", "Analyst workload", _workload(result)),
        _section("triage", "Triage verdicts", _triage(result)),
        _section("levels", "Per level, by action class and alert category", _levels(result)),
    ]
    if report.diff is not None and len(result.configs) > 1:
        body.append(_section("triage-diff", "Triage that changed", _triage_diff(result, report.diff)))
        body.append(_section("diff", "Decisions that changed", _diff(result, report.diff)))
    body.append(_section("inputs", "Inputs and ingest", _inputs(report)))
    return page("Autonomy simulation", *body, subtitle=subtitle)
