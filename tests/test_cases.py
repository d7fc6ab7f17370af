"""One attacker, one case: alerts are grouped by source across categories and sensors, a case is planned once
(one block, one ticket, every category's evidence named), each category counts as a scope, and a case that
grows is decided again: a later round acts on the stronger evidence, never twice, never over a person's no.

Planner and guard on the shipped config and the embedded engine; the rounds on the real Temporal dev server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from autonomy_controller.controller.attackers import stage_rank
from autonomy_controller.controller.case.grouping import (
    category_summary,
    category_views,
    group_alerts,
    incident_from_alerts,
    incident_key,
)
from autonomy_controller.controller.case.rounds import InHand, due, split_in_hand
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Alert, Category, Level, Plan, ProposedAction, Severity, Verdict
from autonomy_controller.controller.planning import OfflinePlanner
from autonomy_controller.workflows.client import cast_vote, incident_status
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStatus, VoteChoice
from tests.harness import ATTACKER, BURST, SETTLE, WAF_RAW, Loop, action_of, alert, awaiting, burst, running_loop, vote

# -- grouping -------------------------------------------------------------------------------------------


def test_a_source_is_one_case_across_categories_and_sensors() -> None:
    alerts = [
        *burst(n=3),
        *burst(category=Category.XSS, n=2, start=10),
        alert(20, category=Category.SCANNER, severity=Severity.LOW),
        alert(21, category=Category.PROTOCOL, source="suricata", severity=Severity.CRITICAL),
        alert(22, src_ip="203.0.113.9"),
    ]
    cases = {case.key: case for case in group_alerts(alerts)}
    assert list(cases) == [f"src:{ATTACKER}", "src:203.0.113.9"]
    case = cases[f"src:{ATTACKER}"]
    # the attack class leads, never the protocol violation that rides along (even a critical one)
    assert case.category is Category.SQLI and len(case.alerts) == 7
    assert [v.category for v in category_views(case)] == [
        Category.SQLI,
        Category.XSS,
        Category.SCANNER,
        Category.PROTOCOL,
    ]
    assert category_summary(case) == (
        "sqli 3 alerts (932100, 941100, 942100, +1); xss 2 alerts (932100, 941100, 942100, +1); "
        "scanner 1 alert (942100, 949110); protocol 1 alert (942100, 949110)"
    )


def test_without_a_source_the_case_is_the_asset_then_the_user_then_the_sensors_rule() -> None:
    assert incident_key(alert(1, src_ip=None, asset="web-01", user="dave")) == "asset:web-01"
    assert incident_key(alert(1, src_ip=None, user="dave")) == "user:dave"
    decoder = alert(1, src_ip=None, source="suricata", rule_ids=["2200003"], category=Category.PROTOCOL)
    assert incident_key(decoder) == "sensor:suricata:2200003"
    assert incident_key(decoder.model_copy(update={"id": "other"})) == "sensor:suricata:2200003"  # grouped
    long = incident_key(alert(1, src_ip=None, asset="x" * 500))
    assert len(long) <= 130 and long != incident_key(alert(1, src_ip=None, asset="x" * 499 + "y"))


# -- planning ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planner() -> OfflinePlanner:
    return OfflinePlanner()


def test_a_case_gets_one_block_the_longest_asked_and_one_ticket_naming_every_category(planner: OfflinePlanner) -> None:
    case = incident_from_alerts(
        f"src:{ATTACKER}",
        [
            *burst(n=3),
            *burst(category=Category.XSS, n=2, start=10, blocked=False),
            alert(20, category=Category.SCANNER),
        ],
    )
    plan = planner.plan(case, "malicious")
    blocks = [a for a in plan.actions if a.action == "network.block_ip"]
    tickets = [a for a in plan.actions if a.action == "ticket.create"]
    assert len(blocks) == 1 and len(tickets) == 1
    # SQLi blocked by the WAF asks 1 h, the XSS that got through 24 h, the scanner 15 min: the longest wins
    assert blocks[0].params == {"ip": ATTACKER, "ttl_seconds": 86400}
    assert f"every category: {category_summary(case)}" in tickets[0].params["body"]
    assert [a.id for a in plan.actions] == [f"a{n}" for n in range(1, len(plan.actions) + 1)]
    assert plan.playbook is not None and plan.playbook.startswith("web-attack-")


# -- the level: every category is a scope ------------------------------------------------------------------


def _block_verdict(guard: Guard, case_alerts: list[Alert]) -> Verdict:
    """The guard's verdict on a 1 h block of the attacker, for a case of these alerts (its own triage)."""
    case = incident_from_alerts(f"src:{ATTACKER}", case_alerts)
    block = ProposedAction(id="a1", action="network.block_ip", params={"ip": ATTACKER, "ttl_seconds": 3600})
    (decision,) = guard.decide_plan(case, Plan(incident_key=case.key, planner="offline", actions=[block]))
    return decision.verdict


def test_each_attack_category_of_a_case_is_a_scope_and_only_lowers(embedded_guard: Guard) -> None:
    attack = burst(n=20)
    assert _block_verdict(embedded_guard, attack) is Verdict.EXECUTE
    # malware evidence from the same source: scopes.yaml keeps malware at L2, so the whole case waits for a person
    with_malware = [*attack, alert(99, category=Category.MALWARE)]
    assert _block_verdict(embedded_guard, with_malware) is Verdict.APPROVE
    # protocol violations and unclassified events ride along with attacks: they do not take it out of L3
    riding = [*attack, alert(98, category=Category.PROTOCOL), alert(97, category=Category.OTHER)]
    assert _block_verdict(embedded_guard, riding) is Verdict.EXECUTE


# -- rounds: when, and what is in hand ---------------------------------------------------------------------


def test_a_case_is_decided_again_when_its_evidence_doubles_or_a_new_category_appears() -> None:
    sqli = frozenset({Category.SQLI})
    assert not due(1, [Category.SQLI], (1, sqli), rounds=1)
    assert due(2, [Category.SQLI], (1, sqli), rounds=1)
    assert not due(15, [Category.SQLI], (10, sqli), rounds=2)
    assert due(11, [Category.SQLI, Category.XSS], (10, sqli), rounds=2)
    assert not due(10_000, [Category.SQLI], (10, sqli), rounds=8)  # bounded


def test_what_an_earlier_round_holds_is_not_proposed_again() -> None:
    block = ProposedAction(id="a1", action="network.block_ip", params={"ip": ATTACKER, "ttl_seconds": 3600})
    longer = block.model_copy(update={"id": "a2", "params": {"ip": ATTACKER, "ttl_seconds": 86400}})
    ticket = ProposedAction(id="a3", action="ticket.create", params={"title": "t", "severity": "high", "body": "b"})

    def earlier(status: str, ttl: int | None = 3600, action: str = "network.block_ip") -> InHand:
        target = ATTACKER if action == "network.block_ip" else None
        return InHand(action_id="a1", action=action, target=target, ttl_seconds=ttl, status=status)

    fresh, held = split_in_hand(
        [block, longer, ticket], [earlier("awaiting_revert"), earlier("verified", None, "ticket.create")]
    )
    assert [a.id for a in fresh] == ["a2"]  # only the longer block: the 1 h one and the ticket are in hand
    assert held == [
        {"action": "network.block_ip", "held_by": "a1", "status": "awaiting_revert"},
        {"action": "ticket.create", "held_by": "a1", "status": "verified"},
    ]
    assert split_in_hand([longer], [earlier("rejected")])[0] == []  # a person said no: not again
    # a ticket more severe than the one in place is new (the case got worse); as or less severe, it is held
    medium = earlier("verified", None, "ticket.create").model_copy(update={"severity": "medium"})
    assert split_in_hand([ticket], [medium])[0] == [ticket]
    assert split_in_hand([ticket], [medium.model_copy(update={"severity": "critical"})])[0] == []
    assert split_in_hand([ticket], [medium.model_copy(update={"status": "rejected"})])[0] == []
    for status in ("awaiting_approval", "timed_out", "not_run", "failed", "reverted"):
        assert split_in_hand([block], [earlier(status)])[0] == [block], status


# -- rounds in the workflow ---------------------------------------------------------------------------------


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


def _blocks(status: IncidentStatus) -> list:
    return [a for a in status.actions if a.action == "network.block_ip"]


async def test_a_stray_hit_waits_for_a_person_and_the_tool_that_follows_is_blocked_alone(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L3, quiet=30)
    first = action_of(await awaiting(loop, key), "network.block_ip")
    assert first.round == 1
    assert await loop.submit(burst(start=100, n=3 * BURST), level=Level.L3, quiet=30) == [key]
    status = await loop.wait_for(
        key, lambda s: len(_blocks(s)) == 2 and _blocks(s)[1].status is ActionStatus.AWAITING_REVERT
    )
    stray, tool = _blocks(status)
    assert stray.status is ActionStatus.SUPERSEDED and tool.action_id in stray.detail
    assert (tool.round, tool.verdict, status.rounds) == (2, "execute", 2)
    plans = [r.payload for r in loop.ledger.records(key, [RecordKind.PLAN])]
    assert [p.get("round", 1) for p in plans] == [1, 2]
    assert {h["action"] for h in plans[1]["in_hand"]} == {"ticket.create"}  # one ticket per case
    assert loop.enforcement.effects["network.block_ip"] == 1
    approvals = [r.payload.get("event") for r in loop.ledger.records(key, [RecordKind.APPROVAL])]
    assert "superseded" in approvals


async def test_a_later_round_never_overrules_a_persons_rejection(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L3, quiet=30)
    await awaiting(loop, key)
    await cast_vote(loop.client, loop.ledger, key, vote("carol", VoteChoice.REJECT))
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.REJECTED)
    await loop.submit(burst(start=100, n=3 * BURST), level=Level.L3, quiet=0.3)
    final = await loop.result(key)
    assert final.rounds == 2 and [b.status for b in _blocks(final)] == [ActionStatus.REJECTED]
    assert loop.enforcement.effects["network.block_ip"] == 0


def test_a_stage_rise_to_exploitation_or_success_decides_again_without_doubling() -> None:
    sqli = frozenset({Category.SQLI})
    recon, attempt, success = (stage_rank(s) for s in ("recon", "exploitation_attempt", "possible_success"))
    assert due(11, [Category.SQLI], (10, sqli), rounds=1, stage=(attempt, success))
    assert due(11, [Category.SQLI], (10, sqli), rounds=1, stage=(recon, attempt))
    assert not due(11, [Category.SQLI], (10, sqli), rounds=1, stage=(0, recon))  # recon alone changes no plan
    assert not due(11, [Category.SQLI], (10, sqli), rounds=1, stage=(success, success))
    assert not due(10, [Category.SQLI], (10, sqli), rounds=1, stage=(attempt, success))  # no new alert
    assert not due(11, [Category.SQLI], (10, sqli), rounds=8, stage=(attempt, success))  # bounded


def _answered_200(n: int) -> Alert:
    """A ModSecurity v3 record in detection mode: CRS flagged the SQLi, the application answered 200."""
    raw = {**WAF_RAW, "transaction": {**WAF_RAW["transaction"], "response": {"http_code": 200}}}
    return alert(n, source="modsecurity3", blocked=False, raw=raw)


async def test_a_case_whose_attack_got_through_is_decided_again_with_the_stronger_playbook(loop: Loop) -> None:
    refused = [alert(n, source="modsecurity3", raw=WAF_RAW) for n in range(1, 5)]
    (key,) = await loop.submit(refused, level=Level.L3, quiet=30)
    await loop.wait_for(key, lambda s: s.rounds == 1 and any(a.verdict != "undecided" for a in s.actions))
    await loop.submit([_answered_200(10)], level=Level.L3, quiet=0.3)  # 5 alerts, same category: only the stage
    final = await loop.wait_for(key, lambda s: any(a.round == 2 and a.verdict != "undecided" for a in s.actions))
    plans = [r.payload for r in loop.ledger.records(key, [RecordKind.PLAN])]
    assert final.rounds == 2 and [p.get("round", 1) for p in plans] == [1, 2]
    assert [p["impact"]["verdict"] for p in plans] == ["attempted", "likely"]
    assert plans[1]["impact"]["evidence"][0]["alert_id"] == _answered_200(10).id
    assert "web-attack-reached" in plans[1]["playbook"]
    week = [a for a in plans[1]["actions"] if a["action"] == "network.block_ip"]
    assert week and week[0]["params"]["ttl_seconds"] == 604800
    decisions = [r.payload for r in loop.ledger.records(key, [RecordKind.DECISION])]
    credit = [f for d in decisions if d["action"].endswith("block_ip") for f in d["risk"]["factors"]]
    assert any(f["name"] == "impact" and f["contribution"] < 0 for f in credit)


async def test_more_refused_attacks_short_of_doubling_do_not_decide_again(loop: Loop) -> None:
    refused = [alert(n, source="modsecurity3", raw=WAF_RAW) for n in range(1, 5)]
    (key,) = await loop.submit(refused, level=Level.L3, quiet=30)
    await loop.wait_for(key, lambda s: s.rounds == 1 and any(a.verdict != "undecided" for a in s.actions))
    await loop.submit([alert(10, source="modsecurity3", raw=WAF_RAW)], level=Level.L3, quiet=0.3)
    await loop.wait_for(key, lambda s: s.alert_count == 5)
    await asyncio.sleep(10 * SETTLE)  # a round due now would have begun (the harness settles for SETTLE seconds)
    assert (await incident_status(loop.client, key)).rounds == 1
