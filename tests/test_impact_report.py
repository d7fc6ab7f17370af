"""The impact verdict in the incident report, the audit trail and the policy's reasons (issue 13).

A real ledger written the way the activities write it: the lab's real Suricata EVE and nginx access-log records
through real ingest (plus the application's 200 on a path the WAF does not cover, tests/test_impact.py), the real
triage, impact assessment, offline planner and guard (both engines), in two decision rounds: the first on the
refused attacks alone (`attempted`), the second once the 200 came in (`likely`). Then hostile text wherever a plan
record's impact can carry it, a plan without a verdict, and evidence naming an alert the ledger lacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.impact import assess
from autonomy_controller.controller.case.grouping import group_alerts
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind, sqlite_url
from autonomy_controller.controller.models import Alert, ImpactSummary, Plan
from autonomy_controller.controller.oversight.reports import IMPACT_HEADERS, build_report, render_markdown
from autonomy_controller.controller.oversight.trail import Fact, Source, StepKind, Tone, Trail, build_trail, render_html
from autonomy_controller.controller.oversight.trail.render import render_markdown as render_trail_markdown
from autonomy_controller.controller.planning import OfflinePlanner
from tests.test_conformance import POLICY_CASES, _input_doc
from tests.test_impact import eve_and_access, got_through
from tests.test_report_markdown import HOSTILE, IMG, assert_inert, rendered

ATTACKER = "198.51.100.66"
KEY = f"src:{ATTACKER}"
BLOCK = "network.block_ip"
LIKELY = (
    "impact likely: an attack reached web-01 (the application answered an attack request no sensor refused; "
    "a person confirms)"
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(sqlite_url(tmp_path / "ledger.db")) as led:
        yield led


def attacker_alerts(tmp_path: Path) -> tuple[list[Alert], list[Alert]]:
    """The attacker's refused attacks and access-log lines; then the IDS alert and the 200 that got through."""
    eve, access = eve_and_access()
    ids, answered = got_through(tmp_path)
    return [a for a in eve + access if a.src_ip == ATTACKER], ids + answered


def plan_round(
    ledger: Ledger, guard: Guard, settings: Settings, alerts: list[Alert], round_: int, **impact: Any
) -> LedgerRecord:
    """One decision round as `plan_round` and `guard_plan` record it: triage, impact, plan, then decisions."""
    (incident,) = [guard.enrich(i) for i in group_alerts(alerts) if i.key == KEY]
    summary = guard.triage_summary(guard.triage(incident))
    assessed = assess(incident.alerts, tracking_config(settings)).model_copy(update=impact)
    plan = OfflinePlanner(settings.playbooks_dir, guard.asset_groups).plan(incident, summary.verdict, assessed.verdict)
    prefix = "" if round_ == 1 else f"r{round_}."
    actions = [a.model_copy(update={"id": prefix + a.id}) for a in plan.actions]
    plan = plan.model_copy(update={"triage": summary, "impact": assessed, "actions": actions})
    extra = {} if round_ == 1 else {"round": round_, "in_hand": []}
    record = ledger.append(KEY, RecordKind.PLAN, "planner:offline", {**plan.model_dump(mode="json"), **extra})
    for decision in guard.decide_plan(incident, plan, triage=summary):
        body = {**decision.model_dump(mode="json"), "shadow": False, "proposer": "planner:offline"}
        ledger.append(KEY, RecordKind.DECISION, "guard", body)
    return record


def write_two_rounds(ledger: Ledger, guard: Guard, settings: Settings, tmp_path: Path) -> tuple[LedgerRecord, ...]:
    refused, through = attacker_alerts(tmp_path)
    for a in refused:
        ledger.append(KEY, RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
    first = plan_round(ledger, guard, settings, refused, 1)
    for a in through:
        ledger.append(KEY, RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
    second = plan_round(ledger, guard, settings, refused + through, 2)
    return first, second


def alert_seq(records: list[LedgerRecord], alert_id: str) -> int:
    (seq,) = [r.seq for r in records if r.kind is RecordKind.ALERT and r.payload["id"] == alert_id]
    return seq


def impact_table(html: str) -> list[list[str]]:
    for body in re.findall(r"<table>(.*?)</table>", html, re.S):
        rows = [
            re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
        ]
        if rows and rows[0] == IMPACT_HEADERS:
            return rows[1:]
    raise AssertionError("no impact table")


def decision_facts(trail: Trail, action_id: str) -> list[Fact]:
    step = trail.action(action_id).step(StepKind.DECISION)
    assert step is not None
    return step.facts


def starting(facts: list[Fact], text: str) -> list[Fact]:
    return [f for f in facts if f.text.startswith(text)]


def test_the_report_shows_the_impact_by_round_with_the_access_log_line_as_evidence(
    ledger: Ledger, embedded_guard: Guard, settings: Settings, tmp_path: Path
) -> None:
    first, second = write_two_rounds(ledger, embedded_guard, settings, tmp_path)
    records = ledger.records(KEY)
    report = build_report(KEY, records)
    impact = report["impact"]
    assert (impact["seq"], impact["verdict"], impact["stage"]) == (second.seq, "likely", "possible_success")
    assert impact["assets"] == ["web-01"] and impact["bytes_sent"] == 1234
    assert [(r["round"], r["verdict"], r["seq"]) for r in impact["rounds"]] == [
        (1, "attempted", first.seq),
        (2, "likely", second.seq),
    ]
    _, through = attacker_alerts(tmp_path)
    (line,) = [e for e in impact["evidence"] if e["sensor"] == "nginx-access"]
    assert (line["alert_id"], line["seq"], line["status"]) == (through[1].id, alert_seq(records, through[1].id), 200)
    assert {e["seq"] for e in impact["evidence"]} == {alert_seq(records, a.id) for a in through}

    html = rendered(render_markdown(report))
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Triage", "Impact", "Actions", "Timeline"]
    assert f"verdict: likely (stage possible_success) [ledger seq {second.seq}]" in html
    assert "assets an attack reached: web-01" in html and "sent back on those answers: 1234" in html
    assert f"by decision round: 1: attempted [ledger seq {first.seq}]; 2: likely [ledger seq {second.seq}]" in html
    rows = impact_table(html)
    assert [row[:6] for row in rows if row[2] == "nginx-access"] == [
        [through[1].id, str(line["seq"]), "nginx-access", "web-01", "200", "1234"]
    ]
    # the block the second round decided names what was reached among the policy's reasons
    block = next(a for a in report["actions"] if a["action"] == BLOCK and a["action_id"].startswith("r2."))
    assert LIKELY in block["decision"]["reasons"]
    first_block = next(a for a in report["actions"] if a["action"] == BLOCK and not a["action_id"].startswith("r"))
    assert not any(r.startswith("impact ") for r in first_block["decision"]["reasons"])


def test_the_trails_decision_step_cites_the_plan_and_each_evidence_record(
    ledger: Ledger, embedded_guard: Guard, settings: Settings, tmp_path: Path
) -> None:
    first, second = write_two_rounds(ledger, embedded_guard, settings, tmp_path)
    records = ledger.records(KEY)
    trail = build_trail(KEY, records, {"available": False, "reason": "not joined"}, ledger.verify(KEY))
    assert trail.disagreement_count == 0, trail.disagreements
    block = next(a for a in trail.actions if a.action == BLOCK and a.action_id.startswith("r2."))
    facts = decision_facts(trail, block.action_id)
    (given,) = starting(facts, "impact given to the policy: ")
    assert (
        given.text
        == "impact given to the policy: likely (stage possible_success): an attack reached web-01; 1234 bytes sent back"
    )
    assert [(m.text, m.tone) for m in given.marks] == [("impact likely", Tone.BAD)]
    assert [(c.source, c.ref) for c in given.cites] == [(Source.LEDGER, second.seq)]
    _, through = attacker_alerts(tmp_path)
    evidence = starting(facts, "impact evidence: ")
    assert {f.cites[0].ref for f in evidence} == {alert_seq(records, a.id) for a in through}
    (line,) = [f for f in evidence if "from nginx-access" in f.text]
    assert "(asset web-01, status 200, 1234 bytes)" in line.text
    assert [c.ref for c in line.cites] == [alert_seq(records, through[1].id), second.seq]
    assert starting(facts, f"reason: {LIKELY}")
    assert "impact likely" in block.summary

    earlier = next(a for a in trail.actions if a.action == BLOCK and not a.action_id.startswith("r"))
    (said,) = starting(decision_facts(trail, earlier.action_id), "impact given to the policy: ")
    assert said.text == "impact given to the policy: attempted (stage exploitation_attempt)"
    assert [c.ref for c in said.cites] == [first.seq] and said.marks[0].tone is Tone.WARN
    assert not starting(decision_facts(trail, earlier.action_id), "impact evidence: ")

    page = render_html(trail)
    assert "impact likely" in page and "<script" not in page


def test_hostile_impact_text_stays_text_and_a_missing_alert_is_a_disagreement(
    ledger: Ledger, embedded_guard: Guard, settings: Settings, tmp_path: Path
) -> None:
    """An evidence line's alert id, asset and reason come from sensor records: every renderer shows them inert.
    Evidence naming an alert the ledger does not hold (an edited record) is said, marked and a disagreement."""
    refused, through = attacker_alerts(tmp_path)
    alerts = refused + through
    for a in alerts:
        ledger.append(KEY, RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
    hostile = [
        {"alert_id": HOSTILE[n], "sensor": HOSTILE[n + 1], "asset": HOSTILE[n + 2], "status": 200, "why": IMG}
        for n in range(3)
    ]
    plan = plan_round(ledger, embedded_guard, settings, alerts, 1, assets=[HOSTILE[1]], evidence=hostile)
    records = ledger.records(KEY)
    report = build_report(KEY, records)
    assert [e["seq"] for e in report["impact"]["evidence"]] == [None, None, None]
    html = rendered(render_markdown(report))
    assert_inert(html)
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Triage", "Impact", "Actions", "Timeline"]
    rows = impact_table(html)
    assert len(rows) == 3 and all(len(row) == len(IMPACT_HEADERS) for row in rows)
    assert all(row[6] == "&lt;img src=x onerror=alert(1)&gt;" for row in rows)

    trail = build_trail(KEY, records, {"available": False, "reason": "not joined"}, ledger.verify(KEY))
    block = next(a for a in trail.actions if a.action == BLOCK)
    missing = starting(decision_facts(trail, block.action_id), "impact evidence: ")
    assert len(missing) == 3 and all(f.marks[0].text == "alert not found" for f in missing)
    assert all([c.ref for c in f.cites] == [plan.seq] for f in missing)
    assert len([d for d in block.disagreements if "impact evidence names alert" in d.text]) == 3
    assert_inert(rendered(render_trail_markdown(trail)))
    page = render_html(trail)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_plan_without_an_impact_verdict_says_so(
    ledger: Ledger, embedded_guard: Guard, settings: Settings, tmp_path: Path
) -> None:
    refused, _ = attacker_alerts(tmp_path)
    for a in refused:
        ledger.append(KEY, RecordKind.ALERT, "ingest", a.model_dump(mode="json"))
    (incident,) = [embedded_guard.enrich(i) for i in group_alerts(refused) if i.key == KEY]
    plan = OfflinePlanner(settings.playbooks_dir, embedded_guard.asset_groups).plan(incident)
    ledger.append(KEY, RecordKind.PLAN, "planner:offline", plan.model_dump(mode="json"))
    for decision in embedded_guard.decide_plan(incident, plan):
        ledger.append(KEY, RecordKind.DECISION, "guard", {**decision.model_dump(mode="json"), "shadow": False})
    records = ledger.records(KEY)
    report = build_report(KEY, records)
    assert report["impact"] is None
    assert "No impact verdict recorded" in rendered(render_markdown(report))
    trail = build_trail(KEY, records, {"available": False, "reason": "not joined"}, ledger.verify(KEY))
    block = next(a for a in trail.actions if a.action == BLOCK)
    (said,) = starting(decision_facts(trail, block.action_id), "impact given to the policy: none")
    assert [m.text for m in said.marks] == ["no impact verdict"]


# -- the policy, on both engines ------------------------------------------------------------------------------

IMPACTS = [
    ({"verdict": "likely", "assets": ["web-01"]}, LIKELY),
    (
        {"verdict": "confirmed", "assets": ["web-02", "web-01"]},
        "impact confirmed: post-exploitation alerts from the source; an attack reached web-01, web-02",
    ),
]


@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda c: c.name)
def test_impact_is_named_and_never_changes_a_verdict_on_either_engine(
    case: Any, embedded_guard: Guard, opa_guard: Guard
) -> None:
    """Every conformance case's real input, with its risk held: an impact that got through adds its reason on both
    engines alike, and the verdict, approvers, quorum and veto window stay what they were. (Save in the one
    guardrail that reads it, policies/guardrails/entities.rego: a host the attack reached may be isolated without
    a person. Its targets are made the case's source here, so that rule has nothing left to lift;
    tests/test_guard_entities.py tests it.)"""
    document = _input_doc(embedded_guard, case)
    document = {**document, "context": {**document["context"], "source_assets": document["targets"]["hosts"]}}
    plain = embedded_guard.engine.evaluate({**document, "impact": {"verdict": "none", "assets": []}})
    for impact, reason in IMPACTS:
        embedded = embedded_guard.engine.evaluate({**document, "impact": impact})
        assert embedded == opa_guard.engine.evaluate({**document, "impact": impact})
        assert reason in embedded["reasons"]
        assert {**embedded, "reasons": None} == {**plain, "reasons": None}
        assert sorted(set(embedded["reasons"]) - set(plain["reasons"])) == [reason]


def test_the_guard_gives_the_plans_impact_to_the_policy(embedded_guard: Guard, opa_guard: Guard) -> None:
    from tests.harness import alert

    (incident,) = group_alerts([alert(1, dst_ip="198.51.100.1")])
    likely = ImpactSummary(verdict="likely", stage="possible_success", assets=["web-01"])
    plan = OfflinePlanner(Settings().playbooks_dir, embedded_guard.asset_groups).plan(incident, "malicious", "likely")
    for guard in (embedded_guard, opa_guard):
        with_impact = guard.decide_plan(incident, plan.model_copy(update={"impact": likely}))
        without = guard.decide_plan(incident, Plan(**{**plan.model_dump(), "impact": None}))
        assert all(LIKELY in d.reasons for d in with_impact if d.policy is not None)
        assert not any(r.startswith("impact ") for d in without for r in d.reasons)
