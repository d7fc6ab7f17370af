"""Fail closed: every way the path to an action can break ends in `deny`, with a reason that says which."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import UnsupportedBuiltinError
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine, called_builtins
from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle, load_bundle, with_documents
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.models import Level, Plan, ProposedAction, Verdict
from tests.factories import MALICIOUS, make_incident

BLOCK = ProposedAction(id="a1", action="network.block_ip", params={"ip": "198.51.100.66", "ttl_seconds": 3600})


def plan_of(*actions: ProposedAction) -> Plan:
    return Plan(incident_key="sqli:198.51.100.66", planner="offline", actions=list(actions))


def only(decisions: list[Any]) -> Any:
    assert len(decisions) == 1
    return decisions[0]


def test_baseline_the_same_block_executes(embedded_guard: Guard) -> None:
    """The control case: without a fault, this action runs at L3 - so every deny below is the fault's doing."""
    decision = only(embedded_guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS))
    assert decision.verdict is Verdict.EXECUTE, decision.reasons


def test_unknown_action(embedded_guard: Guard) -> None:
    action = ProposedAction(id="a1", action="network.nuke_everything", params={})
    decision = only(embedded_guard.decide_plan(make_incident(), plan_of(action), Level.L3))
    assert decision.verdict is Verdict.DENY
    assert decision.reasons == ["unknown action 'network.nuke_everything': not in the registry"]
    assert decision.policy is None, "an unknown action must never reach the policy"


def test_invalid_params(embedded_guard: Guard) -> None:
    action = ProposedAction(id="a1", action="network.block_ip", params={"ip": "198.51.100.66 || true"})
    decision = only(embedded_guard.decide_plan(make_incident(), plan_of(action), Level.L3))
    assert decision.verdict is Verdict.DENY
    assert decision.reasons[0].startswith("invalid params for network.block_ip: ip:")


def test_opa_server_down(opa_bin: Path, bundle: PolicyBundle) -> None:
    server = OpaServer(opa_bin, bundle).start()
    guard = Guard(bundle, OpaServerEngine(server.url, timeout=1.0))
    assert (
        only(guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS)).verdict is Verdict.EXECUTE
    )
    server.stop()
    decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS))
    assert decision.verdict is Verdict.DENY
    assert "policy engine (opa) gave no decision" in decision.reasons[0]
    assert "unreachable" in decision.reasons[0]


def _policy_dir(tmp_path: Path, source: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir(parents=True)
    (directory / "decision.rego").write_text(source)
    return directory


UNDEFINED_POLICY = """package autonomy.decision

result := {"verdict": "execute"} if input.action.name == "never.proposed"
"""


@pytest.mark.parametrize("engine_name", ["wasm", "embedded", "opa"])
def test_undefined_result(engine_name: str, tmp_path: Path, level_config: Any, opa_bin: Path) -> None:
    bundle = load_bundle(_policy_dir(tmp_path, UNDEFINED_POLICY), level_config)
    if engine_name == "wasm":
        decision = only(Guard(bundle, WasmEngine(bundle, opa_bin)).decide_plan(make_incident(), plan_of(BLOCK)))
    elif engine_name == "embedded":
        decision = only(Guard(bundle, EmbeddedEngine(bundle)).decide_plan(make_incident(), plan_of(BLOCK)))
    else:
        with OpaServer(opa_bin, bundle) as server:
            guard = Guard(bundle, OpaServerEngine(server.url))
            decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK)))
    assert decision.verdict is Verdict.DENY
    assert "is undefined for this input" in decision.reasons[0]


CIDR_POLICY = """package autonomy.decision

deny contains "private target" if {
\tsome ip in input.targets.ips
\tnet.cidr_contains("10.0.0.0/8", ip.value)
}

result := {
\t"verdict": "execute", "reasons": [], "deny_reasons": [], "approval_reasons": [],
\t"approver_groups": [], "quorum": 0, "policy_revision": data.meta.revision,
} if count(deny) == 0
"""


def test_builtin_the_embedded_engine_lacks_is_refused_at_load(tmp_path: Path, level_config: Any) -> None:
    bundle = load_bundle(_policy_dir(tmp_path, CIDR_POLICY), level_config)
    assert called_builtins(bundle.modules) == {
        "net.cidr_contains": {"decision.rego"},
        "count": {"decision.rego"},
    }
    with pytest.raises(UnsupportedBuiltinError, match=r"net\.cidr_contains \(in decision\.rego\)"):
        EmbeddedEngine(bundle)


def test_builtin_missing_means_every_decision_denies(tmp_path: Path, settings: Settings) -> None:
    policies = _policy_dir(tmp_path, CIDR_POLICY)
    with open_guard(Settings(levels_dir=settings.levels_dir, policies_dir=policies), EngineName.EMBEDDED) as guard:
        assert isinstance(guard, UnavailableGuard)
        decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK)))
    assert decision.verdict is Verdict.DENY
    assert "net.cidr_contains" in decision.reasons[0]


def test_level_file_that_fails_validation(config_copy: Settings) -> None:
    path = config_copy.levels_dir / "L3.yaml"
    document = yaml.safe_load(path.read_text())
    document["classes"]["contain_network"] = "yolo"
    path.write_text(yaml.safe_dump(document))
    with open_guard(config_copy, EngineName.EMBEDDED) as guard:
        decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS))
    assert decision.verdict is Verdict.DENY
    assert "L3.yaml: classes.contain_network" in decision.reasons[0]
    assert decision.effective_level is Level.L1


MALFORMED_POLICY = """package autonomy.decision

result := {"verdict": "maybe", "reasons": "all good", "policy_revision": data.meta.revision}
"""


def test_malformed_result(tmp_path: Path, level_config: Any) -> None:
    bundle = load_bundle(_policy_dir(tmp_path, MALFORMED_POLICY), level_config)
    decision = only(Guard(bundle, EmbeddedEngine(bundle)).decide_plan(make_incident(), plan_of(BLOCK)))
    assert decision.verdict is Verdict.DENY
    assert decision.reasons[0].startswith("policy result malformed:")
    assert "verdict" in decision.reasons[0] and "reasons" in decision.reasons[0]


def test_revision_mismatch_when_opa_runs_another_policy(opa_bin: Path, bundle: PolicyBundle) -> None:
    stale = with_documents(bundle, guardrails={**bundle.data["guardrails"], "max_addresses_per_block": 1})
    with OpaServer(opa_bin, stale) as server:
        decision = only(Guard(bundle, OpaServerEngine(server.url)).decide_plan(make_incident(), plan_of(BLOCK)))
    assert decision.verdict is Verdict.DENY
    assert decision.reasons[0].startswith("policy revision mismatch")
    assert stale.revision in decision.reasons[0] and bundle.revision in decision.reasons[0]


def test_opa_that_cannot_start_denies_everything(tmp_path: Path, settings: Settings) -> None:
    broken = Settings(levels_dir=settings.levels_dir, policies_dir=settings.policies_dir, opa_bin=tmp_path / "no-opa")
    with open_guard(broken, EngineName.OPA) as guard:
        decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK)))
    assert decision.verdict is Verdict.DENY
    assert "opa binary not found" in decision.reasons[0]


def _machine_approver(settings: Settings) -> None:
    """Make the planner a member of an approver group: static data the config checks must refuse."""
    path = settings.policies_dir / "identities" / "data.yaml"
    document = yaml.safe_load(path.read_text())
    document["approver_groups"]["soc-oncall"]["members"].append("planner:offline")
    path.write_text(yaml.safe_dump(document))


def test_invalid_policy_data_is_refused_by_the_embedded_engine(config_copy: Settings) -> None:
    _machine_approver(config_copy)
    with open_guard(config_copy, EngineName.EMBEDDED) as guard:
        assert isinstance(guard, UnavailableGuard)
        decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS))
    assert decision.verdict is Verdict.DENY
    assert "policy data invalid" in decision.reasons[0] and "planner:offline" in decision.reasons[0]


def test_invalid_policy_data_is_refused_by_opa(config_copy: Settings, opa_bin: Path) -> None:
    _machine_approver(config_copy)
    with open_guard(replace(config_copy, opa_bin=opa_bin), EngineName.OPA) as guard:
        decision = only(guard.decide_plan(make_incident(), plan_of(BLOCK), Level.L3, triage=MALICIOUS))
    assert decision.verdict is Verdict.DENY
    assert "planner:offline" in decision.reasons[0]
