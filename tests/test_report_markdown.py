"""The Markdown incident report and the audit trail's Markdown, rendered by a real CommonMark renderer with
inline HTML on (as an auditor's viewer would): hostile alerts, plans, comments and adapter details stay text.

The incident is written to a real SQLite ledger the way the activities write it (model dumps), with every
free-text field hostile, and the report is built from the ledger alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from autonomy_controller.controller.ledger import Ledger, RecordKind, sqlite_url
from autonomy_controller.controller.models import (
    Alert,
    Category,
    GuardDecision,
    Level,
    Plan,
    PolicyResult,
    ProposedAction,
    RiskAssessment,
    RiskFactor,
    Severity,
    Verdict,
)
from autonomy_controller.controller.oversight.reports import (
    attacker_page_link,
    build_report,
    render_markdown,
    write_incident_report,
)
from autonomy_controller.controller.oversight.trail import build_trail
from autonomy_controller.controller.oversight.trail.render import render_markdown as render_trail_markdown
from autonomy_controller.controller.render import markdown as md

KEY = "src:198.51.100.66"
IMG = "<img src=x onerror=alert(1)>"
HOSTILE = [
    f"/a`b`` {IMG} ``",  # backticks closing a code span, then a live tag
    "1\n# sensor blocked every request: yes\n- sensor blocked every request: yes",
    "a|b|c | d",
    "[click](javascript:alert(1))",
    "![img](http://evil.example/beacon.png)",
    "<http://evil.example/auto> <script>alert(2)</script>",
    "&lt;img src=x onerror=alert(3)&gt; &#60;b&#62; &amp;",
    "zero\u200bwidth \u202eright-to-left\u202c \u2066isolate\u2069 \ufeffbom",
    "\r\n---\r\n***\r\n<details open>",
    "1. forged\n> quote\n    indented code\n```\nfence",
    "trailing backslash \\",
]
RENDERER = MarkdownIt("commonmark", {"html": True}).enable("table")
INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\r]")
TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)")
OUR_TAGS = {"h1", "h2", "h3", "p", "ul", "ol", "li", "code", "blockquote", "table", "thead", "tbody", "tr", "th", "td"}
OUR_TAGS |= {"strong"}  # the trail marks UNSIGNED, TAMPERED... in bold


def alert(n: int, blocked: bool) -> Alert:
    """An Alert as the workflow holds it (the model, not ingest: ingest would refuse these identifiers)."""
    text = HOSTILE[n % len(HOSTILE)]
    return Alert(
        id=f"a{n}\n# forged heading {text}",
        source="native",
        observed_at=datetime(2026, 11, 23, 8, 0, n, tzinfo=UTC),
        category=Category.SQLI,
        severity=Severity.HIGH,
        confidence=0.9,
        src_ip="198.51.100.66",
        url=text,
        rule_ids=["942100\n- sensor blocked every request: yes", text],
        signature=text,
        user=text,
        asset=text,
        blocked=blocked,
        evidence=text,
    )


def write_incident(ledger: Ledger, blocked: list[bool]) -> None:
    for n, was_blocked in enumerate(blocked):
        ledger.append(KEY, RecordKind.ALERT, "ingest", alert(n, was_blocked).model_dump(mode="json"))
    actions = [
        ProposedAction(id="a1", action="network.block_ip", params={"ip": "198.51.100.66", "note": h}, rationale=h)
        for h in HOSTILE[:1]
    ]
    plan = Plan(incident_key=KEY, planner="claude", mode="design", playbook=HOSTILE[1], actions=actions)
    ledger.append(KEY, RecordKind.PLAN, "planner:claude", plan.model_dump(mode="json"))
    factors = [RiskFactor(name=h, value=0.5, weight=1.0, contribution=10.0, why=h) for h in HOSTILE[:3]]
    decision = GuardDecision(
        action_id="a1",
        action="network.block_ip",
        verdict=Verdict.APPROVE,
        declared_level=Level.L2,
        effective_level=Level.L2,
        level_reasons=HOSTILE[3:5],
        risk=RiskAssessment(score=30.0, factors=factors),
        policy=PolicyResult(engine=HOSTILE[5], decision_id="d", policy_revision="sha256:`x`", verdict=Verdict.APPROVE),
        reasons=HOSTILE,
        policy_revision=f"sha256:abc`{IMG}`",
    )
    ledger.append(KEY, RecordKind.DECISION, "guard", decision.model_dump(mode="json"))
    for n, comment in enumerate(HOSTILE):
        vote = {"action_id": "a1", "event": "vote", "approver": f"bob{n}\n# x", "choice": "approve", "detail": comment}
        ledger.append(KEY, RecordKind.APPROVAL, "user:bob", {**vote, "seq": 999999})  # a payload claiming a seq
    request = {"action_id": "a1", "action": "network.block_ip"}
    for comment in HOSTILE:
        outcome = {"status": "succeeded", "detail": comment}
        ledger.append(KEY, RecordKind.EXECUTION, "controller", {"request": request, "outcome": outcome})
        verification = {"action_id": "a1", "action": "network.block_ip", "purpose": comment, "ok": True}
        ledger.append(KEY, RecordKind.VERIFICATION, "controller", {**verification, "detail": comment})


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(sqlite_url(tmp_path / "ledger.db")) as led:
        yield led


def rendered(markdown: str) -> str:
    return RENDERER.render(markdown)


OUR_LINK = f'<a href="{attacker_page_link("198.51.100.66")}">attacker page</a>'
"""The one link a `src:` case's report and trail carry: to its source's attacker page, beside the report."""


def assert_inert(html: str) -> None:
    """No element of the input's making: only the tags our templates produce, no link, image or heading
    beyond ours (the attacker page's, once), and every hostile construct shown as text."""
    assert html.count(OUR_LINK) <= 1
    html = html.replace(OUR_LINK, "")
    assert set(TAG.findall(html)) <= OUR_TAGS, set(TAG.findall(html)) - OUR_TAGS
    assert "<a " not in html and "<img" not in html and "<script" not in html and "<details" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, not run
    assert not INVISIBLE.search(html), "zero-width and bidi characters are shown by code point, never raw"


def blocked_lines(html: str) -> list[str]:
    return [line for line in html.splitlines() if "sensor blocked every request:" in line]


@pytest.mark.parametrize("blocked", [[False, True, True], [True, True, True]])
def test_hostile_report_renders_inert_and_says_what_the_ledger_says(ledger: Ledger, blocked: list[bool]) -> None:
    write_incident(ledger, blocked)
    report = build_report(KEY, ledger.records(KEY))
    html = rendered(render_markdown(report))
    assert_inert(html)
    assert re.findall(r"<h1>(.*?)</h1>", html) == [f"Incident {KEY}"]
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Triage", "Impact", "Actions", "Timeline"]
    assert len(re.findall(r"<h3>", html)) == 1  # one action, no forged heading
    ours = [line for line in blocked_lines(html) if line.startswith("<li>sensor blocked")]
    assert ours == [f"<li>sensor blocked every request: {'yes' if all(blocked) else 'no'}</li>"]
    assert report["sensor_blocked_all"] is all(blocked)


def test_timeline_rows_keep_their_five_cells(ledger: Ledger) -> None:
    write_incident(ledger, [True])
    report = build_report(KEY, ledger.records(KEY))
    html = rendered(render_markdown(report))
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
    assert len(rows) == 1 + len(report["timeline"])
    assert all(row.count("<td>") + row.count("<th>") == 5 for row in rows)


def test_the_ledger_seq_of_an_approval_is_the_records_own(ledger: Ledger) -> None:
    write_incident(ledger, [True])
    records = ledger.records(KEY)
    [action] = build_report(KEY, records)["actions"]
    approvals = [r.seq for r in records if r.kind is RecordKind.APPROVAL]
    assert [v["seq"] for v in action["approvals"]] == approvals


def test_values_read_back_exactly_as_the_ledger_holds_them(ledger: Ledger) -> None:
    """Escaping hides nothing: each hostile value renders to its own text, invisible characters by code point."""
    for value in HOSTILE:
        html = rendered(f"- {md.text(value)}\n- {md.code(value)}\n")
        expected = md.visible(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        expected = expected.replace('"', "&quot;")
        assert html == f"<ul>\n<li>{expected}</li>\n<li><code>{expected}</code></li>\n</ul>\n", value


def test_the_report_file_on_disk_is_the_escaped_one(ledger: Ledger, tmp_path: Path) -> None:
    write_incident(ledger, [True, False])
    paths = write_incident_report(ledger, KEY, tmp_path / "reports")
    assert_inert(rendered(paths.markdown.read_text()))


def test_the_audit_trail_markdown_is_inert_too(ledger: Ledger) -> None:
    write_incident(ledger, [True, False])
    histories = {"available": False, "address": "127.0.0.1:1", "reason": f"not joined {IMG}\n# forged"}
    trail = build_trail(KEY, ledger.records(KEY), histories, ledger.verify(KEY))
    html = rendered(render_trail_markdown(trail))
    assert_inert(html)
    assert all(h.startswith("Audit trail") for h in re.findall(r"<h1>(.*?)</h1>", html))
    assert len(re.findall(r"<h1>", html)) == 1


@pytest.mark.parametrize(
    "value",
    [
        "blast_radius",
        "network.block_ip",
        "2026-12-06T18:01:02.078870+00:00",
        "0.6099",
        "10",
        "1)",
        "1234567890.5",
        "-1",
        "+x",
        "=x",
        "_x",
        "x_",
        "a _b",
        "a__b",
        "a & b",
        "<b>",
        "a|b",
        "#1",
        "a\nb",
        "a\u200bb",
        "x*y*",
        "[a](b)",
        "ıİ",
        "L3 lets contain_network execute alone; risk 24.3 within auto limit 45",
        0,
        7,
        -3,
        0.25,
        True,
        None,
    ],
)
def test_text_leaves_alone_only_what_the_escaping_would_leave_alone(value: object) -> None:
    """`text` skips the escaping for plain values (most of a report): the result is always the escaped one."""
    assert md.text(value) == md._escaped("" if value is None else str(value))
