"""Which hosts and accounts containment may hit alone: only those the sensors' own facts put in the attacker's hands
(policies/guardrails/entities.rego, controller/decision/entities.py), on every engine.

A host is the case's source (the sensors reported its address as the alerts' source, on a connection); an asset
an attack reached is not, at any impact verdict (a 2xx and a request matching a malware rule are the attacker's to
produce); an account is one a login service recorded a login of after guessing. Any other host or account an
alert names is a claim (where a request went, the name a client typed): a person approves, with a reason, and
never through a veto window.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.models import (
    Category,
    GuardDecision,
    ImpactSummary,
    Incident,
    Level,
    Plan,
    ProposedAction,
    Severity,
    Verdict,
)
from autonomy_controller.controller.planning import OfflinePlanner
from tests.factories import MALICIOUS, guessed_login, make_incident
from tests.harness import ATTACKER, alert, burst

runner = CliRunner()
ENGINES = ["wasm", "embedded", "opa"]
TTL = 3600
STAGING_WEB, STAGING_DB = "10.30.0.11", "10.30.1.20"  # web-stg-01, db-stg-01 (policies/inventory/data.yaml): L4
TYPED = "no sensor saw the account taken"
WENT_TO = "an alert went to it, which the attacker chooses"


def decide(guard: Guard, incident: Incident, action: str, params: dict[str, Any], **plan: Any) -> GuardDecision:
    proposed = ProposedAction(id="a1", action=action, params={**params, "ttl_seconds": TTL}, confidence=0.9)
    [decision] = guard.decide_plan(
        incident,
        Plan(incident_key=incident.key, planner="offline", actions=[proposed], **plan),
        Level.L4,
        triage=MALICIOUS,
    )
    return decision


def veto_window(decision: GuardDecision) -> bool:
    assert decision.policy is not None, decision.reasons
    return decision.policy.veto_window


# -- accounts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_an_account_a_login_service_saw_guessed_gets_l4s_veto_window(guards: dict[str, Guard], engine: str) -> None:
    guard = guards[engine]
    seen = decide(guard, make_incident(user="alice", guessed=("alice",)), "identity.disable_user", {"user": "alice"})
    typed = decide(guard, make_incident(user="alice", guessed=("bob",)), "identity.disable_user", {"user": "alice"})
    assert (seen.verdict, veto_window(seen)) == (Verdict.APPROVE, True), seen.reasons
    assert not any(TYPED in r for r in seen.reasons)
    assert (typed.verdict, veto_window(typed)) == (Verdict.APPROVE, False)
    assert any(TYPED in r and "alice" in r for r in typed.reasons), typed.reasons


def test_a_login_record_whose_facts_say_no_guessing_names_nobody(embedded_guard: Guard) -> None:
    # The rule id says guessed; the service's own count behind it (2 failures, under the threshold triage reads)
    # does not: the facts decide, as they do for triage (controller/triage/facts.py).
    login = guessed_login("alice")
    short = login.model_copy(update={"raw": {**login.raw, "user_failures_before": 2}})
    base = make_incident(user="alice")
    incident = base.model_copy(update={"alerts": [*base.alerts, short]})
    decision = decide(embedded_guard, incident, "identity.disable_user", {"user": "alice"})
    assert not veto_window(decision) and any(TYPED in r for r in decision.reasons), decision.reasons


def auth_log(n: int, outcome: str, failures_before: int, user: str = "alice") -> dict[str, Any]:
    """One line of a login service's authentication log (controller/ingest/auth_log.py: the lab's login service
    writes exactly this)."""
    return {
        "time": f"2026-11-23T08:02:{n:02d}+00:00",
        "event": "authentication",
        "service": "lab-login",
        "src_ip": ATTACKER,
        "dst_ip": "198.51.100.1",
        "dst_port": 8081,
        "user": user,
        "outcome": outcome,
        "source_failures": n,
        "user_failures_before": failures_before,
        "request_id": f"login-{n}",
    }


def evaluate(tmp_path: Path, engine: str, lines: list[dict[str, Any]], plan: dict[str, Any]) -> list[dict[str, Any]]:
    tmp_path.mkdir()
    alerts, plan_file = tmp_path / "alerts.jsonl", tmp_path / "plan.json"
    alerts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    plan_file.write_text(json.dumps({"actions": [plan]}))
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}
    command = ["evaluate", str(alerts), "--json", "--engine", engine, "--plan", str(plan_file), "--level", "L4"]
    result = runner.invoke(app, command, env=env)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return [d for r in records for d in r["decisions"]]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_login_services_own_log_is_the_fact_end_to_end(tmp_path: Path, engine: str) -> None:
    # A tool's burst (triage: malicious), then the login service's log: guessing against alice, then her password
    # guessed (a success after 5 failures against her). Read through ingest, as any deployment reads it.
    waf = [a.model_dump(mode="json") for a in burst()]
    failures = [auth_log(n, "failure", n - 3) for n in range(3, 8)]
    disable = {"action": "identity.disable_user", "params": {"user": "alice", "ttl_seconds": TTL}, "confidence": 0.6}
    [tried] = evaluate(tmp_path / "tried", engine, [*waf, *failures], disable)
    [taken] = evaluate(tmp_path / "taken", engine, [*waf, *failures, auth_log(8, "success", 5)], disable)
    assert (tried["verdict"], tried["policy"]["veto_window"]) == ("approve", False)
    assert any(TYPED in r for r in tried["reasons"]), tried["reasons"]
    assert (taken["verdict"], taken["policy"]["veto_window"]) == ("approve", True), taken["reasons"]


# -- hosts --------------------------------------------------------------------------------------------------


def malware_from(address: str) -> Incident:
    """An EDR's malware alerts about the host at `address`, as the sensor reports them: the host is the source."""
    return make_incident(Category.MALWARE, address, None, count=3)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_cases_source_is_isolated_alone_at_l4(guards: dict[str, Guard], engine: str) -> None:
    decision = decide(guards[engine], malware_from(STAGING_WEB), "host.isolate", {"host": "web-stg-01"})
    assert (decision.effective_level, decision.verdict) == (Level.L4, Verdict.EXECUTE), decision.reasons


@pytest.mark.parametrize("engine", ENGINES)
def test_an_asset_the_attack_reached_goes_to_a_person_even_confirmed(guards: dict[str, Guard], engine: str) -> None:
    # `confirmed` rests on a post-exploitation alert, which one request written to match a malware rule produces;
    # the asset it lists, on the application's answer, which any page that ignores the payload gives
    # (tests/test_review_sensors2_impact.py). A host the attacker holds shows itself as a source instead.
    incident = make_incident(dst_ip=STAGING_WEB, blocked=False)
    reached = ImpactSummary(verdict="confirmed", assets=["web-stg-01"])
    decision = decide(guards[engine], incident, "host.isolate", {"host": "web-stg-01"}, impact=reached)
    assert (decision.verdict, veto_window(decision)) == (Verdict.APPROVE, False), decision.reasons
    assert any(WENT_TO in r and "web-stg-01" in r for r in decision.reasons), decision.reasons
    assert decision.impact is not None and decision.impact.assets == ["web-stg-01"]  # shown to the person


@pytest.mark.parametrize("engine", ENGINES)
def test_an_answered_attack_request_does_not_isolate_alone(guards: dict[str, Guard], engine: str) -> None:
    # `likely`: the application answered 2xx to an attack request no sensor refused. An attacker gets that from any
    # page that ignores the payload (a WAF in DetectionOnly, a path it does not cover): were it enough, anyone
    # could take a host of ours off the network at L4 with a handful of requests.
    incident = make_incident(dst_ip=STAGING_WEB, blocked=False)
    answered = ImpactSummary(verdict="likely", assets=["web-stg-01"])
    decision = decide(guards[engine], incident, "host.isolate", {"host": "web-stg-01"}, impact=answered)
    assert (decision.verdict, veto_window(decision)) == (Verdict.APPROVE, False), decision.reasons
    assert any(WENT_TO in r and "web-stg-01" in r for r in decision.reasons), decision.reasons


@pytest.mark.parametrize("engine", ENGINES)
def test_a_host_an_attack_merely_went_to_goes_to_a_person(guards: dict[str, Guard], engine: str) -> None:
    incident = make_incident(dst_ip=STAGING_WEB)
    other = ImpactSummary(verdict="likely", assets=["web-01"])  # the attack reached another asset
    for plan in ({}, {"impact": ImpactSummary(verdict="attempted", assets=["web-stg-01"])}, {"impact": other}):
        decision = decide(guards[engine], incident, "host.isolate", {"host": "web-stg-01"}, **plan)
        assert (decision.verdict, veto_window(decision)) == (Verdict.APPROVE, False), plan
        assert any(WENT_TO in r and "web-stg-01" in r for r in decision.reasons), decision.reasons
        assert decision.policy is not None and {"group": "soc-oncall", "quorum": 1} in [
            r.model_dump() for r in decision.policy.approval_requirements
        ]


# -- the shipped playbooks ------------------------------------------------------------------------------------


def lateral() -> Incident:
    """Lateral movement from web-stg-01 to db-stg-01, as an IDS reports it."""
    alerts = [
        alert(n, STAGING_WEB, Category.LATERAL_MOVEMENT, dst_ip=STAGING_DB, severity=Severity.HIGH) for n in range(3)
    ]
    return make_incident(Category.LATERAL_MOVEMENT, STAGING_WEB, STAGING_DB).model_copy(update={"alerts": alerts})


@pytest.mark.parametrize("engine", ENGINES)
def test_lateral_movement_isolates_its_origin_alone_and_its_destination_only_with_a_person(
    guards: dict[str, Guard], engine: str
) -> None:
    # The playbook isolates both ends. The origin (web-stg-01) is the case's source, which the sensors saw act for
    # the attacker: isolated alone, it stops the next hop. The destination (db-stg-01) the attacker has not been
    # seen to hold until a sensor sees it act as a source itself: a person approves, however far impact says the
    # movement got.
    guard = guards[engine]
    incident = guard.enrich(lateral())
    assert (incident.source_asset, incident.asset) == ("web-stg-01", "db-stg-01")
    planner = OfflinePlanner(REPO_ROOT / "workflows" / "playbooks", guard.asset_groups)
    plan = planner.plan(incident, triage="malicious")
    assert plan.playbook == "lateral-movement"
    isolations = [a for a in plan.actions if a.action == "host.isolate"]
    assert [a.params["host"] for a in isolations] == ["web-stg-01", "db-stg-01"]
    origin, destination = guard.decide_plan(
        incident, plan.model_copy(update={"actions": isolations}), Level.L4, triage=MALICIOUS
    )
    assert origin.verdict is Verdict.EXECUTE, origin.reasons
    assert destination.verdict is Verdict.APPROVE and any(WENT_TO in r for r in destination.reasons)
    reached = ImpactSummary(verdict="confirmed", assets=["db-stg-01"])
    held = decide(guard, incident, "host.isolate", {"host": "db-stg-01"}, impact=reached)
    assert held.verdict is Verdict.APPROVE and any(WENT_TO in r for r in held.reasons), held.reasons
    assert decide(guard, incident, "host.isolate", {"host": "web-stg-01"}).verdict is Verdict.EXECUTE


def test_an_origin_the_inventory_does_not_know_is_not_proposed(embedded_guard: Guard) -> None:
    # The movement comes from an address no asset owns: only the destination's isolation is proposed (for a person),
    # and the ticket says what was left out.
    alerts = [
        alert(n, "10.99.0.5", Category.LATERAL_MOVEMENT, dst_ip=STAGING_DB, severity=Severity.HIGH) for n in range(3)
    ]
    incident = embedded_guard.enrich(
        make_incident(Category.LATERAL_MOVEMENT, "10.99.0.5", STAGING_DB).model_copy(update={"alerts": alerts})
    )
    assert (incident.source_asset, incident.asset) == (None, "db-stg-01")
    plan = OfflinePlanner(REPO_ROOT / "workflows" / "playbooks", embedded_guard.asset_groups).plan(
        incident, "malicious"
    )
    assert [a.params["host"] for a in plan.actions if a.action == "host.isolate"] == ["db-stg-01"]
    [ticket] = [a for a in plan.actions if a.action == "ticket.create"]
    assert "no single known source_asset" in ticket.params["body"]


def test_the_playbooks_that_isolate_their_case_source_still_run_alone(embedded_guard: Guard) -> None:
    # C2 and exfiltration come from our host: the playbook's {asset} is the source, isolated alone at L4 as before.
    planner = OfflinePlanner(REPO_ROOT / "workflows" / "playbooks", embedded_guard.asset_groups)
    for category, playbook in ((Category.C2, "c2-host"), (Category.EXFILTRATION, "exfiltration")):
        incident = embedded_guard.enrich(make_incident(category, STAGING_WEB, "192.0.2.80", blocked=False, count=3))
        plan = planner.plan(incident, triage="malicious")
        assert plan.playbook == playbook
        [isolate] = [a for a in plan.actions if a.action == "host.isolate"]
        [decision] = embedded_guard.decide_plan(
            incident, plan.model_copy(update={"actions": [isolate]}), Level.L4, triage=MALICIOUS
        )
        assert (isolate.params["host"], decision.verdict) == ("web-stg-01", Verdict.EXECUTE), decision.reasons
