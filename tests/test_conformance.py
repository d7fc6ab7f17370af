"""One case table through both real engines: identical verdicts and reasons, and the verdict we expect.

If the embedded engine (regopy) and OPA ever disagree, the product gives different answers depending on how it
is deployed; this table is what keeps them one policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from autonomy_controller.actions.registry import get_spec, validate_params
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.embedded import compiled_policy
from autonomy_controller.controller.decision.engines.regopy_session import RegoSession
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle
from autonomy_controller.controller.decision.runtime import EngineName, open_guard
from autonomy_controller.controller.decision.targets import PlanShape, check_action, targets_of
from autonomy_controller.controller.models import (
    Category,
    GuardDecision,
    ImpactSummary,
    Level,
    Plan,
    PlannerTriage,
    ProposedAction,
    TriageSummary,
    Verdict,
)
from tests.factories import make_incident

E, A, R, D = Verdict.EXECUTE, Verdict.APPROVE, Verdict.RECOMMEND, Verdict.DENY
TTL = {"ttl_seconds": 3600}
# The controller's triage the cases are judged on, unless a case says otherwise: what L3-L5 need for containment
# alone (levels/L3.yaml triage:), so the other columns are what each case is about.
MALICIOUS = TriageSummary(verdict="malicious", confidence=0.9)
STG = {"category": Category.MALWARE, "src_ip": "10.30.0.11", "dst_ip": None}
"""A case whose alerts come from web-stg-01 (staging: L4): malware on the host, as an EDR reports it."""


@dataclass(frozen=True)
class Case:
    name: str
    level: Level
    action: str
    params: dict[str, Any]
    expected: Verdict
    incident: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.9
    quorum: int | None = None
    triage: TriageSummary | None = field(default_factory=lambda: MALICIOUS)
    """None: the guard triages the case's alert itself (one native alert: suspicious)."""
    planner_triage: PlannerTriage | None = None
    impact: ImpactSummary | None = None
    veto_window: bool | None = None


CASES = [
    # Network containment across the levels.
    Case("L1 block recommends only", Level.L1, "network.block_ip", {"ip": "198.51.100.66", **TTL}, R),
    Case("L2 block needs approval", Level.L2, "network.block_ip", {"ip": "198.51.100.66", **TTL}, A),
    Case("L3 block runs", Level.L3, "network.block_ip", {"ip": "198.51.100.66", **TTL}, E),
    # Triage governs containment alone (policies/autonomy/decision.rego, "Triage"): short of the level's bar, a
    # person approves; a planner's own triage can lower it, never raise it.
    Case(
        "L3 block on suspicious triage",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        triage=TriageSummary(verdict="suspicious", confidence=0.95),
    ),
    Case(
        "L3 block on noise",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        triage=TriageSummary(verdict="noise", confidence=0.95),
    ),
    Case(
        "L4 block on malicious below the confidence bar",
        Level.L4,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        triage=TriageSummary(verdict="malicious", confidence=0.79),
    ),
    Case(
        "L3 block on a single alert's own triage",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        triage=None,
    ),
    Case(
        "L3 block a planner calls noise",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        planner_triage=PlannerTriage(verdict="noise", confidence=0.9, rationale="benign, ignore"),
    ),
    Case(
        "L3 block a planner calls certain",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        triage=TriageSummary(verdict="suspicious", confidence=0.95),
        planner_triage=PlannerTriage(verdict="malicious", confidence=1.0, rationale="definitely an attack"),
    ),
    Case(
        "L3 ticket on noise still runs",
        Level.L3,
        "ticket.create",
        {"title": "t", "severity": "high", "body": "b"},
        E,
        triage=TriageSummary(verdict="noise", confidence=0.95),
    ),
    Case("L4 block runs", Level.L4, "network.block_ip", {"ip": "198.51.100.66", **TTL}, E),
    Case("L5 disabled runs as L4", Level.L5, "network.block_ip", {"ip": "198.51.100.66", **TTL}, E),
    Case(
        "L3 block v6 address",
        Level.L3,
        "network.block_ip",
        {"ip": "2001:db8::66", **TTL},
        E,
        incident={"src_ip": "2001:db8::66"},
    ),
    # Permanent containment needs a person at every level (policies/guardrails/plan.rego).
    Case("L3 block without ttl", Level.L3, "network.block_ip", {"ip": "198.51.100.66"}, A),
    Case("L4 block without ttl", Level.L4, "network.block_ip", {"ip": "198.51.100.66"}, A),
    # A range holds bystanders besides the source the sensors saw: a person decides on them (guardrails.
    # max_addresses_alone, policies/guardrails/network.rego), at every level.
    Case(
        "L3 block small range holding the source",
        Level.L3,
        "network.block_ip",
        {"ip": "192.0.2.0/28", **TTL},
        A,
        incident={"src_ip": "192.0.2.5"},
    ),
    Case(
        "L4 block of a /24 around the source",
        Level.L4,
        "network.block_ip",
        {"ip": "192.0.2.0/24", **TTL},
        A,
        incident={"src_ip": "192.0.2.5"},
    ),
    Case(
        "L3 risky block goes to approval",
        Level.L3,
        "network.block_ip",
        {"ip": "192.0.2.0/28", **TTL},
        A,
        incident={"src_ip": "192.0.2.5"},
        confidence=0.2,
    ),
    # A target no alert of the incident names needs a person (8.8.8.8 on an incident from another address).
    Case("L3 block of an unrelated address", Level.L3, "network.block_ip", {"ip": "192.0.2.77", **TTL}, A),
    Case("L4 block of an unrelated range", Level.L4, "network.block_ip", {"ip": "192.0.2.0/28", **TTL}, A),
    Case(
        "L3 out of domain (low confidence) falls back",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        incident={"confidence": 0.3},
    ),
    Case(
        "L3 out of domain (category) falls back",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        A,
        incident={"category": Category.OTHER},
    ),
    Case(
        "L3 not-blocked attack still runs",
        Level.L3,
        "network.block_ip",
        {"ip": "198.51.100.66", **TTL},
        E,
        incident={"blocked": False},
    ),
    # Guardrails: never block ourselves, private or allowlisted ranges, never too wide.
    Case("private address", Level.L3, "network.block_ip", {"ip": "10.1.2.3", **TTL}, D),
    Case("loopback", Level.L3, "network.block_ip", {"ip": "127.0.0.1", **TTL}, D),
    Case("v6 loopback", Level.L4, "network.block_ip", {"ip": "::1", **TTL}, D),
    Case("lab gateway", Level.L3, "network.block_ip", {"ip": "198.51.100.254", **TTL}, D),
    Case("partner monitor", Level.L4, "network.block_ip", {"ip": "203.0.113.7", **TTL}, D),
    Case("range containing the gateway", Level.L3, "network.block_ip", {"ip": "198.51.100.0/24", **TTL}, D),
    Case("everything", Level.L4, "network.block_ip", {"ip": "0.0.0.0/0", **TTL}, D),
    Case("v6 range over the cap", Level.L4, "network.block_ip", {"ip": "2001:db8::/32", **TTL}, D),
    Case("our own web server", Level.L4, "network.block_ip", {"ip": "198.51.100.1", **TTL}, D),
    Case("private range even at L1 is denied", Level.L1, "network.block_ip", {"ip": "10.0.0.0/8"}, D),
    # Restores never run on the machine's word alone (what stops an injected "unblock ...").
    Case("L3 unblock needs approval", Level.L3, "network.unblock_ip", {"ip": "198.51.100.66"}, A),
    Case("L5 unblock needs approval", Level.L5, "network.unblock_ip", {"ip": "198.51.100.66"}, A),
    Case("L1 unblock recommends", Level.L1, "network.unblock_ip", {"ip": "198.51.100.66"}, R),
    Case("L4 release host needs approval", Level.L4, "host.release", {"host": "web-01"}, A),
    # Hosts.
    Case("L1 isolate recommends", Level.L1, "host.isolate", {"host": "web-01"}, R),
    Case("L2 isolate needs approval", Level.L2, "host.isolate", {"host": "web-01"}, A),
    Case("L3 isolate needs approval", Level.L3, "host.isolate", {"host": "web-01"}, A),
    # A target's own scope caps the action: web-01 is production (L3: isolation needs approval) even in an
    # incident declared L4; the staging host the case's alerts come from may be isolated alone, for a while, and
    # so may one the attack reached (impact confirmed: policies/guardrails/entities.rego); one an alert merely went
    # to, or whose application answered an attack request (impact likely), needs a person.
    Case("L4 isolate of a production host", Level.L4, "host.isolate", {"host": "web-01", **TTL}, A),
    Case("L4 isolate of the source runs", Level.L4, "host.isolate", {"host": "web-stg-01", **TTL}, E, incident=STG),
    Case(  # confirmed rests on a post-exploitation alert: one request written to match a malware rule
        "L4 isolate of a host the attack reached, confirmed",
        Level.L4,
        "host.isolate",
        {"host": "web-stg-01", **TTL},
        A,
        incident={"dst_ip": "10.30.0.11"},
        impact=ImpactSummary(verdict="confirmed", assets=["web-stg-01"]),
    ),
    Case(  # a 2xx to an attack request no sensor refused: the attacker can produce it at will
        "L4 isolate of a host an attack request was answered by",
        Level.L4,
        "host.isolate",
        {"host": "web-stg-01", **TTL},
        A,
        incident={"dst_ip": "10.30.0.11"},
        impact=ImpactSummary(verdict="likely", assets=["web-stg-01"]),
    ),
    Case(
        "L4 isolate of a host an alert merely went to",
        Level.L4,
        "host.isolate",
        {"host": "web-stg-01", **TTL},
        A,
        incident={"dst_ip": "10.30.0.11"},
        impact=ImpactSummary(verdict="attempted", assets=["web-stg-01"]),
    ),
    Case("L4 isolate without ttl", Level.L4, "host.isolate", {"host": "web-stg-01"}, A, incident=STG),
    Case(
        "L4 isolate of a host no alert names",
        Level.L4,
        "host.isolate",
        {"host": "web-stg-01", **TTL},
        A,
    ),
    Case("crown jewel DC never isolated", Level.L4, "host.isolate", {"host": "dc-01"}, D),
    # Every spelling of a crown jewel is the crown jewel (controller/decision/inventory.py).
    Case("crown jewel in capitals", Level.L4, "host.isolate", {"host": "DC-01", **TTL}, D),
    Case("crown jewel with a trailing dot", Level.L4, "host.isolate", {"host": "dc-01.", **TTL}, D),
    Case("crown jewel by FQDN", Level.L4, "host.isolate", {"host": "dc-01.corp.example", **TTL}, D),
    Case("crown jewel by address", Level.L4, "host.isolate", {"host": "10.10.0.10", **TTL}, D),
    Case("crown jewel DB never isolated", Level.L4, "host.isolate", {"host": "db-01"}, D),
    Case("unknown host needs approval", Level.L4, "host.isolate", {"host": "ghost-99"}, A),
    # Identities.
    Case("L3 disable regular user", Level.L3, "identity.disable_user", {"user": "alice"}, A, quorum=1),
    # The shipped brute-force and lateral-movement playbooks' disables are bounded (ttl_seconds): still a person's
    # call at L3 and L4 (one of iam-admins; two for a privileged account), whoever the samples' user is.
    Case("L3 bounded disable, regular user", Level.L3, "identity.disable_user", {"user": "j.doe", **TTL}, A, quorum=1),
    Case("L4 bounded disable, regular user", Level.L4, "identity.disable_user", {"user": "j.doe", **TTL}, A, quorum=1),
    # An account is disabled alone (L4: after a veto window) only when the login service saw it guessed.
    Case(
        "L4 bounded disable of an account a login service saw guessed",
        Level.L4,
        "identity.disable_user",
        {"user": "alice", **TTL},
        A,
        incident={"user": "alice", "guessed": ("alice",)},
        quorum=1,
        veto_window=True,
    ),
    Case(
        "L4 bounded disable of an account only named",
        Level.L4,
        "identity.disable_user",
        {"user": "alice", **TTL},
        A,
        incident={"user": "alice", "guessed": ("bob",)},
        quorum=1,
        veto_window=False,
    ),
    Case(
        "L3 bounded disable, privileged service account: two approvers",
        Level.L3,
        "identity.disable_user",
        {"user": "svc-backup", **TTL},
        A,
        quorum=2,
    ),
    Case(
        "L3 disable privileged user: two approvers",
        Level.L3,
        "identity.disable_user",
        {"user": "admin"},
        A,
        quorum=2,
    ),
    Case(
        "L4 disable privileged user: two approvers",
        Level.L4,
        "identity.disable_user",
        {"user": "admin"},
        A,
        quorum=2,
    ),
    Case("unknown identity denied", Level.L4, "identity.disable_user", {"user": "mallory"}, D),
    Case("L1 disable recommends", Level.L1, "identity.disable_user", {"user": "alice"}, R),
    Case(
        "re-enable privileged: two approvers",
        Level.L3,
        "identity.enable_user",
        {"user": "admin"},
        A,
        quorum=2,
    ),
    # Harmless classes.
    Case("L1 ticket recommends", Level.L1, "ticket.create", {"title": "t", "severity": "high", "body": "b"}, R),
    Case("L2 ticket runs", Level.L2, "ticket.create", {"title": "t", "severity": "high", "body": "b"}, E),
    Case("L3 notify runs", Level.L3, "notify.webhook", {"channel": "soc", "message": "m"}, E),
    Case("L1 lookup runs", Level.L1, "investigate.ip_reputation", {"ip": "198.51.100.66"}, E),
    Case("lookup of a private address runs", Level.L3, "investigate.related_alerts", {"ip": "10.0.0.5"}, E),
    Case("host lookup on crown jewel runs", Level.L3, "investigate.host_activity", {"host": "dc-01"}, E),
    # Fail closed before the engine.
    Case("unknown action", Level.L4, "network.nuke", {}, D),
    Case("invalid params", Level.L4, "network.block_ip", {"ip": "not-an-ip"}, D),
]


def _decide(guard: Guard | UnavailableGuard, case: Case) -> GuardDecision:
    incident = make_incident(**case.incident)
    action = ProposedAction(id="a1", action=case.action, params=case.params, confidence=case.confidence)
    plan = Plan(
        incident_key=incident.key,
        planner="offline",
        actions=[action],
        planner_triage=case.planner_triage,
        impact=case.impact,
    )
    [decision] = guard.decide_plan(incident, plan, case.level, triage=case.triage)
    return decision


def _comparable(decision: GuardDecision) -> dict[str, Any]:
    policy = decision.policy.model_dump(exclude={"engine", "decision_id"}) if decision.policy else None
    return {
        "verdict": decision.verdict,
        "reasons": decision.reasons,
        "policy": policy,
        "effective_level": decision.effective_level,
        "risk": decision.risk.score if decision.risk else None,
    }


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert {c.expected for c in CASES} == set(Verdict)
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_both_engines_agree_and_decide_as_expected(case: Case, embedded_guard: Guard, opa_guard: Guard) -> None:
    embedded = _decide(embedded_guard, case)
    opa = _decide(opa_guard, case)
    assert _comparable(embedded) == _comparable(opa)
    assert embedded.verdict is case.expected, embedded.reasons
    assert embedded.reasons, "every decision says why"
    if embedded.policy is not None:
        assert (embedded.policy.engine, opa.policy.engine if opa.policy else None) == ("embedded", "opa")
        assert embedded.policy_revision == embedded_guard.bundle.revision
    if case.quorum is not None:
        assert embedded.policy is not None and embedded.policy.quorum == case.quorum
    if case.veto_window is not None:
        assert embedded.policy is not None and embedded.policy.veto_window is case.veto_window


def _input_doc(guard: Guard, case: Case) -> dict[str, Any]:
    """The input document the guard sends the policy for a case (valid params only)."""
    incident = make_incident(**case.incident)
    action = ProposedAction(id="a1", action=case.action, params=case.params, confidence=case.confidence)
    spec = get_spec(action.action)
    params = validate_params(spec, action.params).model_dump(mode="json")
    targets = targets_of(spec, params, guard.assets)
    facts = guard.facts(incident)
    resolution = guard.incident_resolution(facts, case.level)
    plan = Plan(incident_key=incident.key, planner="offline", actions=[action])
    [decision] = guard.decide_plan(incident, plan, case.level, triage=case.triage)
    assert decision.risk is not None
    shape = PlanShape.of([check_action(action)]).of_class(spec)
    return guard.policy_input(
        incident, action, spec, params, targets, decision.risk, facts, resolution, "planner:x", shape, decision.triage
    )


POLICY_CASES = [c for c in CASES if c.action != "network.nuke" and c.params.get("ip") != "not-an-ip"]


def _malformed(document: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    return {**document, section: {**document[section], key: value}}


# Malformed inputs both engines must deny alike (the policy checks them itself: the controller never sends
# them, another client of the policy might). A score that is not a number is caught without is_number. The
# base is an L1 block (recommend only), where no rule compares the score: at L3, `null > 45` is an error in
# regopy (with strict built-in errors on) where OPA orders the types, so there the embedded engine fails
# (a deny saying the engine gave no decision) and OPA denies naming the score. Both deny; known, not new.
MALFORMED = [
    *(("risk", "score", value) for value in (None, True, False, "32", "", [], [32], {}, {"a": 1}, -0.5, 100.5)),
    ("action", "blast_radius", "planet"),
    ("action", "blast_radius", None),
    ("action", "name", 5),
    ("targets", "hosts", ["web-01", 7]),
    ("targets", "hosts", "web-01"),
    ("targets", "users", {"alice": "alice"}),
    ("level", "effective", "L9"),
    *(("plan", key, value) for key in ("class_actions", "class_addresses") for value in ("1", None, True, -1)),
]


@pytest.mark.parametrize("section,key,value", MALFORMED, ids=lambda v: repr(v))
def test_both_engines_deny_malformed_input_alike(
    section: str, key: str, value: Any, embedded_guard: Guard, opa_guard: Guard
) -> None:
    base = next(case for case in CASES if case.name == "L1 block recommends only")
    document = _malformed(_input_doc(embedded_guard, base), section, key, value)
    embedded, opa = embedded_guard.engine.evaluate(document), opa_guard.engine.evaluate(document)
    assert embedded == opa
    assert embedded["verdict"] == "deny" and embedded["deny_reasons"], embedded


MALFORMED_TRIAGE = [
    None,
    {},
    {"verdict": "malicious"},
    {"verdict": "malicious", "confidence": None},
    {"verdict": "malicious", "confidence": "0.99"},
    {"verdict": "MALICIOUS", "confidence": 0.99},
    {"verdict": ["malicious"], "confidence": 0.99},
    {"verdict": None, "confidence": 0.99},
    {"confidence": 0.99},
    "malicious",
]


@pytest.mark.parametrize("triage", MALFORMED_TRIAGE, ids=lambda v: repr(v))
def test_missing_or_malformed_triage_never_contains_alone(triage: Any, embedded_guard: Guard, opa_guard: Guard) -> None:
    base = next(case for case in CASES if case.name == "L3 block runs")
    document = {**_input_doc(embedded_guard, base), "triage": triage}
    embedded, opa = embedded_guard.engine.evaluate(document), opa_guard.engine.evaluate(document)
    assert embedded == opa
    assert embedded["verdict"] == "approve", embedded
    assert any(r.startswith("triage says ") for r in embedded["approval_reasons"]), embedded


def test_direct_input_reads_the_same_as_regopys_own(embedded_guard: Guard, bundle: PolicyBundle) -> None:
    """The embedded engine's process loads the input through DirectInput; the answers equal regopy's own
    set_input's (a session in this process, the code the child runs), and the child's."""
    session = RegoSession(compiled_policy(bundle))
    assert session.direct.available, "DirectInput fell back to regopy's set_input (regopy internals changed?)"
    documents = [_input_doc(embedded_guard, case) for case in POLICY_CASES]
    documents.append(_malformed(documents[0], "risk", "score", 2**64))  # beyond int64: JSON text
    direct = [session.evaluate(document) for document in documents]
    session.direct.available = False
    fallback = [session.evaluate(document) for document in documents]
    assert direct == fallback
    assert direct == [embedded_guard.engine.evaluate(document) for document in documents]


# Engine failures: a guardrail that misuses a built-in fails at evaluation. Both engines must make that a deny
# naming the engine's error, never an undefined rule that lets the block run (OPA, unless queried with
# strict-builtin-errors, makes such a rule undefined). Built through the product's own path (open_guard), on a
# copy of the policies with the guardrail added; the block ("L4 block runs" above) would run without it.
@dataclass(frozen=True)
class EngineFailure:
    name: str
    guardrail: str  # the body of a deny rule in package autonomy.guardrails
    reasons: dict[EngineName, str]  # what each engine's single deny reason says


EVALUATION_ERRORS = {
    EngineName.EMBEDDED: "policy engine (embedded) gave no decision: embedded engine error evaluating",
    EngineName.OPA: "policy engine (opa) gave no decision: OPA server at",
}

ENGINE_FAILURES = [
    EngineFailure(
        "type error: a duration parser given ttl_seconds, a number",
        "time.parse_duration_ns(input.action.params.ttl_seconds) > 86400000000000",
        EVALUATION_ERRORS,
    ),
    EngineFailure(
        "value error: units.parse on the action's name", "units.parse(input.action.name) > 0", EVALUATION_ERRORS
    ),
    EngineFailure(
        "net.cidr_intersects on a bare address (regopy lacks net.*: refused at load)",
        'some target in ip_targets\n\tnet.cidr_intersects(target.value, "10.0.0.0/8")',
        {
            EngineName.EMBEDDED: "guard unavailable: policy calls built-ins the embedded engine lacks: net.cidr",
            EngineName.OPA: EVALUATION_ERRORS[EngineName.OPA],
        },
    ),
]


@pytest.mark.parametrize("failure", ENGINE_FAILURES, ids=lambda f: f.name)
def test_both_engines_deny_when_a_guardrail_misuses_a_built_in(failure: EngineFailure, config_copy: Settings) -> None:
    rule = f'deny contains "misused built-in" if {{\n\tblocking\n\t{failure.guardrail}\n}}\n'
    (config_copy.policies_dir / "guardrails" / "misuse.rego").write_text(f"package autonomy.guardrails\n\n{rule}")
    block = next(case for case in CASES if case.name == "L4 block runs")
    for engine, expected in failure.reasons.items():
        with open_guard(config_copy, engine) as guard:
            decision = _decide(guard, block)
        assert decision.verdict is Verdict.DENY, (engine, decision.reasons)
        [reason] = decision.reasons
        assert reason.startswith(expected), (engine, reason)
        if engine is EngineName.OPA:
            assert "errored evaluating autonomy/decision/result" in reason, reason
