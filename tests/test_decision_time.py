"""The decision time in the policy input (input.time): what the clock or a replayed alert says, exactly, on both
engines; stated in the decision record; simulate judges a past incident at its last alert's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import time_input
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.models import Level, Plan, ProposedAction, TriageSummary, Verdict
from autonomy_controller.controller.oversight.simulate import DiffRow, SimConfig, Simulation, stream_incidents
from tests.factories import make_incident

# A guardrail that reads only the decision time: containment is denied before 06:00 UTC, naming the time given.
NIGHT_RULE = """package autonomy.guardrails

deny contains concat("", ["no containment at night: ", input.time.rfc3339]) if {
\tstartswith(input.action.class, "contain_")
\t[hour, _, _] := time.clock([input.time.now_ns, "UTC"])
\thour < 6
}
"""


def test_time_input_is_exact_nanoseconds_and_rfc3339_in_utc() -> None:
    at = datetime(2026, 11, 23, 5, 59, 59, 123456, tzinfo=UTC)
    assert time_input(at) == {"now_ns": 1795413599123456000, "rfc3339": "2026-11-23T05:59:59.123456Z"}
    # The same instant in another zone, and a naive time read as UTC, give the same input.
    assert time_input(at.astimezone(timezone(timedelta(hours=-5)))) == time_input(at)
    assert time_input(at.replace(tzinfo=None)) == time_input(at)
    assert time_input(datetime(1970, 1, 1, tzinfo=UTC)) == {"now_ns": 0, "rfc3339": "1970-01-01T00:00:00Z"}


@pytest.mark.parametrize("engine", list(EngineName))
def test_a_time_rule_sees_the_given_time_on_both_engines(engine: EngineName, config_copy: Settings) -> None:
    (config_copy.policies_dir / "guardrails" / "night.rego").write_text(NIGHT_RULE)
    incident = make_incident()
    action = ProposedAction(id="a1", action="network.block_ip", params={"ip": "198.51.100.66", "ttl_seconds": 60})
    plan = Plan(incident_key=incident.key, planner="offline", actions=[action])
    triage = TriageSummary(verdict="malicious", confidence=0.9)
    night, day = datetime(2026, 11, 23, 5, 59, 59, tzinfo=UTC), datetime(2026, 11, 23, 6, 0, 0, tzinfo=UTC)
    with open_guard(config_copy, engine) as guard:
        [at_night] = guard.decide_plan(incident, plan, Level.L3, triage=triage, now=night)
        [by_day] = guard.decide_plan(incident, plan, Level.L3, triage=triage, now=day)
        [by_clock] = guard.decide_plan(incident, plan, Level.L3, triage=triage)
    assert at_night.verdict is Verdict.DENY
    assert at_night.reasons == ["no containment at night: 2026-11-23T05:59:59Z"]
    assert by_day.verdict is Verdict.EXECUTE, by_day.reasons
    # Stated in every decision record; without `now`, the clock's time (the live loop, evaluate).
    assert (at_night.decision_time, by_day.decision_time) == (night, day)
    assert by_clock.decision_time is not None
    assert abs(by_clock.decision_time - datetime.now(UTC)) < timedelta(minutes=1)
    assert "decision_time" in by_day.model_dump(mode="json")


def test_an_unavailable_guard_states_the_time_too(config_copy: Settings) -> None:
    (config_copy.policies_dir / "guardrails" / "broken.rego").write_text("package autonomy.guardrails\n\ndeny if {")
    incident = make_incident()
    plan = Plan(incident_key=incident.key, planner="offline", actions=[ProposedAction(id="a1", action="notify.x")])
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with open_guard(config_copy, EngineName.EMBEDDED) as guard:
        [decision] = guard.decide_plan(incident, plan, now=at)
    assert decision.verdict is Verdict.DENY and decision.reasons[0].startswith("guard unavailable")
    assert decision.decision_time == at


def test_simulate_judges_each_incident_at_its_last_alert_time(config_copy: Settings) -> None:
    """Base: the shipped policy; candidate: plus the night rule. The alerts came in at 05:00 UTC: only the
    alert's own time (not today's clock) makes the candidate deny, naming that time."""
    (config_copy.policies_dir / "guardrails" / "night.rego").write_text(NIGHT_RULE)
    incident = make_incident(count=3)  # alerts at 08:00:00-08:00:02 on 2026-11-23
    alerts = [a.model_copy(update={"observed_at": a.observed_at - timedelta(hours=3)}) for a in incident.alerts]
    base = SimConfig("base", Settings())
    candidate = SimConfig("night", config_copy)
    with Simulation(base, candidate, levels=[Level.L3]) as simulation:
        rows = [row for row in simulation.run(stream_incidents(iter(alerts))) if isinstance(row, DiffRow)]
    blocks = [row for row in rows if row.action == "network.block_ip"]
    assert blocks, rows
    for row in blocks:
        assert row.old_verdict != "deny" and row.new_verdict == "deny"
        assert row.reasons_added == ["no containment at night: 2026-11-23T05:00:02Z"]


@pytest.mark.parametrize("engine", list(EngineName))
@pytest.mark.parametrize(
    "at",
    [
        datetime(2262, 4, 12, 4, 0, tzinfo=UTC),
        datetime(9999, 12, 31, 5, 0, tzinfo=UTC),
        datetime(1600, 1, 1, tzinfo=UTC),
    ],
    ids=["just past int64", "year 9999", "year 1600"],
)
def test_a_time_no_policy_can_read_is_denied_naming_it(engine: EngineName, config_copy: Settings, at: datetime) -> None:
    # Nanoseconds since 1970 outside 64 bits (before 1677-09-21, after 2262-04-11): OPA and regopy failed the
    # time built-in (a deny naming an engine error), the wasm engine read the time, so the engines disagreed
    # (simulate decides at a replayed alert's own time, a claim). Now one deny, naming the range, on each.
    (config_copy.policies_dir / "guardrails" / "night.rego").write_text(NIGHT_RULE)
    incident = make_incident()
    action = ProposedAction(id="a1", action="network.block_ip", params={"ip": "198.51.100.66", "ttl_seconds": 60})
    plan = Plan(incident_key=incident.key, planner="offline", actions=[action])
    triage = TriageSummary(verdict="malicious", confidence=0.9)
    with open_guard(config_copy, engine) as guard:
        [decision] = guard.decide_plan(incident, plan, Level.L3, triage=triage, now=at)
    assert decision.verdict is Verdict.DENY
    assert any("decision time" in r and "1677-09-21" in r and "2262-04-11" in r for r in decision.reasons), (
        decision.reasons
    )
    assert decision.decision_time == at
