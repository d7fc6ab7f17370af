"""The attacker page: one source's profile as a self-contained HTML page (docs/attackers.md, "The attacker page").

What it did over time (the timeline: alerts by sensor and attack class), how far it got (the stages, each with the
ledger record that reached it), what it targeted, what the application answered, what the controller did about
it, and the addresses linked to it by a hint. Built on controller/render/html.py's page shell, escaping and strict CSP,
like the audit trail and the scorecards: paths and User-Agents are the client's own text.

Written by `autonomy attackers show ADDRESS --html OUT`, and beside each incident report of a `src:` case
(`attackers/<address>.html`, linked from the report and the audit trail: controller/oversight/reports.py
`attacker_page_link`).
"""

from __future__ import annotations

from pathlib import Path

from autonomy_controller.controller.attackers.profile import AttackerProfile
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.oversight.attacker_timeline import Timeline, read_timeline, timeline_svg
from autonomy_controller.controller.render.html import Html, badge, definitions, page, table, tag

STAGE_TONES = {
    "none": "info",
    "recon": "info",
    "exploitation_attempt": "warn",
    "possible_success": "bad",
    "post_exploitation": "bad",
}
STATUS_TONES = {
    "execute": "ok",
    "approved": "ok",
    "executed": "ok",
    "verified": "ok",
    "approve": "warn",
    "recommend": "warn",
    "veto_window_passed": "warn",
    "deny": "bad",
    "rejected": "bad",
    "timed_out": "bad",
    "execution_failed": "bad",
    "verification_failed": "bad",
}


def render_page(profile: AttackerProfile, linked: dict[str, list[str]], timeline: Timeline) -> str:
    p, out = profile, profile.outcomes
    cut = (
        f" (the latest {len(timeline.points)} of {timeline.total} records)"
        if timeline.total > len(timeline.points)
        else ""
    )
    return page(
        f"Attacker {p.address}",
        tag(
            "p",
            badge(p.stage, STAGE_TONES.get(p.stage, "info")),
            f" {p.alerts} record(s) from {p.network}, "
            f"first seen {p.first_seen.isoformat()}, last seen {p.last_seen.isoformat()}",
        ),
        tag("h2", "Timeline"),
        tag(
            "p",
            f"Alerts and access-log records by sensor and attack class{cut}; a dashed line where a stage was reached.",
            cls="muted",
        ),
        timeline_svg(timeline, p.stages),
        tag("h2", "Stages reached"),
        table(["stage", "at", "ledger seq", "why"], [[s.stage, s.at.isoformat(), s.seq, s.why] for s in p.stages])
        if p.stages
        else tag("p", "no stage: only answers (access log), no detection", cls="muted"),
        tag("h2", "Targets"),
        table(["asset", "records"], _ranked(p.assets), numeric=[1]),
        table(
            ["URL path (the client's text)", "requests", "attacks refused", "attacks not refused", "application 2xx"],
            [
                [path, s.requests, s.attacks_refused, s.attacks_through, s.app_success]
                for path, s in sorted(p.paths.items(), key=lambda kv: (-kv[1].requests, kv[0]))
            ],
            numeric=[1, 2, 3, 4],
        ),
        tag("h2", "Outcomes"),
        definitions(
            {
                "blocked by the WAF": out.waf_blocked,
                "bytes the application sent back (2xx)": out.bytes_sent,
                **{
                    f"the application answered ({sensor})": ", ".join(f"{k} {v}" for k, v in sorted(by.items()))
                    for sensor, by in sorted(out.app_status.items())
                },
            }
        ),
        tag("h2", "What the controller did"),
        _actions(p),
        tag("h2", "Linking hints (never proof)"),
        _hints(p, linked),
        tag("h2", "Sensors, classes, techniques"),
        table(["sensor", "records"], _ranked(p.sensors), numeric=[1]),
        table(["attack class", "records"], _ranked(p.categories), numeric=[1]),
        table(["ATT&CK", "technique"], sorted(p.techniques.items())),
        tag("h2", "Ledger records"),
        definitions(
            {
                "cited alert records (first and latest)": ", ".join(map(str, p.seqs)) or "-",
                "incidents": ", ".join(f"{k} ({v})" for k, v in sorted(p.incidents.items())) or "-",
                "turned away by a cap": ", ".join(f"{k} {v}" for k, v in sorted(p.dropped.items())) or "-",
                "folded through ledger seq": p.through_seq,
            }
        ),
        subtitle=f"attacker profile · {p.network}",
    )


def _ranked(counts: dict[str, int]) -> list[list[object]]:
    return [[k, v] for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _actions(p: AttackerProfile) -> Html:
    if not p.actions:
        return tag("p", "the controller took no containment action on this source", cls="muted")
    rows = [
        [
            a.incident,
            a.action + (" (shadow)" if a.shadow else ""),
            a.target or "-",
            a.verdict,
            badge(a.status, STATUS_TONES.get(a.status, "info")),
            ", ".join(map(str, a.seqs)),
        ]
        for a in p.actions
    ]
    tallies = ", ".join(f"{k} {v}" for k, v in sorted(p.controller.items()))
    return Html(
        table(["incident", "action", "target", "verdict", "status", "ledger seqs"], rows)
        + tag("p", f"lifetime: {tallies}", cls="muted")
    )


def _hints(p: AttackerProfile, linked: dict[str, list[str]]) -> Html:
    """Same /24 or /64, same User-Agent: an address range holds many clients, and a client picks its User-Agent."""
    agents = table(["User-Agent (the client's text)", "records"], _ranked(p.user_agents), numeric=[1])
    if not linked:
        return Html(tag("p", "no other profiled address shares a hint", cls="muted") + agents)
    rows = [[address, ", ".join(kinds)] for address, kinds in linked.items()]
    return Html(table(["address", "shares"], rows) + agents)


def write_page(ledger: Ledger, profile: AttackerProfile, linked: dict[str, list[str]], out: Path) -> Path:
    """Render the profile's page, with its timeline read from `ledger`, to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(profile, linked, read_timeline(ledger, profile.address)))
    return out
