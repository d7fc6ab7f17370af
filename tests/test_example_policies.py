"""The worked examples (examples/policies/), written idiomatically (net.cidr_intersects for the CGNAT rule): their
own `opa test` tests pass as `autonomy policy test` runs them, and each example gives the same decisions on the
default engine (wasm), on our OPA server path and on a plain OPA serving the exported bundle, on real guard inputs
(IPv4-mapped and NAT64 spellings for the CGNAT rule). regopy, still selectable, refuses them (no net.*): every
action denied, naming the built-in."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from autonomy_controller.controller.cli.policy_test import run_policy_tests
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.engines.opa_server import OpaServerEngine
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle
from autonomy_controller.controller.decision.runtime import EngineName, load_policy_bundle, open_guard
from autonomy_controller.controller.models import (
    Category,
    GuardDecision,
    Level,
    Plan,
    ProposedAction,
    TriageSummary,
    Verdict,
)
from tests.factories import make_incident
from tests.test_conformance import _comparable
from tests.test_policy_bundle_export import serve_bundle

EXAMPLES = REPO_ROOT / "examples" / "policies"
MALICIOUS = TriageSummary(verdict="malicious", confidence=0.9)
TTL = {"ttl_seconds": 3600}


def _with_examples(settings: Settings, tests: bool) -> None:
    target = settings.policies_dir / "examples"
    target.mkdir()
    for path in EXAMPLES.glob("*.rego"):
        if tests or not path.name.endswith("_test.rego"):
            shutil.copy(path, target / path.name)


def test_the_examples_own_tests_pass_under_policy_test(config_copy: Settings) -> None:
    _with_examples(config_copy, tests=True)
    report = run_policy_tests(config_copy, with_coverage=False)
    ours = [r for r in report.results if "/examples/" in r["location"]["file"]]
    assert {Path(r["location"]["file"]).name for r in ours} == {p.name for p in EXAMPLES.glob("*_test.rego")}
    assert len(ours) >= 12
    # Only the examples' own: a shipped test that checks the exact approvals of a disable_user input without a
    # time (identity_test.rego) meets the business-hours rule too, as the tutorial says it will.
    assert not [r for r in ours if r.get("fail") or r.get("error")]


def _yaml_update(path: Path, update: Any) -> None:
    document = yaml.safe_load(path.read_text())
    update(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def example_config(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shipped config plus the examples and what they need: a second domain controller that is not a crown
    jewel (dc-01 is, and is denied anyway), an ad-admins group, and L4 letting identity actions run alone (so
    the business-hours rule shows in the verdict)."""
    root, shipped = tmp_path_factory.mktemp("examples"), Settings()
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    shutil.copytree(shipped.levels_dir, config.levels_dir)
    shutil.copytree(shipped.policies_dir, config.policies_dir)
    _with_examples(config, tests=False)
    dc02 = {"criticality": "high", "environment": "staging", "group": "infrastructure"}
    dc02 |= {"addresses": ["10.10.0.11"], "owner": "infra-team", "tags": ["domain-controller"]}
    _yaml_update(config.policies_dir / "inventory" / "data.yaml", lambda d: d["assets"].update({"dc-02": dc02}))
    _yaml_update(
        config.policies_dir / "identities" / "data.yaml",
        lambda d: d["approver_groups"].update({"ad-admins": {"members": ["frank"]}}),
    )
    _yaml_update(config.levels_dir / "L4.yaml", lambda d: d["classes"].update({"contain_identity": "execute"}))
    return config


@pytest.fixture(scope="module")
def example_bundle(example_config: Settings) -> PolicyBundle:
    return load_policy_bundle(example_config)


@pytest.fixture(scope="module")
def three_guards(
    example_config: Settings, example_bundle: PolicyBundle, opa_bin: Path, tmp_path_factory: Any
) -> Iterator[dict[str, Guard]]:
    archive = tmp_path_factory.mktemp("bundle") / "bundle.tar.gz"
    example_bundle.write_opa_bundle(archive)
    with open_guard(example_config) as default, open_guard(example_config, EngineName.OPA) as opa:
        assert isinstance(default, Guard) and isinstance(opa, Guard), "the examples load on both engines"
        assert default.engine.name == EngineName.WASM == Settings().policy_engine, "wasm is the default"
        for url in serve_bundle(opa_bin, archive):
            yield {"default": default, "opa": opa, "exported": Guard(example_bundle, OpaServerEngine(url))}


@dataclass(frozen=True)
class Example:
    name: str
    action: str
    params: dict[str, Any]
    expected: Verdict
    says: str | None  # text of the example's own reason, None: the example must say nothing
    incident: dict[str, Any]
    hour: int = 12


EXAMPLE_CASES = [
    # (a) carrier-grade NAT, in every spelling, and its neighbours.
    *(
        Example(
            f"cgnat {ip}", "network.block_ip", {"ip": ip, **TTL}, Verdict.DENY, "carrier-grade NAT", {"src_ip": src}
        )
        for ip, src in [
            ("100.64.12.7", "100.64.12.7"),
            ("::ffff:100.64.12.7", "::ffff:100.64.12.7"),
            ("64:ff9b::100.64.12.7", "64:ff9b::100.64.12.7"),
            ("100.96.0.0/28", "100.96.0.5"),
        ]
    ),
    Example(
        "cgnat neighbour",
        "network.block_ip",
        {"ip": "100.128.0.1", **TTL},
        Verdict.EXECUTE,
        None,
        {"src_ip": "100.128.0.1"},
    ),
    Example(
        "v6 elsewhere",
        "network.block_ip",
        {"ip": "2001:db8::66", **TTL},
        Verdict.EXECUTE,
        None,
        {"src_ip": "2001:db8::66"},
    ),
    # (b) a host tagged domain-controller; another production host is capped by its scope, a staging one the case's
    # alerts come from runs.
    Example(
        "isolate dc-02",
        "host.isolate",
        {"host": "dc-02", **TTL},
        Verdict.APPROVE,
        "ad-admins approve",
        {"dst_ip": "10.10.0.11"},
    ),
    Example(
        "isolate web-stg-01",
        "host.isolate",
        {"host": "web-stg-01", **TTL},
        Verdict.EXECUTE,
        None,
        {"category": Category.MALWARE, "src_ip": "10.30.0.11", "dst_ip": None},
    ),
    # (c) disabling an account the login service saw guessed: alone in business hours (L4 of the example config),
    # else a person.
    Example(
        "disable at noon",
        "identity.disable_user",
        {"user": "alice", **TTL},
        Verdict.EXECUTE,
        None,
        {"user": "alice", "guessed": ("alice",)},
    ),
    Example(
        "disable at 07:00",
        "identity.disable_user",
        {"user": "alice"},
        Verdict.APPROVE,
        "outside business hours",
        {"user": "alice"},
        7,
    ),
    Example(
        "disable at 18:00",
        "identity.disable_user",
        {"user": "alice"},
        Verdict.APPROVE,
        "outside business hours",
        {"user": "alice"},
        18,
    ),
]


def _decide(guard: Guard | UnavailableGuard, case: Example) -> GuardDecision:
    incident = make_incident(**case.incident)
    action = ProposedAction(id="a1", action=case.action, params=case.params, confidence=0.9)
    plan = Plan(incident_key=incident.key, planner="offline", actions=[action])
    at = datetime(2026, 11, 23, case.hour, 0, 0, tzinfo=UTC)
    [decision] = guard.decide_plan(incident, plan, Level.L4, triage=MALICIOUS, now=at)
    return decision


@pytest.mark.parametrize("case", EXAMPLE_CASES, ids=lambda c: c.name)
def test_each_example_decides_alike_on_all_three_engine_paths(case: Example, three_guards: dict[str, Guard]) -> None:
    decisions = {name: _decide(guard, case) for name, guard in three_guards.items()}
    default = decisions["default"]
    for name, decision in decisions.items():
        assert _comparable(decision) == _comparable(default), name
    assert default.verdict is case.expected, default.reasons
    said = [reason for reason in default.reasons if case.says and case.says in reason]
    assert bool(said) == (case.says is not None), default.reasons


def test_the_embedded_engine_refuses_the_examples_and_says_why(example_config: Settings) -> None:
    """regopy has no net.*: selected on purpose, it fails closed on the idiomatic CGNAT rule, naming it."""
    with open_guard(example_config, EngineName.EMBEDDED) as guard:
        assert isinstance(guard, UnavailableGuard)
        assert "net.cidr_intersects" in guard.reason
        assert _decide(guard, EXAMPLE_CASES[0]).verdict is Verdict.DENY


def test_the_tutorial_asks_for_no_engine_cost_model() -> None:
    """policies/README.md's tutorial writes Rego as any OPA shop does: no prefix bits, hashed indexes or number
    tables, and example (a) as its file has it (net.cidr_intersects)."""
    readme = (REPO_ROOT / "policies" / "README.md").read_text()
    tutorial = readme.split("## Writing your own policy")[1].split("\n## ")[0]
    for idiom in ("bits", "md5", "hashed", "number_text", "any_prefix_match", "asset_named"):
        assert idiom not in tutorial, idiom
    for example in EXAMPLES.glob("*.rego"):
        if not example.name.endswith("_test.rego"):  # a test builds whole targets, bits included
            for idiom in ("bits", "md5", "hashed", "number_text", "any_prefix_match"):
                assert idiom not in example.read_text(), (example.name, idiom)
    call = "net.cidr_intersects(block, cgnat_cidr(target))"
    assert call in tutorial and call in (EXAMPLES / "cgnat.rego").read_text()
    assert "You need not follow any engine's cost model" in readme
