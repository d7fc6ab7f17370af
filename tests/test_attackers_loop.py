"""Attacker profiles through the real loop: a dev server, a worker, the Submitter's hook, and the CLI."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.attackers import AttackerStore
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import sqlite_url
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.contracts import ActionStatus
from tests.harness import ATTACKER, Loop, action_of, burst, running_loop


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


async def test_submitted_alerts_build_a_profile_and_the_cli_shows_the_block(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    (key,) = await loop.submit(burst(), level=Level.L3)
    # built by the Submitter's hook alone: nothing here folds
    profile = AttackerStore(loop.ledger).get(ATTACKER)
    assert profile is not None and profile.alerts == len(burst()) and profile.stage == "exploitation_attempt"
    assert profile.incidents == {key: len(burst())} and profile.outcomes.waf_blocked == len(burst())
    await loop.wait_for(
        key, lambda s: bool(s.actions) and action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
    )
    # the CLI folds what the ledger gained since (the guard's decision, the execution, its verification)
    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(loop.settings.state_dir))
    monkeypatch.setenv("AUTONOMY_LEDGER_URL", loop.settings.ledger_url)
    result = CliRunner().invoke(app, ["attackers", "show", ATTACKER, "--json"], env=dict(os.environ))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    block = next(a for a in shown["actions"] if a["action"] == "network.block_ip")
    assert (block["verdict"], block["status"], block["target"]) == ("execute", "verified", ATTACKER)
    listed = CliRunner().invoke(app, ["attackers", "list", "--json"], env=dict(os.environ))
    assert [json.loads(line)["address"] for line in listed.stdout.splitlines()] == [ATTACKER]
    missing = CliRunner().invoke(app, ["attackers", "show", "192.0.2.1"], env=dict(os.environ))
    assert missing.exit_code == 1
    # a stage nobody reached says so, and how many profiles there are
    none = CliRunner().invoke(app, ["attackers", "list", "--min-stage", "post_exploitation"], env=dict(os.environ))
    assert none.exit_code == 0 and "none of the 1 attacker profiles reached post_exploitation" in none.stdout


def test_an_empty_ledger_says_where_profiles_come_from(tmp_path: Path) -> None:
    env = {**os.environ, "AUTONOMY_STATE_DIR": str(tmp_path), "AUTONOMY_LEDGER_URL": sqlite_url(tmp_path / "l.db")}
    result = CliRunner().invoke(app, ["attackers", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert "no attacker profile yet" in result.stdout and "evaluate" in result.stdout
