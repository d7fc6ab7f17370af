"""The incident report and the audit trail show the triage a decision was made on.

First a real run: the lab sample's SQLi storm (malicious, 0.86) and XSS pair (suspicious) go through a real dev
server and worker at L3; the report's Triage section and the trail's decision steps are checked against the
ledger's PLAN and DECISION records. Then a real ledger written the way the activities write it, from the real
guard's output, with a planner that lowered the triage and hostile text wherever text can reach (the planner's
rationale, factor explanations, technique names): it renders inert in CommonMark with inline HTML on, and in
the trail's HTML.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.cli.trail import collect_trail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind, sqlite_url
from autonomy_controller.controller.models import Level, PlannerTriage
from autonomy_controller.controller.oversight.reports import build_report, render_markdown
from autonomy_controller.controller.oversight.trail import (
    ActionTrail,
    Fact,
    Source,
    StepKind,
    Tone,
    Trail,
    build_trail,
    render_html,
)
from autonomy_controller.controller.oversight.trail.render import render_markdown as render_trail_markdown
from autonomy_controller.controller.planning import OfflinePlanner
from autonomy_controller.controller.render import triage_view
from autonomy_controller.controller.triage import AttackTechnique
from autonomy_controller.workflows.contracts import ActionStatus
from tests.conftest import SHARED
from tests.harness import Loop, running_loop
from tests.test_report_markdown import HOSTILE, IMG, assert_inert, rendered

NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
SQLI = "src:198.51.100.66"
BLOCK = "network.block_ip"
FACTORS = ["rule_strength", "anomaly_score", "libinjection", "attack_classes", "repetition", "sensor_verdict"]


def sample_alerts(*keys: str) -> list[Any]:
    return [a for i in group_alerts(read_alerts(NETNS)) if i.key in keys for a in i.alerts]


def seqs(records: list[LedgerRecord], kind: RecordKind, **payload: object) -> list[int]:
    return [r.seq for r in records if r.kind is kind and all(r.payload.get(k) == v for k, v in payload.items())]


def fact(facts: list[Fact], starts: str) -> Fact:
    found = [f for f in facts if f.text.startswith(starts)]
    assert len(found) == 1, (starts, [f.text for f in facts])
    return found[0]


def block_of(trail: Trail) -> ActionTrail:
    return next(a for a in trail.actions if a.action == BLOCK)


def factor_table(html: str) -> list[list[str]]:
    """The rendered Markdown table whose header is the factor table's."""
    for body in re.findall(r"<table>(.*?)</table>", html, re.S):
        rows = [
            re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        ]
        if rows and rows[0] == triage_view.FACTOR_HEADERS:
            return rows
    raise AssertionError("no factor table")


# -- a real run -------------------------------------------------------------------------------------------


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


async def test_report_and_trail_of_a_real_run_show_the_triage_from_the_ledger(loop: Loop) -> None:
    (key,) = await loop.submit(sample_alerts(SQLI), level=Level.L3)
    # every action past its activities (the trail joins ledger and history: one mid-flight is a disagreement)
    moving = {ActionStatus.PLANNED, ActionStatus.EXECUTING}
    await loop.wait_for(key, lambda s: bool(s.actions) and all(a.status not in moving for a in s.actions))
    address = loop.client.service_client.config.target_host

    records = loop.ledger.records(key)
    (plan_seq,) = seqs(records, RecordKind.PLAN)
    plan = next(r for r in records if r.seq == plan_seq).payload
    detail = plan["triage_detail"]
    said = triage_view.verdict_text(detail)

    report = build_report(key, records)
    triage = report["triage"]
    assert triage["seq"] == plan_seq and triage["factors"] == detail["factors"] and triage["lowered"] == []
    # the attacker's case: SQLi, command injection and scanning in one
    assert {"T1190", "T1059", "T1595"} <= {t["id"] for t in triage["techniques"]}
    block = next(a for a in report["actions"] if a["action"] == BLOCK)
    assert block["decision"]["triage"] == plan["triage"]  # the guard weighed the plan's triage, unlowered

    html = rendered(render_markdown(report))
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Triage", "Impact", "Actions", "Timeline"]
    assert f"verdict: {said} [ledger seq {plan_seq}]" in html
    assert "T1190 Exploit Public-Facing Application" in html and "ATT&amp;CK techniques: T1059 " in html
    assert "lowered by a planner: no" in html and f"model revision: <code>{detail['model_revision']}</code>" in html
    rows = factor_table(html)
    assert [row[0] for row in rows[1:]] == [f["name"] for f in detail["factors"]]
    assert [row[3] for row in rows[1:]] == [f"{f['contribution']:g}" for f in detail["factors"]]
    assert f"triage given to the policy: {said}" in html

    trail = await collect_trail(loop.ledger, key, address)
    assert trail.history.available and trail.disagreement_count == 0, trail.disagreements
    decision_step = block_of(trail).step(StepKind.DECISION)
    assert decision_step is not None and decision_step.grid is not None
    (decision_seq,) = seqs(records, RecordKind.DECISION, action=BLOCK)
    given = fact(decision_step.facts, f"triage given to the policy: {said}")
    assert [(c.source, c.ref) for c in given.cites] == [(Source.LEDGER, decision_seq)]
    tone = {"malicious": Tone.BAD, "suspicious": Tone.WARN, "noise": Tone.INFO}[detail["verdict"]]
    assert [(m.text, m.tone) for m in given.marks] == [(f"triage {detail['verdict']}", tone)]
    factors = fact(decision_step.facts, f"triage score {detail['score']} from {len(detail['factors'])} factors")
    assert [(c.source, c.ref) for c in factors.cites] == [(Source.LEDGER, plan_seq)]
    assert decision_step.grid.headers == triage_view.FACTOR_HEADERS
    assert [row[0] for row in decision_step.grid.rows] == [f["name"] for f in detail["factors"]]
    if detail["verdict"] != "malicious":  # short of L3's bar: the policy says so, and the trail shows it
        assert block_of(trail).verdict == "approve"
        assert any(f.text.startswith(f"reason: triage says {detail['verdict']}") for f in decision_step.facts)
    assert f"triage {detail['verdict']} at {detail['confidence']}" in block_of(trail).summary
    trail_md = rendered(render_trail_markdown(trail))
    assert [row[0] for row in factor_table(trail_md)[1:]][: len(FACTORS)] == FACTORS
    trail_html = render_html(trail)
    assert all(f"<td>{name}</td>" in trail_html for name in FACTORS) and "<script" not in trail_html


async def test_the_workflow_triages_as_evaluate_does(loop: Loop, embedded_guard: Guard) -> None:
    """History carries slim alerts (no raw record); the plan step triages the ledger's full ones."""
    (key,) = await loop.submit(sample_alerts(SQLI), level=Level.L3)
    await loop.wait_for(key, lambda s: bool(s.actions))
    plan = next(r for r in loop.ledger.records(key) if r.kind is RecordKind.PLAN).payload
    (incident,) = [i for i in group_alerts(read_alerts(NETNS)) if i.key == SQLI]
    expected = embedded_guard.triage(embedded_guard.enrich(incident))
    assert (plan["triage_detail"]["verdict"], plan["triage_detail"]["score"]) == (expected.verdict, expected.score)


# -- a real ledger: a planner lowered it, and text is hostile ---------------------------------------------

KEY = SQLI


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(sqlite_url(tmp_path / "ledger.db")) as led:
        yield led


def write_lowered_incident(ledger: Ledger, guard: Guard, settings: Settings) -> None:
    """The activities' records for the SQLi storm, planned by a "claude" whose own triage says suspicious (with a
    hostile rationale), the guard's real decisions, and hostile text in the factor explanations and technique
    names (where a sensor's rule metadata or a scanner's user agent could one day put it)."""
    (incident,) = [guard.enrich(i) for i in group_alerts(read_alerts(NETNS)) if i.key == KEY]
    for alert in incident.alerts:
        ledger.append(KEY, RecordKind.ALERT, "ingest", alert.model_dump(mode="json"))
    result = guard.triage(incident)
    summary = guard.triage_summary(result)
    plan = OfflinePlanner(settings.playbooks_dir, guard.asset_groups).plan(incident, summary.verdict)
    plan = plan.model_copy(
        update={
            "planner": "claude",
            "planner_triage": PlannerTriage(verdict="suspicious", confidence=0.6, rationale=HOSTILE[0] + HOSTILE[3]),
            "triage": summary,
        }
    )
    hostile = result.model_copy(
        update={
            "factors": [f.model_copy(update={"why": HOSTILE[n % len(HOSTILE)]}) for n, f in enumerate(result.factors)],
            "techniques": [AttackTechnique(id="T1190", name=HOSTILE[1])],
        }
    )
    payload = {**plan.model_dump(mode="json"), "triage_detail": hostile.model_dump(mode="json")}
    ledger.append(KEY, RecordKind.PLAN, "planner:claude", payload)
    for decision in guard.decide_plan(incident, plan, triage=summary):
        body = {**decision.model_dump(mode="json"), "shadow": False, "proposer": "planner:claude"}
        ledger.append(KEY, RecordKind.DECISION, "guard", body)


def test_a_lowered_triage_is_named_and_hostile_text_stays_text(
    ledger: Ledger, embedded_guard: Guard, settings: Settings
) -> None:
    write_lowered_incident(ledger, embedded_guard, settings)
    records = ledger.records(KEY)
    report = build_report(KEY, records)
    lowered = report["triage"]["lowered"]
    decisions = seqs(records, RecordKind.DECISION)
    assert [item["seq"] for item in lowered] == decisions
    assert all(
        (i["verdict"], i["controller_verdict"], i["lowered_by"]) == ("suspicious", "malicious", "planner:claude")
        for i in lowered
    )
    assert report["triage"]["verdict"] == "malicious"  # the controller's own stays as it was

    html = rendered(render_markdown(report))
    assert_inert(html)
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Triage", "Impact", "Actions", "Timeline"]
    assert len(re.findall(r"<h3>", html)) == len(report["actions"])  # no heading of the hostile text's making
    lowering = "lowered by planner:claude from the controller's malicious: the policy was given suspicious"
    assert len(re.findall(lowering, html)) == 1 and f"a1 [ledger seq {decisions[0]}]" in html
    rows = factor_table(html)
    assert len(rows) == 1 + len(report["triage"]["factors"]) and all(len(row) == 6 for row in rows)
    assert "&lt;img src=x onerror=alert(1)&gt;" in rows[1][5]

    trail = build_trail(KEY, records, {"available": False, "reason": "not joined"}, ledger.verify(KEY))
    block = block_of(trail)
    step = block.step(StepKind.DECISION)
    assert step is not None and step.grid is not None
    lowered_fact = fact(step.facts, "lowered by planner:claude from the controller's malicious")
    assert [m.text for m in lowered_fact.marks] == ["lowered by the planner"]
    own = fact(step.facts, "the planner's own triage: suspicious, confidence 0.6")
    assert own.code == HOSTILE[0] + HOSTILE[3]
    assert [(c.source, c.ref) for c in own.cites] == [(Source.LEDGER, seqs(records, RecordKind.PLAN)[0])]
    fact(step.facts, "triage given to the policy: suspicious, confidence 0.6")
    trail_md = rendered(render_trail_markdown(trail))
    assert_inert(trail_md)
    assert len(factor_table(trail_md)) == 1 + len(report["triage"]["factors"])
    page = render_html(trail)
    assert "<img" not in page and "<script" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert str(IMG) not in page


def test_a_plan_without_triage_says_so(ledger: Ledger) -> None:
    """A plan made while the guard was unavailable (or before triage existed) carries none: both views say
    that no triage was given, rather than showing nothing."""
    from tests.test_report_markdown import write_incident

    write_incident(ledger, [True])
    records = ledger.records(KEY)
    report = build_report(KEY, records)
    assert report["triage"] is None
    html = rendered(render_markdown(report))
    assert "No triage recorded" in html and "triage given to the policy: none" in html
    trail = build_trail(KEY, records, {"available": False, "reason": "not joined"}, ledger.verify(KEY))
    step = block_of(trail).step(StepKind.DECISION)
    assert step is not None
    assert [m.text for m in fact(step.facts, "triage given to the policy: none").marks] == ["no triage"]
