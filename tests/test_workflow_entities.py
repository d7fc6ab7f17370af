"""The entity guardrail in the live loop: a host the attack reached is isolated alone at L4, and pre-flight, which
decides again on slim alerts (no raw record to read the impact from), keeps deciding on the impact the decision
was made on (GuardDecision.impact). A host an attack merely went to waits for a person.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import yaml

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.workflows.contracts import ActionStatus
from tests.harness import WAF_RAW, action_of, awaiting, burst, running_loop
from tests.test_workflow import REPO_PLAYBOOKS

STAGING_WEB = "10.30.0.11"  # web-stg-01 (policies/inventory/data.yaml): staging, L4


def isolating_playbooks(tmp_path: Path, settings: Settings) -> Settings:
    """The shipped playbooks, with the reached web attack's playbook also isolating the asset it reached, and the
    blocked one isolating the asset the attack went to (what an LLM steered by the payload might propose)."""
    playbooks = tmp_path / "playbooks"
    shutil.copytree(REPO_PLAYBOOKS, playbooks)
    isolate = {
        "action": "host.isolate",
        "params": {"host": "{asset}", "ttl_seconds": 3600},
        "rationale": "isolate the asset",
        "confidence": 0.9,
    }
    for name in ("web-attack-reached.yaml", "web-attack-blocked.yaml"):
        path = playbooks / name
        document = yaml.safe_load(path.read_text())
        document["actions"].insert(0, isolate)
        path.write_text(yaml.safe_dump(document))
    return dataclasses.replace(settings, playbooks_dir=playbooks)


async def test_a_host_the_attack_reached_is_isolated_alone_through_pre_flight(
    config_copy: Settings, tmp_path: Path
) -> None:
    answered = copy.deepcopy(WAF_RAW)
    answered["transaction"]["response"] = {"http_code": 200}  # the application answered, no sensor refused it
    async with running_loop(isolating_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(burst(dst_ip=STAGING_WEB, blocked=False, raw=answered))
        status = await loop.wait_for(key, lambda s: action_of(s, "host.isolate").status is ActionStatus.AWAITING_REVERT)
        assert ("isolated", "web-stg-01") in loop.enforcement.state, action_of(status, "host.isolate")
        [decision] = [
            r.payload for r in loop.ledger.records(key, [RecordKind.DECISION]) if r.payload["action"] == "host.isolate"
        ]
        assert decision["impact"]["verdict"] == "likely" and decision["impact"]["assets"] == ["web-stg-01"]
        isolate = action_of(status, "host.isolate").action_id
        [preflight] = [
            r.payload for r in loop.ledger.records(key, [RecordKind.PREFLIGHT]) if r.payload["action_id"] == isolate
        ]
        assert preflight["go"] is True, preflight


async def test_a_host_a_blocked_attack_went_to_waits_for_a_person(config_copy: Settings, tmp_path: Path) -> None:
    async with running_loop(isolating_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(burst(dst_ip=STAGING_WEB))
        status = await awaiting(loop, key, "host.isolate")
        isolate = action_of(status, "host.isolate")
        assert isolate.verdict == "approve" and ("isolated", "web-stg-01") not in loop.enforcement.state
