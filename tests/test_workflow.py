"""The incident loop on a real Temporal dev server: grouping, approvals, pre-flight, budgets, breaker, revert.

Each test gets its own dev server (in memory, under a second to start) and its own copy of the config, so
workflow ids (incident keys) never collide across tests. Durable timers (approval timeouts, TTL reverts) are
skipped with the dev server's time skipping, never waited for.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from temporalio.testing import TimeSkipper

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, Adapter, VerifyOutcome
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Alert, Category, Level
from autonomy_controller.workflows.approvals import VoteRefused
from autonomy_controller.workflows.client import Submitter, cast_vote, incident_handle, incident_status
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStatus, VoteChoice
from autonomy_controller.workflows.devserver import DevServer, DevServerError
from tests.doubles import FakeEnforcement
from tests.factories import guessed_login
from tests.harness import ATTACKER, BURST, Loop, action_of, alert, awaiting, burst, edit_yaml, running_loop, vote

REPO_PLAYBOOKS = REPO_ROOT / "workflows" / "playbooks"


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


# -- grouping -------------------------------------------------------------------------------------------


async def test_an_alert_storm_is_one_incident_per_source_and_no_alert_is_lost(loop: Loop) -> None:
    sources = ["198.51.100.10", "198.51.100.11", "198.51.100.12"]
    storm = [alert(n, src) for n in range(40) for src in sources]
    submitter = Submitter(loop.client, loop.ledger, level=Level.L1, settle_seconds=0.2, quiet_seconds=0.3, batch_size=7)
    report = await submitter.add_all(storm)
    assert sorted(report.incidents) == sorted(f"src:{s}" for s in sources)
    assert report.signals > len(sources)  # many signals ...
    # ... resubmitting the same alerts (a replayed log) neither adds ledger records nor counts twice
    await Submitter(loop.client, loop.ledger, level=Level.L1, settle_seconds=0.2, quiet_seconds=0.3).add_all(storm[:30])
    for source in sources:
        key = f"src:{source}"
        final = await loop.result(key)
        assert final.alert_count == 40
        assert loop.kinds(key).count("alert") == 40


# -- execute, verify, revert ----------------------------------------------------------------------------


async def test_l3_blocks_verifies_and_reverts_after_the_ttl(loop: Loop) -> None:
    (key,) = await loop.submit(burst(), level=Level.L3)
    # the actions run in parallel: wait for both, not for the block alone
    status = await loop.wait_for(
        key,
        lambda s: (
            bool(s.actions)
            and action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
            and action_of(s, "ticket.create").status is ActionStatus.VERIFIED
        ),
    )
    block = action_of(status, "network.block_ip")
    assert ("blocked", ATTACKER) in loop.enforcement.state
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
    final = await loop.result(key)
    assert action_of(final, "network.block_ip").status is ActionStatus.REVERTED, block
    assert ("blocked", ATTACKER) not in loop.enforcement.state
    assert loop.enforcement.effects == {"network.block_ip": 1, "network.unblock_ip": 1}
    kinds = loop.kinds(key)
    for kind in ("alert", "plan", "decision", "preflight", "execution", "verification", "revert", "report"):
        assert kind in kinds
    report = Path(final.report["markdown"]).read_text() if final.report else ""
    assert "942100" in report and "revision `sha256:" in report and "blast_radius" in report
    assert loop.ledger.verify(key).ok


async def test_history_carries_the_verdicts_and_the_ledger_the_whole_decisions(loop: Loop) -> None:
    """The guard's result as the workflow carries it (its history, each pre-flight's input) has the verdict, the
    reasons, the triage and impact pre-flight decides on again, and no risk factors or policy result: those are in
    the ledger's DECISION record, which the report and the audit trail read."""
    (key,) = await loop.submit(burst(), level=Level.L3)
    await loop.wait_for(
        key, lambda s: bool(s.actions) and action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
    )
    history = await incident_handle(loop.client, key).fetch_history()
    carried = [
        json.loads(payload.data)
        for event in history.events
        if event.HasField("marker_recorded_event_attributes")
        for name, details in event.marker_recorded_event_attributes.details.items()
        if name == "result"
        for payload in details.payloads
        if payload.data.startswith(b"[")
    ]
    (guarded,) = carried  # one guard step: its list of guarded actions
    recorded = {r.payload["action_id"]: r.payload for r in loop.ledger.records(key, [RecordKind.DECISION])}
    assert sorted(recorded) == sorted(item["action"]["id"] for item in guarded)
    for item in guarded:
        decision, whole = item["decision"], recorded[item["action"]["id"]]
        assert decision["verdict"] == whole["verdict"] and decision["reasons"] == whole["reasons"]
        assert decision["triage"] == whole["triage"] and decision["impact"] == whole["impact"]
        assert decision["risk"]["score"] == whole["risk"]["score"] and decision["risk"]["factors"] == []
        assert decision["policy"] is None and whole["policy"]["reasons"] and whole["risk"]["factors"]


async def test_a_block_an_earlier_round_holds_is_never_reverted_by_the_later_one(loop: Loop) -> None:
    """The WAF blocked the first burst (a 1 h block); the second got through (24 h asked): the case's second round
    blocks again for longer, the effect is already there, and only its first owner ever undoes it."""
    (key,) = await loop.submit(burst(), level=Level.L3)
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert await loop.submit(burst(start=100, n=2 * BURST, blocked=False), level=Level.L3) == [key]
    settled = {ActionStatus.AWAITING_REVERT, ActionStatus.VERIFIED}

    def both_settled(status: IncidentStatus) -> bool:
        blocks = [a for a in status.actions if a.action == "network.block_ip"]
        return len(blocks) == 2 and all(b.status in settled for b in blocks)

    status = await loop.wait_for(key, both_settled)
    owner, rider = sorted((a for a in status.actions if a.action == "network.block_ip"), key=lambda a: a.round)
    assert (owner.ttl_seconds, rider.ttl_seconds, rider.action_id) == (3600, 86400, "r2.a1")
    assert owner.status is ActionStatus.AWAITING_REVERT and owner.effect_owned
    assert rider.status is ActionStatus.VERIFIED and not rider.effect_owned and "never undoes it" in rider.detail
    assert loop.enforcement.effects["network.block_ip"] == 1


async def test_the_per_incident_budget_counts_one_case_not_the_incident_key_forever(config_copy: Settings) -> None:
    edit_yaml(config_copy.levels_dir / "L3.yaml", budgets={"contain_network": {"per_incident": 1}})
    async with running_loop(config_copy) as loop:
        for n in (1, 2):  # the same source comes back after its first incident closed: a new case, a new budget
            (key,) = await loop.submit(burst(start=100 * n), level=Level.L3)
            await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
            await TimeSkipper(loop.client).fast_forward(
                incident_handle(loop.client, key), timedelta(hours=1, seconds=5)
            )
            final = await loop.result(key)
            assert action_of(final, "network.block_ip").status is ActionStatus.REVERTED
        assert loop.enforcement.effects["network.block_ip"] == 2


async def test_failed_verification_is_compensated_and_counted(config_copy: Settings) -> None:
    enforcement = FakeEnforcement(fail_verify={"network.block_ip"})
    async with running_loop(config_copy, enforcement) as loop:
        (key,) = await loop.submit(burst(), level=Level.L3)
        final = await loop.result(key)
        block = action_of(final, "network.block_ip")
        assert block.status is ActionStatus.COMPENSATED, block
        assert enforcement.effects["network.unblock_ip"] == 1
        assert "compensation" in loop.kinds(key)


@dataclass
class RecordingEnforcement(FakeEnforcement):
    """FakeEnforcement as it is, plus the requests its adapters were handed (what the activity built)."""

    handed: list[ActionRequest] = field(default_factory=list)

    def adapters(self) -> dict[str, Adapter]:
        return {name: _Recorded(adapter, self.handed) for name, adapter in super().adapters().items()}


@dataclass
class _Recorded:
    inner: Adapter
    handed: list[ActionRequest]

    @property
    def action(self) -> str:
        return self.inner.action

    def execute(self, request: ActionRequest) -> ActionOutcome:
        self.handed.append(request)
        return self.inner.execute(request)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        return self.inner.verify(request, outcome)


def _executions(enforcement: RecordingEnforcement, action: str) -> list[tuple[str, str | None, str]]:
    return [(r.purpose, r.undoes, r.idempotency_key) for r in enforcement.handed if r.action == action]


async def test_an_undo_tells_the_adapter_which_execution_it_undoes(config_copy: Settings) -> None:
    """Compensation and TTL revert hand the undo action's adapter purpose and undoes (the block's own key), so
    an enforcement point can tell its own effect from another owner's without parsing keys."""
    compensated = RecordingEnforcement(fail_verify={"network.block_ip"})
    async with running_loop(config_copy, compensated) as loop:
        (key,) = await loop.submit(burst(), level=Level.L3)
        assert action_of(await loop.result(key), "network.block_ip").status is ActionStatus.COMPENSATED
    reverted = RecordingEnforcement()
    async with running_loop(config_copy, reverted) as loop:
        (key,) = await loop.submit(burst("198.51.100.67"), level=Level.L3)
        await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
        assert action_of(await loop.result(key), "network.block_ip").status is ActionStatus.REVERTED

    for enforcement, purpose in ((compensated, "compensate"), (reverted, "revert")):
        ((executed, none, block_key),) = _executions(enforcement, "network.block_ip")
        ((undo_purpose, undoes, undo_key),) = _executions(enforcement, "network.unblock_ip")
        assert (executed, none) == ("execute", None) and block_key.endswith("/execute")
        assert (undo_purpose, undoes) == (purpose, block_key)
        assert undo_key == block_key.removesuffix("/execute") + f"/{purpose}", "the key format is unchanged"


async def test_circuit_breaker_lowers_the_level_after_failed_verifications(config_copy: Settings) -> None:
    scopes = config_copy.levels_dir / "scopes.yaml"
    edit_yaml(scopes, circuit_breaker={"window_seconds": 3600, "max_failures": 1, "lower_to": "L1"})
    enforcement = FakeEnforcement(fail_verify={"network.block_ip"})
    async with running_loop(config_copy, enforcement) as loop:
        (first,) = await loop.submit(burst("198.51.100.20"), level=Level.L3)
        await loop.result(first)
        (second,) = await loop.submit(burst("198.51.100.21"), level=Level.L3)
        final = await loop.result(second)
        block = action_of(final, "network.block_ip")
        assert block.verdict == "recommend"
        assert enforcement.effects["network.block_ip"] == 1  # only the first incident's
        lowered = loop.ledger.records("_controller", [RecordKind.LEVEL_CHANGE])
        assert lowered and "circuit breaker open" in lowered[0].payload["why"]
        decision = loop.ledger.records(second, [RecordKind.DECISION])[0].payload
        assert decision["effective_level"] == "L1"
        assert any("circuit breaker open" in r for r in decision["level_reasons"])


# -- approvals ------------------------------------------------------------------------------------------


async def test_l2_waits_for_an_authorised_approver_then_blocks(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    status = await awaiting(loop, key)
    block = action_of(status, "network.block_ip")
    assert block.waiting_on == ["bob", "carol", "heidi"]  # soc-oncall, from the policy data
    assert loop.enforcement.effects["network.block_ip"] == 0
    refusals = {
        "planner:offline": "separation of duties",
        "svc:controller": "separation of duties",
        "alice": "not in an approver group",
        "dave": "not in an approver group",
    }
    for who, why in refusals.items():
        with pytest.raises(VoteRefused, match=why):
            await cast_vote(loop.client, loop.ledger, key, vote(who, action_id=block.action_id))
    state = await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    assert state.votes[0].approver == "bob"
    final = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert ("blocked", ATTACKER) in loop.enforcement.state
    with pytest.raises(VoteRefused, match="not awaiting approval"):
        await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    approvals = loop.ledger.records(key, [RecordKind.APPROVAL])
    events = [(r.payload["event"], r.payload.get("approver")) for r in approvals]
    assert ("vote", "bob") in events and ("approved", None) in events
    assert sum(1 for e, _ in events if e == "vote_refused") == len(refusals) + 1
    assert final.actions


async def test_a_double_vote_is_refused(config_copy: Settings) -> None:
    edit_yaml(
        config_copy.levels_dir / "L2.yaml", approval={"quorum": 2, "timeout_seconds": 3600, "on_timeout": "reject"}
    )
    async with running_loop(config_copy) as loop:
        (key,) = await loop.submit([alert(1)], level=Level.L2)
        block = action_of(await awaiting(loop, key), "network.block_ip")
        state = await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
        assert state.waiting_on == ["carol", "heidi"]
        with pytest.raises(VoteRefused, match="already voted"):
            await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
        assert loop.enforcement.effects["network.block_ip"] == 0
        await cast_vote(loop.client, loop.ledger, key, vote("carol", action_id=block.action_id))
        await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
        assert loop.enforcement.effects["network.block_ip"] == 1


async def test_a_rejection_stops_the_action(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    await cast_vote(loop.client, loop.ledger, key, vote("carol", VoteChoice.REJECT, block.action_id))
    final = await loop.result(key)
    block = action_of(final, "network.block_ip")
    assert block.status is ActionStatus.REJECTED and block.waiting_on == [] and block.missing == []
    assert loop.enforcement.effects["network.block_ip"] == 0
    events = [(r.payload["event"], r.payload.get("choice")) for r in loop.ledger.records(key, [RecordKind.APPROVAL])]
    assert events == [("vote", "reject"), ("rejected", None)]


async def test_approval_timeout_rejects_by_default(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    await awaiting(loop, key)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
    final = await loop.result(key)
    assert action_of(final, "network.block_ip").status is ActionStatus.TIMED_OUT
    assert loop.enforcement.effects["network.block_ip"] == 0
    events = [r.payload["event"] for r in loop.ledger.records(key, [RecordKind.APPROVAL])]
    assert events == ["timed_out"]


async def test_timeout_escalates_to_the_next_group(config_copy: Settings) -> None:
    identities = config_copy.policies_dir / "identities" / "data.yaml"
    document = yaml.safe_load(identities.read_text())
    document["approver_groups"]["soc-leads"] = {"members": ["judy"]}
    document["users"]["judy"] = {"privileged": False, "department": "security"}
    identities.write_text(yaml.safe_dump(document))
    edit_yaml(
        config_copy.levels_dir / "L2.yaml",
        approval={"quorum": 1, "timeout_seconds": 600, "on_timeout": "escalate", "escalate_to": "soc-leads"},
    )
    async with running_loop(config_copy) as loop:
        (key,) = await loop.submit([alert(1)], level=Level.L2)
        block = action_of(await awaiting(loop, key), "network.block_ip")
        with pytest.raises(VoteRefused, match="not in an approver group"):
            await cast_vote(loop.client, loop.ledger, key, vote("judy", action_id=block.action_id))
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(seconds=605))
        status = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").escalated)
        assert "judy" in action_of(status, "network.block_ip").waiting_on
        await cast_vote(loop.client, loop.ledger, key, vote("judy", action_id=block.action_id))
        await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
        assert loop.enforcement.effects["network.block_ip"] == 1


def bounded_playbooks(tmp_path: Path, settings: Settings, ttl: int | None = 3600, **extra_action: object) -> Settings:
    """The shipped playbooks with the brute-force account disable bounded by `ttl` (None: permanent, no
    ttl_seconds), plus one more action."""
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO_PLAYBOOKS, playbooks)
    path = playbooks / "brute-force-account.yaml"
    document = yaml.safe_load(path.read_text())
    document["actions"][0]["params"].pop("ttl_seconds", None)
    if ttl is not None:
        document["actions"][0]["params"]["ttl_seconds"] = ttl
    if extra_action:
        document["actions"].append(extra_action)
    path.write_text(yaml.safe_dump(document))
    return dataclasses.replace(settings, playbooks_dir=playbooks)


def guessed(source: str, user: str) -> list[Alert]:
    """A tool's burst triage calls malicious (a veto window never runs containment short of the level's triage
    bar), then the login service's own record that `user` logged in from `source` after guessing: the sensor
    fact that the account is the attacker's (policies/guardrails/entities.rego; the name alone is a claim)."""
    return [*burst(source, Category.BRUTE_FORCE, user=user), guessed_login(user, source)]


async def test_l4_veto_window_runs_a_bounded_action_only_the_level_asked_about(
    config_copy: Settings, tmp_path: Path
) -> None:
    # brute force on a known, non-privileged account the login service saw guessed: L4 asks iam-admins to approve
    # disabling it for an hour; only the level asked (no guardrail), so silence lets it run
    async with running_loop(bounded_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(guessed("198.51.100.30", "alice"), level=Level.L4)
        status = await awaiting(loop, key, "identity.disable_user")
        disable = action_of(status, "identity.disable_user")
        assert set(disable.waiting_on) == {"dave", "erin", "ivan"}
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(minutes=31))
        await loop.wait_for(key, lambda s: action_of(s, "identity.disable_user").status is ActionStatus.AWAITING_REVERT)
        assert ("disabled", "alice") in loop.enforcement.state
        events = [r.payload["event"] for r in loop.ledger.records(key, [RecordKind.APPROVAL])]
        assert "veto_window_passed" in events
        assert action_of(await incident_status(loop.client, key), "identity.disable_user").by_veto_window


async def test_a_veto_window_that_no_longer_applies_runs_nothing(config_copy: Settings, tmp_path: Path) -> None:
    # Silence would run the bounded disable, but the kill switch (L1) flipped while nobody answered: held.
    async with running_loop(bounded_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(guessed("198.51.100.31", "alice"), level=Level.L4)
        await awaiting(loop, key, "identity.disable_user")
        edit_yaml(loop.settings.levels_dir / "scopes.yaml", kill_switch=True)
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(minutes=31))
        final = await loop.wait_for(key, lambda s: action_of(s, "identity.disable_user").status is ActionStatus.HELD)
        assert "veto window no longer applies" in action_of(final, "identity.disable_user").detail
        assert ("disabled", "alice") not in loop.enforcement.state


@pytest.mark.parametrize(
    ("user", "bounded", "name", "reason", "seen"),
    [
        ("alice", False, "identity.disable_user", "permanent containment needs a person", True),
        ("ivan", True, "identity.disable_user", "privileged identity ivan: iam-admins must approve", True),
        ("alice", True, "network.unblock_ip", "a person approves every restore", True),
        # The tool's burst names alice, the login service never saw her password guessed: a claim.
        ("alice", True, "identity.disable_user", "no sensor saw the account taken", False),
    ],
    ids=["permanent disable", "privileged account", "restore", "account only typed"],
)
async def test_l4_veto_window_never_runs_what_a_guardrail_asked_a_person_for(
    config_copy: Settings, tmp_path: Path, user: str, bounded: bool, name: str, reason: str, seen: bool
) -> None:
    # Triage says malicious (a tool's burst) in every case: only the guardrail keeps silence from running it.
    unblock = {"action": "network.unblock_ip", "params": {"ip": "{src_ip}"}, "rationale": "x", "confidence": 0.9}
    settings = bounded_playbooks(tmp_path, config_copy, 3600 if bounded else None, **unblock)
    source = "198.51.100.30"
    alerts = guessed(source, user) if seen else burst(source, Category.BRUTE_FORCE, user=user)
    async with running_loop(settings) as loop:
        (key,) = await loop.submit(alerts, level=Level.L4)
        await awaiting(loop, key, name)
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(minutes=31))
        final = await loop.wait_for(key, lambda s: action_of(s, name).status is ActionStatus.TIMED_OUT)
        action = action_of(final, name)
        decision = next(
            r.payload for r in loop.ledger.records(key, [RecordKind.DECISION]) if r.payload["action"] == name
        )
        assert decision["policy"]["veto_window"] is False and any(reason in r for r in decision["reasons"])
        approvals = loop.ledger.records(key, [RecordKind.APPROVAL])
        events = [r.payload["event"] for r in approvals if r.payload["action_id"] == action.action_id]
        assert "timed_out" in events and "veto_window_passed" not in events
        assert not loop.ledger.records(key, [RecordKind.EXECUTION]) or all(
            r.payload["request"]["action"] != name for r in loop.ledger.records(key, [RecordKind.EXECUTION])
        )


# -- re-evaluation just before acting -------------------------------------------------------------------


async def test_kill_switch_flipped_while_waiting_stops_the_action(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    edit_yaml(loop.settings.levels_dir / "scopes.yaml", kill_switch=True)
    await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    final = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.HELD)
    assert "kill switch on" in action_of(final, "network.block_ip").detail
    assert loop.enforcement.effects["network.block_ip"] == 0
    preflight = loop.ledger.records(key, [RecordKind.PREFLIGHT])[-1].payload
    assert preflight["go"] is False


async def test_a_quorum_raised_while_waiting_holds_an_action_its_votes_no_longer_satisfy(loop: Loop) -> None:
    """bob's vote met the quorum of 1 the action was decided under; the lead raised L2's quorum to 2 meanwhile.
    The pre-flight decision asks for 2 approvals: one vote is not enough, the block is held and says why."""
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    edit_yaml(
        loop.settings.levels_dir / "L2.yaml", approval={"quorum": 2, "timeout_seconds": 3600, "on_timeout": "reject"}
    )
    await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    final = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.HELD)
    assert "the votes no longer satisfy the policy: 1 more approval(s)" in action_of(final, "network.block_ip").detail
    assert loop.enforcement.effects["network.block_ip"] == 0


async def test_shadow_mode_records_every_decision_and_runs_nothing(config_copy: Settings) -> None:
    edit_yaml(config_copy.levels_dir / "scopes.yaml", shadow=True)
    async with running_loop(config_copy) as loop:
        (key,) = await loop.submit([alert(1)], level=Level.L3)
        final = await loop.result(key)
        assert {a.status for a in final.actions} == {ActionStatus.SHADOW}
        assert loop.enforcement.effects == {}
        decisions = loop.ledger.records(key, [RecordKind.DECISION])
        assert len(decisions) == len(final.actions) and all(d.payload["shadow"] for d in decisions)
        assert not loop.ledger.records(key, [RecordKind.EXECUTION])


async def test_budget_caps_blocks_across_incidents(config_copy: Settings) -> None:
    l3 = config_copy.levels_dir / "L3.yaml"
    edit_yaml(l3, budgets={"contain_network": {"per_window": 1, "window_seconds": 3600}})
    async with running_loop(config_copy) as loop:
        keys = await loop.submit([*burst("198.51.100.40"), *burst("198.51.100.41")], level=Level.L3)
        settled = {ActionStatus.HELD, ActionStatus.AWAITING_REVERT}
        finals = [await loop.wait_for(k, lambda s: action_of(s, "network.block_ip").status in settled) for k in keys]
        blocks = sorted((action_of(f, "network.block_ip") for f in finals), key=lambda a: a.status.value)
        assert [b.status for b in blocks] == [ActionStatus.AWAITING_REVERT, ActionStatus.HELD]
        assert "budget spent: 1 of 1" in blocks[1].detail
        assert loop.enforcement.effects["network.block_ip"] == 1


def test_a_dev_server_port_already_taken_is_an_error() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(DevServerError, match="already in use"):
            DevServer(port=holder.getsockname()[1]).start()


# -- guard hardening through the loop: claims never lift the level, permanent containment waits ----------------


async def test_an_asset_an_alert_names_never_lifts_the_incidents_level(loop: Loop) -> None:
    # The WAF saw the burst go to dc-01 (domain-controllers: L1); the alerts claim the staging web server (L4).
    (key,) = await loop.submit(burst(dst_ip="10.10.0.10", asset="web-stg-01"))  # no declared level: scopes decide
    final = await loop.result(key)
    block = action_of(final, "network.block_ip")
    assert block.verdict == "recommend" and block.status is ActionStatus.NOT_RUN
    decision = next(
        r.payload for r in loop.ledger.records(key, [RecordKind.DECISION]) if r.payload["action"] == "network.block_ip"
    )
    assert decision["effective_level"] == "L1"
    assert loop.enforcement.effects == {}


async def test_a_permanent_block_waits_for_a_person_and_times_out_unrun(config_copy: Settings, tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO_PLAYBOOKS, playbooks)
    path = playbooks / "web-attack-blocked.yaml"
    document = yaml.safe_load(path.read_text())
    del document["actions"][0]["params"]["ttl_seconds"]
    path.write_text(yaml.safe_dump(document))
    settings = dataclasses.replace(config_copy, playbooks_dir=playbooks)
    async with running_loop(settings) as loop:
        (key,) = await loop.submit(burst(), level=Level.L3)  # malicious: only the missing TTL asks for a person
        block = action_of(await awaiting(loop, key), "network.block_ip")
        await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, minutes=1))
        final = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.TIMED_OUT)
        assert action_of(final, "network.block_ip").action_id == block.action_id
        decision = next(
            r.payload
            for r in loop.ledger.records(key, [RecordKind.DECISION])
            if r.payload["action"] == "network.block_ip"
        )
        assert decision["triage"]["verdict"] == "malicious"
        assert decision["reasons"] == [
            "network.block_ip has no ttl_seconds: permanent containment needs a person at every level"
        ]
        assert loop.enforcement.effects.get("network.block_ip", 0) == 0
