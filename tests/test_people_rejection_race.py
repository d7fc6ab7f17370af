"""A rejection still being verified is waited for: an approval that verifies first does not settle the wait.

A vote is verified in a local activity (the approver keys config read fresh, the approver groups as they are
now) before it counts. Before this, carol's reject, slow to verify, lost to bob's approve, quick to verify: the
approve met the quorum, the wait settled and the block ran while carol's veto was still in verification. Now
the wait does not settle on approval while any reject for the action is being verified: counted, it rejects;
refused, the approval stands.

The slow verification is real: the approver keys config is a named pipe while carol's vote is verified (as a
config on a stalled network mount would be), so her verification blocks reading it; bob's vote then reads a
regular file put in its place and verifies at once. Writing the config into the pipe ends carol's verification.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateHandle, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.client import cast_vote, incident_handle
from autonomy_controller.workflows.contracts import TASK_QUEUE, ActionState, ActionStatus, IncidentStart, VoteChoice
from autonomy_controller.workflows.incident import REJECTIONS_FIRST, IncidentWorkflow
from tests.harness import SETTLE, Loop, action_of, alert, awaiting, running_loop, vote


@contextmanager
def stalled_keys_config(path: Path) -> Iterator[Stall]:
    """The approver keys config as a named pipe: a verification reading it blocks until `release`."""
    text = path.read_text() if path.is_file() else ""
    held = path.with_name("approver_keys.pipe")
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    os.link(path, held)  # the pipe stays reachable once a regular file takes its path
    stall = Stall(path, held, text)
    try:
        yield stall
    finally:
        stall.close()


class Stall:
    def __init__(self, path: Path, held: Path, text: str) -> None:
        self.path, self.held, self.text = path, held, text
        self.writer: int | None = None

    async def reader_waiting(self, timeout: float = 30) -> None:
        """Returns once a verification has the pipe open and waits for its content (a non-blocking open for
        writing succeeds only when a reader is there; holding it open keeps the reader waiting in read())."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                self.writer = os.open(self.held, os.O_WRONLY | os.O_NONBLOCK)
                return
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            assert asyncio.get_running_loop().time() < deadline, "no verification opened the approver keys config"
            await asyncio.sleep(0.02)

    def unstall_path(self, text: str | None = None) -> None:
        """A regular file at the config's path again: verifications from now on read it at once."""
        staged = self.path.with_name("approver_keys.staged")
        staged.write_text(self.text if text is None else text)
        os.replace(staged, self.path)

    def release(self, text: str | None = None) -> None:
        """The waiting verification reads `text` (the original config by default) and goes on."""
        assert self.writer is not None
        os.write(self.writer, (self.text if text is None else text).encode())
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            os.close(self.writer)
            self.writer = None
        self.held.unlink(missing_ok=True)


async def _awaiting_block(loop: Loop, address: str) -> tuple[str, ActionState]:
    """A case whose block waits for soc-oncall (L2), its run started with a 2 s workflow task timeout: while a
    local activity runs, the worker answers for the run each 80% of it, so a vote sent meanwhile gets in after
    seconds, not the default timeout's 8 s per step (carol's blocked attempt times out at 20 s)."""
    first = alert(1, address)
    key = incident_key(first)
    await loop.client.start_workflow(
        IncidentWorkflow.run,
        IncidentStart(key=key, level=Level.L2, settle_seconds=SETTLE, quiet_seconds=0.3),
        id=key,
        task_queue=TASK_QUEUE,
        task_timeout=timedelta(seconds=2),
    )
    assert await loop.submit([first], level=Level.L2) == [key]  # signals the run started above
    return key, action_of(await awaiting(loop, key), "network.block_ip")


async def _race(loop: Loop, key: str, stall: Stall, block: ActionState) -> WorkflowUpdateHandle[ActionState]:
    """carol's reject, stuck in verification, then bob's approve, verified and counted. Released at once after
    (a local activity holds its workflow task, so waits here cost seconds and carol's attempt times out at 20 s):
    before the fix the approval had settled by then, and carol's veto came too late."""
    handle = incident_handle(loop.client, key)
    rejection = await handle.start_update(
        IncidentWorkflow.vote,
        vote("carol", VoteChoice.REJECT, block.action_id),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    await stall.reader_waiting()
    stall.unstall_path()
    await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    return rejection


def _counted(loop: Loop, key: str) -> list[tuple[str, str]]:
    return [
        (r.payload["approver"], r.payload["choice"])
        for r in loop.ledger.records(key, [RecordKind.APPROVAL])
        if r.payload["event"] == "vote"
    ]


async def test_an_approval_does_not_settle_while_a_rejection_is_being_verified(config_copy: Settings) -> None:
    async with running_loop(config_copy) as loop:
        key, block = await _awaiting_block(loop, "198.51.100.150")
        with stalled_keys_config(config_copy.approver_keys_file) as stall:
            await _race(loop, key, stall, block)  # bob's approval met the quorum: the wait holds for carol's veto
            stall.release()
        final = await loop.result(key)
        history = await incident_handle(loop.client, key).fetch_history()
    block = action_of(final, "network.block_ip")
    assert block.status is ActionStatus.REJECTED, f"settled with a veto in verification: {block}"
    assert block.detail == "rejected by carol"
    assert loop.enforcement.effects["network.block_ip"] == 0
    assert ("blocked", "198.51.100.150") not in loop.enforcement.state
    assert sorted(_counted(loop, key)) == [("bob", "approve"), ("carol", "reject")]
    markers = [e.SerializeToString() for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert any(REJECTIONS_FIRST.encode() in m for m in markers), "the new behaviour is behind its patch marker"
    await Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


async def test_a_rejection_refused_in_verification_lets_the_approval_stand(config_copy: Settings) -> None:
    async with running_loop(config_copy) as loop:
        key, block = await _awaiting_block(loop, "198.51.100.151")
        with stalled_keys_config(config_copy.approver_keys_file) as stall:
            rejection = await _race(loop, key, stall, block)
            stall.release("require_signed: [not a boolean]\n")  # carol's verification cannot read the config
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await asyncio.wait_for(rejection.result(), timeout=60)
        assert "approver keys config" in str(refused.value.cause)
        ran = await loop.wait_for(
            key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT
        )
    assert action_of(ran, "network.block_ip").votes[0].approver == "bob"
    assert ("blocked", "198.51.100.151") in loop.enforcement.state
    assert _counted(loop, key) == [("bob", "approve")]
