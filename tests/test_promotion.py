"""Shadow trials, promotion checks and scorecards, from decisions the real workflow made and people answered.

The live level for production is L2 (approvals) and a trial decides each action as if production were at L3.
Three incidents: a person approves one block, rejects another, and lets the third time out. The trial would
have run all three blocks alone, so promote-check must count one agreement, one override and one unanswered,
and the scorecard must show what L2 did: 3 approvals asked, 1 granted, 1 rejected, 1 timed out, 1 contained.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from temporalio.testing import TimeSkipper
from typer.testing import CliRunner

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.levels import LevelConfigError, load_level_config
from autonomy_controller.controller.decision.policy_bundle import load_bundle
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.ledger.outcomes import outcomes
from autonomy_controller.controller.models import Level, Plan, ProposedAction, Verdict
from autonomy_controller.controller.oversight.scorecards import build_approver_cards, build_scorecards
from autonomy_controller.controller.oversight.scorecards_html import OUTCOME_COLOURS, UNSIGNED_NOTE, scorecards_page
from autonomy_controller.workflows.client import cast_vote, incident_handle
from autonomy_controller.workflows.contracts import ActionStatus, VoteChoice
from tests.browser import read_png, screenshot
from tests.factories import MALICIOUS
from tests.harness import Loop, action_of, alert, awaiting, burst, edit_yaml, running_loop, vote

SCOPE = "environment:production"
SOURCES = ("198.51.100.21", "198.51.100.22", "198.51.100.23")
BLOCK = "network.block_ip"
runner = CliRunner()


def trial_config(settings: Settings) -> None:
    """Production live at L2 with a trial at L3."""
    scopes = settings.levels_dir / "scopes.yaml"
    document = yaml.safe_load(scopes.read_text())
    edit_yaml(scopes, environments={**document["environments"], "production": "L2"}, trials={SCOPE: "L3"})


def block_plan() -> Plan:
    action = ProposedAction(
        id="a1", action=BLOCK, params={"ip": SOURCES[0], "ttl_seconds": 3600}, rationale="sqli", confidence=0.9
    )
    return Plan(incident_key=f"sqli:{SOURCES[0]}", planner="offline", actions=[action])


# -- the guard records trials ------------------------------------------------------------------------------


def guard_for(settings: Settings) -> Guard:
    bundle = load_bundle(settings.policies_dir, load_level_config(settings.levels_dir))
    return Guard(bundle, EmbeddedEngine(bundle))


def test_each_decision_carries_the_trials_verdict_beside_the_live_one(config_copy: Settings) -> None:
    trial_config(config_copy)
    guard = guard_for(config_copy)
    incident = incident_from_alerts(f"sqli:{SOURCES[0]}", [alert(1, SOURCES[0])])
    (decision,) = guard.decide_plan(incident, block_plan(), triage=MALICIOUS)
    assert (decision.scope, decision.declared_level, decision.verdict) == (SCOPE, Level.L2, Verdict.APPROVE)
    (trial,) = decision.trials
    assert (trial.scope, trial.level, trial.effective_level, trial.verdict) == (SCOPE, Level.L3, Level.L3, "execute")
    (what_if,) = guard.decide_plan(incident, block_plan(), level=Level.L4, triage=MALICIOUS)
    assert what_if.trials == [] and what_if.scope == "declared"


def test_a_trial_on_another_scope_is_not_recorded(config_copy: Settings) -> None:
    edit_yaml(config_copy.levels_dir / "scopes.yaml", trials={"environment:staging": "L4", "category:xss": "L4"})
    incident = incident_from_alerts(f"sqli:{SOURCES[0]}", [alert(1, SOURCES[0])])
    (decision,) = guard_for(config_copy).decide_plan(incident, block_plan())
    assert decision.trials == [] and decision.scope == SCOPE


def test_a_trial_scope_that_names_nothing_is_a_config_error(config_copy: Settings) -> None:
    edit_yaml(config_copy.levels_dir / "scopes.yaml", trials={"prod": "L4", "category:nonsense": "L3"})
    with pytest.raises(LevelConfigError) as error:
        load_level_config(config_copy.levels_dir)
    text = str(error.value)
    assert "scope 'prod': expected 'default' or one of asset_group:<name>" in text
    assert "nonsense" in text


# -- from the workflow to promote-check and the scorecard ----------------------------------------------


@dataclass
class Answered:
    settings: Settings
    keys: list[str]

    def env(self) -> dict[str, str]:
        return {
            "AUTONOMY_LEVELS_DIR": str(self.settings.levels_dir),
            "AUTONOMY_POLICIES_DIR": str(self.settings.policies_dir),
            "AUTONOMY_STATE_DIR": str(self.settings.state_dir),
        }


async def answer(loop: Loop) -> list[str]:
    now = datetime.now(UTC)
    keys = [(await loop.submit(burst(source, observed_at=now)))[0] for source in SOURCES]  # scopes decide
    blocks = [action_of(await awaiting(loop, key), BLOCK) for key in keys]
    await cast_vote(loop.client, loop.ledger, keys[0], vote("bob", action_id=blocks[0].action_id))
    await cast_vote(loop.client, loop.ledger, keys[1], vote("carol", VoteChoice.REJECT, blocks[1].action_id))
    await loop.wait_for(keys[0], lambda s: action_of(s, BLOCK).status is ActionStatus.AWAITING_REVERT)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, keys[2]), timedelta(hours=1, seconds=5))
    await loop.wait_for(keys[2], lambda s: action_of(s, BLOCK).status is ActionStatus.TIMED_OUT)
    return keys


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def answered(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Answered]:
    root = tmp_path_factory.mktemp("promotion")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    copy = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    trial_config(copy)
    async with running_loop(copy) as loop:
        keys = await answer(loop)
    yield Answered(copy, keys)


def promote_check(answered: Answered, *args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["levels", "promote-check", SCOPE, *args, "--json"], env=answered.env())
    return result.exit_code, json.loads(result.stdout.splitlines()[-1])


def test_promote_check_counts_agreements_overrides_and_unanswered(answered: Answered) -> None:
    code, report = promote_check(answered, "--to", "L3")
    evidence = report["evidence"]
    blocks = 3
    assert evidence["decisions"] >= blocks and evidence["would_run_alone"] >= blocks
    assert (evidence["agreed"], evidence["overridden"], evidence["unanswered"]) == (1, 1, 1)
    assert [o["incident"] for o in evidence["overrides"]] == [answered.keys[1]]
    criteria = {c["name"]: c for c in report["criteria"]}
    assert criteria["override share"]["measured"] == "50.0% (1/2)" and not criteria["override share"]["met"]
    assert not criteria["days in shadow"]["met"]  # L3 asks for 7 days; the trial is minutes old
    assert (code, report["ready"]) == (1, False)


def test_promote_check_passes_once_the_criteria_allow_what_was_measured(answered: Answered) -> None:
    edit_yaml(
        answered.settings.levels_dir / "L3.yaml",
        promotion={"min_days_in_shadow": 0, "min_decisions": 3, "max_override_share": 0.5},
    )
    try:
        code, report = promote_check(answered, "--to", "L3")
        assert (code, report["ready"]) == (0, True), report
    finally:
        edit_yaml(answered.settings.levels_dir / "L3.yaml", promotion={"min_days_in_shadow": 7})


def test_promote_check_without_trial_decisions_is_not_ready(answered: Answered) -> None:
    code, report = promote_check(answered, "--to", "L4")
    assert (code, report["ready"], report["evidence"]["decisions"]) == (1, False, 0)


def test_promote_check_refuses_a_scope_it_cannot_parse(answered: Answered) -> None:
    result = runner.invoke(app, ["levels", "promote-check", "production", "--to", "L3"], env=answered.env())
    assert result.exit_code == 2 and "expected 'default' or one of" in result.output


def test_scorecard_counts_what_l2_did_in_production(answered: Answered) -> None:
    result = runner.invoke(app, ["scorecard", "--scope", SCOPE, "--json"], env=answered.env())
    assert result.exit_code == 0, result.output
    (card,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (card["scope"], card["level"]) == (SCOPE, "L2")
    assert (card["approvals_requested"], card["granted"], card["rejected"], card["timed_out"]) == (3, 1, 1, 1)
    assert card["approval_latency_p50_s"] is not None and card["approval_latency_p50_s"] >= 0
    assert card["incidents_contained"] == 1 and card["mttc_s"] is not None and card["mttc_s"] > 0
    assert card["auto_executed"] == card["executed"] - 1  # everything that ran, but the approved block
    assert card["verification_failures"] == 0 and card["reverts"] == 0


def test_scorecard_by_approver_counts_each_persons_votes_and_unsigned_ones(answered: Answered) -> None:
    result = runner.invoke(app, ["scorecard", "--by-approver", "--json"], env=answered.env())
    assert result.exit_code == 0, result.output
    rows = {row["approver"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"bob", "carol"}  # the third block timed out: nobody voted
    assert (rows["bob"]["approved"], rows["bob"]["rejected"]) == (1, 0)
    assert (rows["carol"]["approved"], rows["carol"]["rejected"]) == (0, 1)
    assert all(r["unsigned"] == 1 and r["signed_share"] == 0.0 for r in rows.values())  # `--as`: unsigned
    assert all(r["vote_latency_p50_s"] >= 0 for r in rows.values())
    card = json.loads(runner.invoke(app, ["scorecard", "--json"], env=answered.env()).stdout.splitlines()[0])
    assert (card["votes"], card["unsigned_votes"]) == (2, 2)


def test_scorecard_mttc_is_first_alert_to_verified_containment(answered: Answered) -> None:
    with Ledger.from_url(answered.settings.ledger_url) as ledger:
        incidents = {o.incident_key: o for o in outcomes(ledger)}
    contained = incidents[answered.keys[0]]
    block = next(e for e in contained.episodes if e.action == BLOCK)
    assert block.verified_at is not None and contained.first_alert_at is not None
    assert contained.seconds_to_contain == (block.verified_at - contained.first_alert_at).total_seconds()
    assert incidents[answered.keys[1]].seconds_to_contain is None  # rejected: never contained


def test_scorecard_html_shows_the_outcomes_chart_and_figures(answered: Answered, tmp_path: Path) -> None:
    with Ledger.from_url(answered.settings.ledger_url) as ledger:
        incidents = list(outcomes(ledger))
    page = scorecards_page(build_scorecards(incidents), build_approver_cards(incidents), "test")
    assert "<td>bob</td>" in page and "<td>carol</td>" in page and UNSIGNED_NOTE in page
    assert f"assets in environment production ({SCOPE}) @ L2 rejected: " in page  # the scope in words
    assert "<svg" in page and "Mean time to contain" in page
    html = tmp_path / "scorecards.html"
    html.write_text(page)
    image = read_png(screenshot(html, tmp_path / "scorecards.png", width=1100, height=700))
    assert image.non_white_share > 0.03  # a page, not a blank
    for outcome in ("ran alone", "approved", "rejected", "timed out"):  # one of each happened
        assert image.pixels_of(OUTCOME_COLOURS[outcome]) > 200, outcome
