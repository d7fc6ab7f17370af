"""Fail closed end to end: with the policy engine gone, nothing executes, and the ledger says why."""

from __future__ import annotations

import dataclasses

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.opa_server import OpaServer
from autonomy_controller.controller.decision.runtime import EngineName, load_policy_bundle
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionStatus
from tests.harness import action_of, alert, awaiting, running_loop, vote

pytestmark = pytest.mark.opa


async def test_opa_stopped_before_the_decision_denies_everything(config_copy: Settings, opa_bin: object) -> None:
    with OpaServer(config_copy.opa_bin, load_policy_bundle(config_copy)) as opa:
        settings = dataclasses.replace(config_copy, opa_url=opa.url)
        async with running_loop(settings, engine=EngineName.OPA) as loop:
            opa.stop()
            (key,) = await loop.submit([alert(1)], level=Level.L3)
            final = await loop.result(key)
    assert final.actions and {a.verdict for a in final.actions} == {"deny"}
    assert {a.status for a in final.actions} == {ActionStatus.NOT_RUN}
    assert loop.enforcement.effects == {}
    assert not loop.ledger.records(key, [RecordKind.EXECUTION])
    for decision in loop.ledger.records(key, [RecordKind.DECISION]):
        assert "policy engine (opa) gave no decision" in decision.payload["reasons"][0]


async def test_opa_stopped_while_an_approval_waits_holds_the_action(config_copy: Settings, opa_bin: object) -> None:
    with OpaServer(config_copy.opa_bin, load_policy_bundle(config_copy)) as opa:
        settings = dataclasses.replace(config_copy, opa_url=opa.url)
        async with running_loop(settings, engine=EngineName.OPA) as loop:
            (key,) = await loop.submit([alert(1)], level=Level.L2)
            block = action_of(await awaiting(loop, key), "network.block_ip")
            opa.stop()
            await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
            status = await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.HELD)
    held = action_of(status, "network.block_ip")
    assert "now deny" in held.detail and "policy engine (opa) gave no decision" in held.detail
    assert loop.enforcement.effects["network.block_ip"] == 0
    executions = loop.ledger.records(key, [RecordKind.EXECUTION])
    assert "a1" not in {r.payload["request"]["action_id"] for r in executions}
