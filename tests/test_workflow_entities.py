"""The entity guardrail in the live loop: a host an attack merely went to, or whose application answered an attack
request (impact likely, which the attacker can cause at will), waits for a person at L4. Pre-flight, which decides
again on slim alerts (no raw record to read the impact from), keeps deciding on the impact the decision was made
on (GuardDecision.impact): shown with a policy that lets that impact isolate alone.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Alert
from autonomy_controller.workflows.contracts import ActionStatus
from tests.harness import WAF_RAW, action_of, alert_lines, awaiting, burst, running_loop
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


def answered_attack() -> list[Alert]:
    """WAF alerts on requests to web-stg-01 no sensor refused, each answered 200 by the application: impact likely."""
    answered = copy.deepcopy(WAF_RAW)
    answered["transaction"]["response"] = {"http_code": 200}
    return burst(dst_ip=STAGING_WEB, blocked=False, raw=answered)


# An operator's choice the shipped policy does not make: a host an attack reached (impact likely) is the attacker's.
HELD_WHEN_REACHED = """
attacker_held_host(host) if {
	input.impact.verdict == "likely"
	some name in input.impact.assets
	name == host
}
"""


def isolating_on_likely(settings: Settings) -> Settings:
    """The shipped policy, with the entity guardrail also taking an asset an attack reached (impact likely) as the
    attacker's: an operator's rule."""
    rego = settings.policies_dir / "guardrails" / "entities.rego"
    assert "attacker_held_host(host) if {" in rego.read_text()
    rego.write_text(rego.read_text() + HELD_WHEN_REACHED)
    (settings.policies_dir / "guardrails" / "entities_test.rego").unlink()  # tests of the shipped rule
    return settings


async def test_a_host_whose_application_answered_an_attack_waits_for_a_person(
    config_copy: Settings, tmp_path: Path
) -> None:
    async with running_loop(isolating_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(answered_attack())
        status = await awaiting(loop, key, "host.isolate")
        isolate = action_of(status, "host.isolate")
        assert isolate.verdict == "approve" and ("isolated", "web-stg-01") not in loop.enforcement.state
        [decision] = [
            r.payload for r in loop.ledger.records(key, [RecordKind.DECISION]) if r.payload["action"] == "host.isolate"
        ]
        assert decision["impact"]["verdict"] == "likely" and decision["impact"]["assets"] == ["web-stg-01"]
        assert decision["policy"]["veto_window"] is False


async def test_pre_flight_decides_on_the_impact_the_decision_was_made_on(config_copy: Settings, tmp_path: Path) -> None:
    settings = isolating_playbooks(tmp_path, isolating_on_likely(config_copy))
    async with running_loop(settings) as loop:
        (key,) = await loop.submit(answered_attack())
        status = await loop.wait_for(key, lambda s: action_of(s, "host.isolate").status is ActionStatus.AWAITING_REVERT)
        assert ("isolated", "web-stg-01") in loop.enforcement.state, action_of(status, "host.isolate")
        isolate = action_of(status, "host.isolate").action_id
        [preflight] = [
            r.payload for r in loop.ledger.records(key, [RecordKind.PREFLIGHT]) if r.payload["action_id"] == isolate
        ]
        # Without the recorded impact, pre-flight saw none (slim alerts) and held what the decision let run.
        assert preflight["go"] is True, preflight
        assert preflight["decision"]["impact"]["verdict"] == "likely"


async def test_a_host_a_blocked_attack_went_to_waits_for_a_person(config_copy: Settings, tmp_path: Path) -> None:
    async with running_loop(isolating_playbooks(tmp_path, config_copy)) as loop:
        (key,) = await loop.submit(burst(dst_ip=STAGING_WEB))
        status = await awaiting(loop, key, "host.isolate")
        isolate = action_of(status, "host.isolate")
        assert isolate.verdict == "approve" and ("isolated", "web-stg-01") not in loop.enforcement.state


def test_evaluate_and_simulate_assess_the_impact_the_loop_assesses(tmp_path: Path) -> None:
    # The loop's plan step assesses impact before planning (the playbook matches on it, the policy reads it);
    # evaluate and simulate did not, so a what-if showed another playbook and another risk than the loop's.
    path = tmp_path / "answered.jsonl"
    path.write_text(alert_lines(answered_attack()))
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}
    result = CliRunner().invoke(app, ["evaluate", str(path), "--json", "--level", "L4"], env=env)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert record["plan"]["impact"]["verdict"] == "likely" and record["plan"]["impact"]["assets"] == ["web-stg-01"]
    assert record["plan"]["playbook"] == "web-attack-reached"
    assert all(d["impact"]["verdict"] == "likely" for d in record["decisions"])
    simulated = CliRunner().invoke(app, ["simulate", str(path), "--json"], env=env)
    assert simulated.exit_code == 0, simulated.output
    [l1, *_] = json.loads(simulated.stdout.splitlines()[-1])["results"]
    # web-attack-reached's read-only looks at the reached asset and the source, beside its block and ticket
    assert (l1["decisions"], l1["by_class"]["investigate"]) == (4, {"execute": 2}), l1
