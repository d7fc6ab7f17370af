"""The inbox's server-rendered pages: one script of ours, no style, every outside value escaped
(controller/render/html.py).

Alert evidence, rule messages, comments and action parameters are attacker- or person-controlled text, so they
go through `esc` like everything else in the HTML reports, and the pages' CSP (`default-src 'none'`, the one
script allowed by its SHA-256 and nothing else, `form-action 'self'`) means an escaping slip could still neither
run a script nor send a form elsewhere. The one script counts deadlines down (`COUNTDOWN`); without it the page
still shows the time left when it was served. No inline style: the CSP forbids it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from autonomy_controller.controller.render.html import Html, definitions, esc, join, table, tag
from autonomy_controller.controller.service.approvals import Pending, describe_vote
from autonomy_controller.workflows.contracts import ActionState

COUNTDOWN = """(function () {
  var served = Date.now();
  function left(seconds) {
    if (seconds <= 0) return " (passed)";
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h ? " (in " + h + " h " + m + " min)" : " (in " + m + " min " + s + " s)";
  }
  function tick() {
    var gone = Math.floor((Date.now() - served) / 1000);
    document.querySelectorAll("time[data-left]").forEach(function (clock) {
      clock.textContent = clock.getAttribute("datetime") + left(parseInt(clock.dataset.left, 10) - gone);
    });
  }
  setInterval(tick, 1000);
})();"""
"""Counts each deadline down from the seconds left when the page was served (never the browser's clock against
the server's), writing text only (`textContent`): the same wording as `until`."""
_COUNTDOWN_HASH = base64.b64encode(hashlib.sha256(COUNTDOWN.encode()).digest()).decode()
PAGE_CSP = f"default-src 'none'; script-src 'sha256-{_COUNTDOWN_HASH}'; form-action 'self'; base-uri 'none'"
HEADER_CSP = f"{PAGE_CSP}; frame-ancestors 'none'"
"""The pages' CSP as a response header (frame-ancestors works only there); the meta tag carries the same."""


def document(title: str, *body: object, who: str | None = None, csrf: str | None = None) -> str:
    header: list[object] = [tag("h1", title)]
    if who is not None and csrf is not None:
        header.append(
            Html(
                f'<form method="post" action="/inbox/logout"><p>signed in as {esc(who)} '
                f'{hidden("csrf", csrf)}<button type="submit">sign out</button></p></form>'
            )
        )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">'
        f'<meta name="referrer" content="no-referrer"><title>{esc(title)}</title></head>'
        f"<body>{join(header)}{join(body)}<script>{COUNTDOWN}</script></body></html>\n"
    )


def hidden(name: str, value: str) -> Html:
    return Html(f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">')


def sign_in(csrf: str, problem: str | None = None, name: str = "") -> str:
    form = Html(
        '<form method="post" action="/inbox/login" id="sign-in">'
        f"{hidden('csrf', csrf)}"
        f'<p><label>name <input name="name" id="name" autocomplete="username" value="{esc(name)}" required></label></p>'
        '<p><label>password <input name="password" id="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit" id="submit">sign in</button></p></form>'
    )
    return document("Approval inbox: sign in", tag("p", problem, cls="problem") if problem else "", form)


def message(title: str, text: str, back: str = "/inbox") -> str:
    return document(title, tag("p", text, cls="message"), Html(f'<p><a href="{esc(back)}">back</a></p>'))


def until(deadline: datetime | None, now: datetime) -> Html:
    """The deadline and the time left, in a <time> that COUNTDOWN keeps counting down."""
    if deadline is None:
        return Html("no deadline")
    left = int((deadline - now).total_seconds())
    hours, rest = divmod(left, 3600)
    text = (
        " (passed)"
        if left <= 0
        else (f" (in {hours} h {rest // 60} min)" if hours else f" (in {rest // 60} min {rest % 60} s)")
    )
    when = deadline.isoformat(timespec="seconds")
    return Html(f'<time class="deadline" datetime="{esc(when)}" data-left="{max(left, 0)}">{esc(when)}{text}</time>')


def inbox(items: Sequence[Pending], who: str, identity: str, csrf: str, notes: Iterable[str] = ()) -> str:
    now = datetime.now(UTC)
    intro = tag(
        "p",
        f"{len(items)} action(s) await your vote as {identity}."
        if items
        else f"Nothing awaits a vote from {identity}.",
        cls="count",
    )
    warnings = [tag("p", note, cls="note") for note in notes]
    return document(
        "Approval inbox", intro, *warnings, *(_pending(item, identity, csrf, now) for item in items), who=who, csrf=csrf
    )


def _pending(item: Pending, identity: str, csrf: str, now: datetime) -> Html:
    state, decision = item.state, item.decision
    risk = decision.get("risk") or {}
    triage = decision.get("triage") or {}
    others = [p for p in state.waiting_on if p != identity]
    facts = definitions(
        {
            "incident": item.incident,
            "action": f"{state.action} ({state.action_id}, round {state.round})",
            "target": state.target or "-",
            "parameters": ", ".join(f"{k}={v}" for k, v in sorted(item.params.items())) or "-",
            "planner's rationale": item.rationale or "-",
            "verdict": f"{decision.get('verdict', state.verdict)} at {decision.get('effective_level', '?')}"
            f" (declared {decision.get('declared_level', '?')})",
            "policy reasons": "; ".join(decision.get("reasons") or []) or "-",
            "level reasons": "; ".join(decision.get("level_reasons") or []) or "-",
            "triage": (
                f"{triage.get('verdict')} (confidence {triage.get('confidence')}, score {triage.get('score')})"
                f"{' techniques ' + ', '.join(triage.get('techniques') or []) if triage.get('techniques') else ''}"
                if triage
                else "-"
            ),
            "risk score": risk.get("score", "-"),
            "approver groups": ", ".join(decision.get("approver_groups") or []) or "-",
            "still needed": "; ".join(state.missing) or "-",
            "who else may vote": ", ".join(others) or "nobody else",
            "votes so far": "; ".join(describe_vote(v) for v in state.votes) or "none",
            "deadline": until(state.deadline, now),
        }
    )
    factors = table(
        ["risk factor", "value", "weight", "points", "why"],
        [
            [f.get("name"), f.get("value"), f.get("weight"), f.get("contribution"), f.get("why")]
            for f in risk.get("factors") or []
        ],
        numeric=(1, 2, 3),
    )
    evidence = table(
        ["observed", "sensor", "source", "category", "rules", "evidence"],
        [
            [
                a.get("observed_at"),
                a.get("source"),
                a.get("src_ip"),
                a.get("category"),
                ", ".join(a.get("rule_ids") or []),
                tag("code", a.get("evidence", "")),
            ]
            for a in item.alerts
        ],
    )
    form = Html(
        f'<form method="post" action="/inbox/vote" class="vote">{hidden("csrf", csrf)}'
        f"{hidden('incident', item.incident)}{hidden('run_id', item.run_id)}{hidden('action_id', state.action_id)}"
        '<p><label>comment <input name="comment" maxlength="2000" size="60"></label></p>'
        '<p><button type="submit" name="choice" value="approve">approve</button> '
        '<button type="submit" name="choice" value="reject">reject</button></p></form>'
    )
    link = Html(f'<p><a href="/inbox/incidents/{esc(item.incident)}">incident timeline</a></p>')
    return Html(
        f'<section class="pending" id="{esc(item.incident)}/{esc(state.action_id)}">'
        f"{tag('h2', f'{state.action} on {state.target or item.incident}')}"
        f"{facts}{tag('h3', 'risk factors')}{factors}{tag('h3', 'evidence (latest alerts)')}{evidence}{form}{link}"
        "</section>"
    )


def incident(
    key: str, actions: Sequence[ActionState], timeline: Sequence[Mapping[str, Any]], who: str, csrf: str
) -> str:
    states = table(
        ["action", "id", "target", "status", "detail", "votes"],
        [
            [
                a.action,
                a.action_id,
                a.target or "-",
                tag("span", a.status.value, cls=f"status {a.status.value}"),
                a.detail or "-",
                "; ".join(describe_vote(v) for v in a.votes) or "-",
            ]
            for a in actions
        ],
    )
    steps = table(
        ["seq", "at", "kind", "actor", "what"],
        [[t.get("seq"), t.get("at"), t.get("kind"), t.get("actor"), t.get("what")] for t in timeline],
        numeric=(0,),
    )
    return document(
        f"Incident {key}",
        Html('<p><a href="/inbox">inbox</a></p>'),
        tag("h2", "actions"),
        states,
        tag("h2", "timeline (ledger)"),
        steps,
        who=who,
        csrf=csrf,
    )
