"""People's feedback through the real loop: a person rejects a block, the next incident carrying the same rule is
triaged with that rule's weight lowered (a visible `rule_feedback` factor, within the model's bound), a
confirmation gives weight back; then the commands people read it with (triage explain / exclusions, scorecard).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.triage import TriageResult
from autonomy_controller.controller.triage.engine import RULE_FACTORS
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionStatus, VoteChoice
from tests.harness import Loop, action_of, alert, awaiting, running_loop, vote
from tests.test_triage import model

BLOCK = "network.block_ip"
SOURCES = ["198.51.100.31", "198.51.100.32", "198.51.100.33"]
runner = CliRunner()


def planned_triage(loop: Loop, key: str) -> TriageResult:
    (plan,) = loop.ledger.records(key, [RecordKind.PLAN])
    return TriageResult.model_validate(plan.payload["triage_detail"])


def lost(result: TriageResult) -> float:
    return -sum(f.contribution for f in result.factors if f.name == "rule_feedback")


@dataclass
class Story:
    settings: Settings
    keys: list[str]
    triages: list[TriageResult]

    def cli(self, *args: str) -> Any:
        env = {
            "AUTONOMY_LEVELS_DIR": str(self.settings.levels_dir),
            "AUTONOMY_POLICIES_DIR": str(self.settings.policies_dir),
            "AUTONOMY_STATE_DIR": str(self.settings.state_dir),
            "COLUMNS": "250",
        }
        return runner.invoke(app, list(args), env=env)


async def incident(loop: Loop, n: int) -> tuple[str, str]:
    """One SQLi alert (rule 942100 on /item) from its own source at L2: the block waits for a person."""
    (key,) = await loop.submit([alert(n, SOURCES[n], url="/item?id=1")], level=Level.L2)
    return key, action_of(await awaiting(loop, key), BLOCK).action_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def story(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Story]:
    import shutil

    root = tmp_path_factory.mktemp("feedback")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    copy = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    async with running_loop(copy) as loop:
        first, block = await incident(loop, 0)
        await cast_vote(loop.client, loop.ledger, first, vote("carol", VoteChoice.REJECT, block))  # a false positive
        await loop.wait_for(first, lambda s: action_of(s, BLOCK).status is ActionStatus.REJECTED)
        second, block = await incident(loop, 1)
        await cast_vote(loop.client, loop.ledger, second, vote("bob", action_id=block))  # this one was right
        await loop.wait_for(second, lambda s: action_of(s, BLOCK).status is ActionStatus.AWAITING_REVERT)
        third, _ = await incident(loop, 2)
        keys = [first, second, third]
        yield Story(copy, keys, [planned_triage(loop, k) for k in keys])


def test_a_rejection_lowers_the_rules_weight_in_the_next_incident_visibly_and_within_its_bound(story: Story) -> None:
    before, after, _ = story.triages
    assert lost(before) == 0 and not any(f.name == "rule_feedback" for f in before.factors)
    factor = next(f for f in after.factors if f.name == "rule_feedback")
    assert factor.trust == "people" and factor.contribution < 0 and "942100" in factor.why
    rule_points = sum(f.contribution for f in before.factors if f.name in RULE_FACTORS)
    assert 0 < lost(after) <= model().feedback.max_discount * rule_points + 0.01
    assert after.score == pytest.approx(before.score - lost(after), abs=0.15)


def test_a_confirmation_gives_the_weight_back(story: Story) -> None:
    _, after_rejection, after_confirmation = story.triages
    assert 0 < lost(after_confirmation) < lost(after_rejection)
    assert after_confirmation.score > after_rejection.score


def test_triage_explain_prints_the_recorded_factors(story: Story) -> None:
    result = story.cli("triage", "explain", story.keys[1], "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["triage"] == story.triages[1].model_dump(mode="json") and doc["guard"]["verdict"]
    names = [f["name"] for f in doc["triage"]["factors"]]
    assert "rule_feedback" in names and "source_history" in names
    table = story.cli("triage", "explain", story.keys[1])
    assert table.exit_code == 0 and "rule_feedback" in table.stdout and "people" in table.stdout
    missing = story.cli("triage", "explain", "sqli:192.0.2.250")
    assert missing.exit_code == 1 and "no triage" in missing.output


def test_triage_exclusions_lists_what_people_rejected_with_a_line_to_review(story: Story) -> None:
    result = story.cli("triage", "exclusions", "--min-rejections", "1", "--json")
    assert result.exit_code == 0, result.output
    rows = {(r["rule_id"], r["path"]): r for r in map(json.loads, result.stdout.splitlines())}
    scoped = rows[("942100", "/item")]
    assert (scoped["rejected"], scoped["reverted"], scoped["confirmed"]) == (1, 0, 1)
    assert scoped["proposal"]["directive"].startswith('SecRule REQUEST_URI "@beginsWith /item"')
    assert "ctl:ruleRemoveById=942100" in scoped["proposal"]["directive"] and scoped["proposal"]["applied"] is False
    assert rows[("942100", None)]["proposal"] is None and "rule-wide" in rows[("942100", None)]["refused"]
    assert rows[("949110", "/item")]["proposal"] is None and "disables CRS" in rows[("949110", "/item")]["refused"]
    assert story.cli("triage", "exclusions", "--min-rejections", "2", "--json").stdout == ""
    table = story.cli("triage", "exclusions", "--min-rejections", "1")
    assert table.exit_code == 0 and "942100" in table.stdout and "@beginsWith /item" in table.stdout


def test_scorecard_counts_overrides_per_rule_and_the_triage_mix(story: Story) -> None:
    result = story.cli("scorecard", "--by-rule", "--json")
    assert result.exit_code == 0, result.output
    rules = {r["rule_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rules["942100"] == {
        "rule_id": "942100",
        "containment": 3,
        "approved": 1,
        "rejected": 1,
        "reverted": 0,
        "override_share": 0.5,
    }
    cards = [json.loads(line) for line in story.cli("scorecard", "--json").stdout.splitlines()]
    mix: dict[str, int] = {}
    for card in cards:
        for verdict, n in card["triage_mix"].items():
            mix[verdict] = mix.get(verdict, 0) + n
    assert sum(mix.values()) == sum(c["decided"] for c in cards) and "none" not in mix
    html = story.settings.state_dir / "scorecards.html"
    assert story.cli("scorecard", "--html", str(html)).exit_code == 0
    page = html.read_text()
    assert "people&#x27;s overrides" in page or "people's overrides" in page
    assert "<td>942100</td>" in page and "triage m/s/n" in page
