"""A vote is bound to the run of the incident its voter was shown, end to end, on every channel.

An incident's key outlives its run: once a run ends, new alerts from the same source start a new run whose action
ids start again at a1. Before this:

- `vote_as` (the inbox and Slack) checked the run, then `operations.vote` read the status again and voted on
  whatever run was current then (a check-then-act window);
- `autonomy approve KEY a1` named no run at all: a person who looked at `incidents show` approved the a1 of
  whatever run was current when the command ran.

Now the vote carries its run (`ApprovalVote.run_id`): the run it reaches refuses it when it is another
(WrongRun), and the refusal is in the ledger. The CLI shows the run (`incidents show`), takes `--run`, and
prints the run it voted in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.approvals import VoteRefused, WrongRun, check_vote
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import (
    ActionState,
    ActionStatus,
    ApprovalGroup,
    ApprovalSpec,
    ApprovalVote,
    IncidentStatus,
    VoteChoice,
)
from autonomy_controller.workflows.operations import vote as operations_vote
from tests.harness import Loop, action_of, alert, awaiting, running_loop, vote
from tests.test_cli import TRUST, action_named, alert_lines, awaiting_block
from tests.test_cli import Loop as CliLoop
from tests.test_cli import loop as cli_loop  # noqa: F401  (the CLI's dev server and worker, a fixture)

SPEC = ApprovalSpec(
    quorum=1,
    groups=[ApprovalGroup(name="soc-oncall", quorum=0, members=["bob", "carol"])],
    proposer="planner:offline",
    service_identities=["svc:controller"],
    timeout_seconds=3600,
    on_timeout="reject",
)


def test_a_vote_naming_another_run_is_refused_before_anything_else() -> None:
    state = ActionState(
        action_id="a1", action="network.block_ip", verdict="approve", status=ActionStatus.AWAITING_APPROVAL
    )
    bound = ApprovalVote(action_id="a1", approver="bob", choice=VoteChoice.APPROVE, run_id="run-1")
    check_vote(state, SPEC, bound, run_id="run-1")
    with pytest.raises(WrongRun, match="run-1, not the incident's current run run-2"):
        check_vote(state, SPEC, bound, run_id="run-2")
    with pytest.raises(WrongRun):  # even where the other run has no such action: the run is the first thing said
        check_vote(None, None, bound, run_id="run-2")
    assert issubclass(WrongRun, VoteRefused)


async def _second_run(loop: Loop, address: str) -> tuple[str, IncidentStatus, IncidentStatus]:
    """A case whose block carol rejected (its run ended), then a new run of the same key whose block is a1 again."""
    (key,) = await loop.submit([alert(1, address)], level=Level.L2)
    first = await awaiting(loop, key)
    await cast_vote(loop.client, loop.ledger, key, vote("carol", VoteChoice.REJECT, "a1"))
    ended = await loop.result(key)
    await loop.submit([alert(2, address)], level=Level.L2)
    second = await awaiting(loop, key, after_run=ended.run_id)
    assert action_of(first, "network.block_ip").action_id == action_of(second, "network.block_ip").action_id
    return key, first, second


async def test_a_vote_bound_to_an_ended_run_is_refused_by_the_current_run_and_recorded(config_copy: Settings) -> None:
    async with running_loop(config_copy) as loop:
        key, first, second = await _second_run(loop, "198.51.100.160")
        # bob looked at the first run's a1; the vote reaches the second run's workflow, which refuses it
        with pytest.raises(WrongRun, match=f"run {first.run_id}, not the incident's current run {second.run_id}"):
            await operations_vote(loop.client, loop.ledger, key, "a1", "bob", "approve", "seen it", run_id=first.run_id)
        now = action_of(await loop.wait_for(key, lambda s: True), "network.block_ip")
        assert now.status is ActionStatus.AWAITING_APPROVAL and now.votes == []
        refusals = [
            r.payload
            for r in loop.ledger.records(key, [RecordKind.APPROVAL])
            if r.payload["event"] == "vote_refused" and r.payload["approver"] == "bob"
        ]
        assert [r["run_id"] for r in refusals] == [first.run_id]

        # bound to the run it was shown, the same vote counts
        result = await operations_vote(
            loop.client, loop.ledger, key, "a1", "bob", "approve", "seen it", run_id=second.run_id
        )
        assert result.run_id == second.run_id and [v.approver for v in result.state.votes] == ["bob"]
        assert result.state.votes[0].run_id == second.run_id


def test_the_cli_shows_sends_and_prints_the_run_it_votes_in(cli_loop: CliLoop, tmp_path: Path) -> None:  # noqa: F811
    address = "198.51.100.161"
    key = f"src:{address}"
    alerts = tmp_path / "first.jsonl"
    alerts.write_text(alert_lines(range(1), address))
    submit = ("--level", "L2", "--settle", "0.2", "--quiet", "0.5", *TRUST)
    assert cli_loop.cli("submit", str(alerts), *submit).exit_code == 0
    first = cli_loop.wait_for(key, awaiting_block)
    shown = cli_loop.cli("incidents", "show", key)
    assert f"run {first['run_id']}" in shown.stdout, shown.stdout  # what a person copies into --run

    assert cli_loop.cli("reject", key, "a1", "--as", "carol", "--run", first["run_id"]).exit_code == 0
    cli_loop.wait_for(key, lambda s: s["phase"] == "closed")
    alerts.write_text(alert_lines(range(1, 2), address))
    assert cli_loop.cli("submit", str(alerts), *submit).exit_code == 0
    second = cli_loop.wait_for(key, lambda s: s["run_id"] != first["run_id"] and awaiting_block(s))

    stale = cli_loop.cli("approve", key, "a1", "--as", "bob", "--run", first["run_id"])
    assert stale.exit_code == 1, stale.output
    assert "vote refused" in stale.stderr and first["run_id"] in stale.stderr and "current run" in stale.stderr
    assert action_named(cli_loop.wait_for(key, awaiting_block), "network.block_ip")["votes"] == []

    ok = cli_loop.cli("approve", key, "a1", "--as", "bob")  # no --run: the current run, printed
    assert ok.exit_code == 0, ok.output
    assert f"run {second['run_id']}" in ok.stdout
    done = cli_loop.cli("approve", key, "a1", "--as", "heidi", "--run", second["run_id"], "--json")
    assert json.loads(done.stdout)["run_id"] == second["run_id"]  # refused or not, the run it was for is said
