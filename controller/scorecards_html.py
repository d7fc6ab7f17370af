"""The scorecards as one self-contained HTML page (`autonomy scorecard --html`), charts inline."""

from __future__ import annotations

from autonomy_controller.controller.oversight.scorecards import (
    TRIAGE_ORDER,
    ApproverCard,
    RuleCard,
    Scorecard,
    scope_words,
)
from autonomy_controller.controller.render.html import VERDICT_COLOURS, Html, bars, page, stacked_bars, table, tag

OUTCOME_COLOURS = {
    "ran alone": VERDICT_COLOURS["execute"],
    "approved": "#00838f",
    "rejected": VERDICT_COLOURS["deny"],
    "timed out": VERDICT_COLOURS["approve"],
    "failed": "#6a1b9a",
    "not run": "#90a4ae",
}
"""How each decided action ended (scorecards.OUTCOMES); "not run" is deny, recommend, held, shadow, still open."""

COLUMNS = [
    "scope",
    "effective level",
    "decided",
    "auto share",
    "approvals asked",
    "granted",
    "rejected",
    "timed out",
    "failed",
    "approval p50 s",
    "verify failed",
    "reverts",
    "contained",
    "MTTC s",
    "triage m/s/n",
]


def _label(card: Scorecard) -> str:
    return f"{scope_words(card.scope)} @ {card.level}"


def table_row(card: Scorecard) -> list[object]:
    s = card.summary()
    return [
        scope_words(s["scope"]),
        s["level"],
        s["decided"],
        f"{card.auto_share:.0%}",
        s["approvals_requested"],
        s["granted"],
        s["rejected"],
        s["timed_out"],
        s["failed"],
        "-" if s["approval_latency_p50_s"] is None else f"{s['approval_latency_p50_s']:.1f}",
        s["verification_failures"],
        s["reverts"],
        s["incidents_contained"],
        "-" if s["mttc_s"] is None else f"{s['mttc_s']:.1f}",
        triage_mix_text(card),
    ]


def triage_mix_text(card: Scorecard) -> str:
    """Decisions per triage verdict, malicious/suspicious/noise (+ those made without a triage)."""
    mix = card.triage_mix
    text = "/".join(str(mix.get(v, 0)) for v in TRIAGE_ORDER[:3])
    return text + (f" (+{mix['none']} none)" if mix.get("none") else "")


RULE_COLUMNS = ["rule", "containment", "approved", "rejected", "reverted", "override share"]
RULE_NOTE = (
    "Containment proposed on incidents whose alerts carry the rule, and how people answered: rejected, or reverted "
    "later by a person's restore. A rule people keep overriding is a false-positive candidate "
    "(`autonomy triage exclusions`)."
)


def rule_row(card: RuleCard) -> list[object]:
    s = card.summary()
    share = "-" if s["override_share"] is None else f"{s['override_share']:.0%}"
    return [s["rule_id"], s["containment"], s["approved"], s["rejected"], s["reverted"], share]


UNSIGNED_NOTE = "Unsigned votes carried no verified token (`approve --as`): their identity is as typed."
APPROVER_COLUMNS = ["approver", "votes", "approved", "rejected", "unsigned", "signed share", "vote p50 s"]


def approver_row(card: ApproverCard) -> list[object]:
    s = card.summary()
    share = "-" if s["signed_share"] is None else f"{s['signed_share']:.0%}"
    latency = "-" if s["vote_latency_p50_s"] is None else f"{s['vote_latency_p50_s']:.1f}"
    return [s["approver"], s["votes"], s["approved"], s["rejected"], s["unsigned"], share, latency]


def scorecards_page(
    cards: list[Scorecard], approvers: list[ApproverCard], subtitle: str, rules: list[RuleCard] | None = None
) -> str:
    contained = [(_label(c), round(c.summary()["mttc_s"], 1)) for c in cards if c.contain_seconds]
    latencies = [(_label(c), round(c.summary()["approval_latency_p50_s"], 1)) for c in cards if c.approval_latencies]
    body: list[Html] = [
        tag("h2", "How decided actions ended, per scope and effective level"),
        stacked_bars([(_label(c), dict(c.outcomes)) for c in cards], OUTCOME_COLOURS, title="outcomes"),
        tag("h2", "Figures"),
        table(COLUMNS, [table_row(c) for c in cards], numeric=range(2, len(COLUMNS))),
    ]
    if contained:
        body += [
            tag("h2", "Mean time to contain (first alert to verified containment)"),
            bars(contained, title="MTTC", unit=" s"),
        ]
    if latencies:
        body += [tag("h2", "Approval latency, median"), bars(latencies, title="approval latency", unit=" s")]
    if approvers:
        body += [
            tag("h2", "Approvers"),
            tag("p", UNSIGNED_NOTE, cls="muted"),
            table(APPROVER_COLUMNS, [approver_row(a) for a in approvers], numeric=range(1, len(APPROVER_COLUMNS))),
        ]
    if rules:
        body += [
            tag("h2", "Rules: people's overrides of containment"),
            tag("p", RULE_NOTE, cls="muted"),
            table(RULE_COLUMNS, [rule_row(r) for r in rules], numeric=range(1, len(RULE_COLUMNS))),
        ]
    if not cards:
        body.append(tag("p", "The ledger has no decisions in this window.", cls="muted"))
    return page("Autonomy scorecards", *body, subtitle=subtitle)
