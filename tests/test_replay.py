"""Replay: recorded workflow histories must replay on today's workflow code, or CI fails.

A change that makes IncidentWorkflow non-deterministic (reordered activities, a new await in an old path)
would break every incident still open when the new worker deploys. The histories in tests/histories/ were
recorded from real runs; re-record them only for an intentional, versioned change:

    .venv/bin/python -m tests.test_replay --record
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import TimeSkipper
from temporalio.worker import Replayer

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.client import cast_vote, incident_handle
from autonomy_controller.workflows.contracts import ActionStatus, VoteChoice
from autonomy_controller.workflows.incident import IncidentWorkflow
from tests.harness import Loop, action_of, alert, awaiting, burst, running_loop, vote

HISTORIES = Path(__file__).parent / "histories"


async def _scenarios(loop: Loop) -> list[str]:
    """Runs that cover every branch an open incident can be in: revert timer, approval, rejection, timeout."""
    (executed,) = await loop.submit(burst("198.51.100.50"), level=Level.L3)
    await loop.wait_for(executed, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, executed), timedelta(hours=1, seconds=5))
    (approved,) = await loop.submit([alert(1, "198.51.100.51")], level=Level.L2)
    block = action_of(await awaiting(loop, approved), "network.block_ip")
    await cast_vote(loop.client, loop.ledger, approved, vote("bob", action_id=block.action_id))
    await loop.wait_for(approved, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, approved), timedelta(hours=1, seconds=5))
    (rejected,) = await loop.submit([alert(1, "198.51.100.52")], level=Level.L2)
    block = action_of(await awaiting(loop, rejected), "network.block_ip")
    await cast_vote(loop.client, loop.ledger, rejected, vote("carol", VoteChoice.REJECT, block.action_id))
    (timed_out,) = await loop.submit([alert(1, "198.51.100.53")], level=Level.L2)
    await awaiting(loop, timed_out)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, timed_out), timedelta(hours=1, seconds=5))
    keys = [executed, approved, rejected, timed_out]
    for key in keys:
        await loop.result(key)
    return keys


async def _histories(settings: Settings) -> list[WorkflowHistory]:
    async with running_loop(settings) as loop:
        keys = await _scenarios(loop)
        return [await incident_handle(loop.client, key).fetch_history() for key in keys]


async def _replay(histories: list[WorkflowHistory]) -> None:
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)  # raises on non-determinism


def _committed() -> list[WorkflowHistory]:
    return [WorkflowHistory.from_json(path.stem, path.read_text()) for path in sorted(HISTORIES.glob("*.json"))]


async def test_committed_histories_replay_on_todays_code() -> None:
    histories = _committed()
    assert len(histories) >= 4, "tests/histories/ is empty: record them (see module docstring)"
    await _replay(histories)


async def test_fresh_histories_replay(config_copy: Settings) -> None:
    await _replay(await _histories(config_copy))


def _record() -> None:
    import shutil
    import tempfile

    from autonomy_controller.controller.config import Settings as _Settings

    base = _Settings()
    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(base.levels_dir, tmp / "levels")
    shutil.copytree(base.policies_dir, tmp / "policies")
    settings = _Settings(levels_dir=tmp / "levels", policies_dir=tmp / "policies", state_dir=tmp / "var")
    histories = asyncio.run(_histories(settings))
    HISTORIES.mkdir(exist_ok=True)
    for old in HISTORIES.glob("*.json"):
        old.unlink()
    for number, history in enumerate(histories, 1):
        (HISTORIES / f"{number:02d}-{history.workflow_id.replace(':', '_')}.json").write_text(history.to_json())
    print(f"recorded {len(histories)} histories into {HISTORIES}")


if __name__ == "__main__":
    if "--record" in sys.argv:
        _record()
    else:
        pytest.main([__file__, "-q"])
