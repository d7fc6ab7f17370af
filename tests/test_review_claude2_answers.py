"""Adversarial review of the Claude planner with Messages API answers other than the ones the fake usually serves.

Every answer here is a body the real SDK receives over its HTTP layer (tests/claude_fake.py). The SDK builds its
response objects without validating them, so what the planner makes of an answer must not depend on its shape
being the usual one: an answer that is not a finished, well-formed tool call is not Claude's plan (the level's
fallback stands in, with the reason and a transcript the ledger can store), and what the model says can lower
what the machine does alone, never raise it.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any

import httpx2
import pytest

from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ledger.canonical import canonical_json
from autonomy_controller.controller.models import Incident, Level
from autonomy_controller.controller.planning import ClaudeResult, ClaudeSettings, OfflinePlanner
from autonomy_controller.controller.planning.claude_config import MAX_RETRY_WAIT, ClaudeConfigError
from autonomy_controller.controller.planning.claude_prompt import DESIGN_TOOL, SELECT_TOOL
from autonomy_controller.controller.planning.templating import sanitize_free_text
from autonomy_controller.workflows.retries import PLAN_TIMEOUT
from tests import test_claude_planner as claude_tests
from tests.claude_fake import DESIGN_WARM, KEY, MODEL, FakeAPI, act, choose, message, own_triage, propose, tool_use
from tests.test_claude_planner import PlannerFactory

# The Claude planner tests' fixtures: the shipped playbooks, a planner over a FakeAPI, the WAF-blocked SQLi.
instant_retries, offline, planner_for, sqli = (
    claude_tests.instant_retries,
    claude_tests.offline,
    claude_tests.planner_for,
    claude_tests.sqli,
)

ATTACKER = "198.51.100.66"
PICK = {"playbooks": [{"name": "web-attack-blocked", "rationale": "fits"}]}


def raw(text: str) -> httpx2.Response:
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "application/json"})


def assert_not_claudes(result: ClaudeResult, offline: OfflinePlanner, incident: Incident, code: str) -> None:
    """The answer was refused as a whole: the offline plan stands in, the reason says why, the ledger can keep it."""
    assert (result.outcome, result.error) == ("fallback_offline", code), result.reason
    assert result.plan.planner == "offline"
    assert result.plan.actions == offline.plan(incident).actions
    assert (
        result.reason and result.reason.startswith("claude: ") and "fell back to the offline playbooks" in result.reason
    )
    assert result.transcript["error_code"] == code
    canonical_json(result.transcript)  # the ledger's own encoding: a transcript it cannot store loses the record
    canonical_json(result.plan.model_dump(mode="json"))


# -- stop reasons ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_reason", "code"),
    [
        ("end_turn", "unexpected_stop"),
        ("stop_sequence", "unexpected_stop"),  # we send no stop sequences
        ("pause_turn", "unexpected_stop"),  # a turn to be continued: the call is not the finished answer
        ("model_context_window_exceeded", "max_tokens"),
        (None, "unexpected_stop"),  # only a stream's message_start has none
        ("tool_calls", "response_invalid"),  # another API's word: not a stop reason this API documents
    ],
)
def test_a_tool_call_counts_only_when_the_answer_stopped_for_it(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, stop_reason: str | None, code: str
) -> None:
    api = FakeAPI(message([tool_use(SELECT_TOOL, PICK)], stop_reason=stop_reason))  # type: ignore[arg-type]
    result = planner_for(api).plan(sqli)
    assert_not_claudes(result, offline, sqli, code)
    assert result.usage is not None and result.usage["cost_usd"] is not None  # billed all the same


def test_text_and_thinking_around_the_one_call_are_fine(planner_for: PlannerFactory, sqli: Incident) -> None:
    blocks = [
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
        {"type": "text", "text": "I will choose the playbook."},
        tool_use(SELECT_TOOL, PICK),
        {"type": "text", "text": ""},
    ]
    result = planner_for(FakeAPI(message(blocks))).plan(sqli)
    assert result.outcome == "ok" and result.plan.playbook == "web-attack-blocked"


@pytest.mark.parametrize(
    "block",
    [
        {"type": "server_tool_use", "id": "srvtoolu_01A", "name": "web_search", "input": {"query": ATTACKER}},
        {"type": "container_upload", "file_id": "file_01A"},
        {"type": "future_block", "text": "unblock 198.51.100.66"},
        {"text": "no type at all"},
    ],
    ids=["server-tool", "container-upload", "unknown-type", "no-type"],
)
def test_content_nobody_asked_for_refuses_the_answer(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, block: dict[str, Any]
) -> None:
    api = FakeAPI(message([block, tool_use(SELECT_TOOL, PICK)]))
    result = planner_for(api).plan(sqli)
    code = "unexpected_content" if block.get("type") in {"server_tool_use", "container_upload"} else "response_invalid"
    assert_not_claudes(result, offline, sqli, code)


# -- bodies that are not a Messages API message --------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": 123}, "model"),
        ({"role": "user"}, "role"),
        ({"type": "completion"}, "type"),
        ({"content": None}, "content"),
        ({"content": {"type": "tool_use"}}, "content"),
        ({"id": None}, "id"),
        ({"usage": None}, "usage"),
        ({"usage": {"input_tokens": -1.5, "output_tokens": 3}}, "usage"),
    ],
    ids=str,
)
def test_a_body_that_is_not_a_message_is_not_an_answer(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, change: dict[str, Any], named: str
) -> None:
    api = FakeAPI({**choose("web-attack-blocked"), **change})
    result = planner_for(api).plan(sqli)
    assert_not_claudes(result, offline, sqli, "response_invalid")
    assert f"not a Messages API message: {named}" in (result.reason or "")


def test_an_error_object_with_status_200_is_not_an_answer(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident
) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    result = planner_for(FakeAPI(httpx2.Response(200, json=body))).plan(sqli)
    assert_not_claudes(result, offline, sqli, "response_invalid")
    assert result.transcript["response"] == body and result.usage is None


@pytest.mark.parametrize("cut", [1, 40, 200, -2])
def test_a_truncated_body_is_not_an_answer(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, cut: int
) -> None:
    text = json.dumps(choose("web-attack-blocked"))
    result = planner_for(FakeAPI(raw(text[:cut]))).plan(sqli)
    assert_not_claudes(result, offline, sqli, "response_invalid")
    assert result.transcript["response"] == {"unparsed_body": text[:cut]}


# -- JSON that Python reads and the ledger does not ----------------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_refuse_the_answer_and_the_transcript_stays_storable(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, constant: str
) -> None:
    answer = propose(act("network.block_ip", confidence=0.25, ip=ATTACKER, ttl_seconds=3600))
    text = json.dumps(answer).replace('"confidence": 0.25', f'"confidence": {constant}')
    assert constant in text
    result = planner_for(FakeAPI(raw(text)), mode="design").plan(sqli)
    assert_not_claudes(result, offline, sqli, "response_invalid")
    assert f"{constant} is not JSON" in (result.reason or "")
    assert result.transcript["response"] == {"unparsed_body": text}


def test_a_repeated_key_inside_a_string_input_is_refused_too(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident
) -> None:
    # A gateway that passes the arguments on as a JSON string: the repeated key is inside the string, where the
    # body's own check does not look. Which list counts (a ticket, or a block) is ambiguous.
    ticket = json.dumps([act("ticket.create", title="SQL injection", severity="low")])
    block = json.dumps([act("network.block_ip", ip="203.0.113.9", ttl_seconds=3600)])
    payload = f'{{"actions": {ticket}, "actions": {block}}}'
    result = planner_for(FakeAPI(message([tool_use(DESIGN_TOOL, payload)])), mode="design").plan(sqli)
    assert_not_claudes(result, offline, sqli, "malformed_input")
    assert "'actions'" in (result.reason or "") and "more than once" in (result.reason or "")
    assert payload in json.loads(result.transcript["response_text"])["content"][0]["input"]


def test_nan_inside_a_string_input_is_refused(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident
) -> None:
    payload = '{"actions": [{"action": "network.block_ip", "params": {"ip": "198.51.100.66", "ttl_seconds": 3600}, '
    payload += '"rationale": "r", "confidence": NaN}]}'
    result = planner_for(FakeAPI(message([tool_use(DESIGN_TOOL, payload)])), mode="design").plan(sqli)
    assert_not_claudes(result, offline, sqli, "malformed_input")


@pytest.mark.parametrize("payload", ["[]", '"a string in a string"', "7", "null"])
def test_a_string_input_must_decode_to_an_object(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, payload: str
) -> None:
    result = planner_for(FakeAPI(message([tool_use(SELECT_TOOL, payload)]))).plan(sqli)
    assert_not_claudes(result, offline, sqli, "malformed_input")


# -- values the schema types one way, given another ------------------------------------------------------------


@pytest.mark.parametrize(
    ("proposal", "wrong"),
    [
        ({"confidence": "0.9"}, "confidence"),
        ({"confidence": True}, "confidence"),
        ({"params": {"ip": ATTACKER, "ttl_seconds": "3600"}}, "ttl_seconds"),
        ({"params": {"ip": ATTACKER, "ttl_seconds": 3600.5}}, "ttl_seconds"),
        ({"params": {"ip": ATTACKER, "ttl_seconds": True}}, "ttl_seconds"),
        ({"rationale": ["a", "list"]}, "rationale"),
    ],
    ids=str,
)
def test_numbers_as_strings_and_other_mistyped_values_drop_the_action(
    planner_for: PlannerFactory, sqli: Incident, proposal: dict[str, Any], wrong: str
) -> None:
    mistyped = {**act("network.block_ip", ip=ATTACKER, ttl_seconds=3600), **proposal}
    ticket = act("ticket.create", title="SQL injection", severity="high")
    result = planner_for(FakeAPI(propose(mistyped, ticket)), mode="design").plan(sqli)
    assert result.outcome == "ok"
    assert [a.action for a in result.plan.actions] == ["ticket.create"]
    [dropped] = result.dropped
    assert dropped["name"] == "network.block_ip" and wrong in dropped["reason"]


def test_a_flood_of_actions_is_one_drop_not_thousands(planner_for: PlannerFactory, sqli: Incident) -> None:
    flood = [act("ticket.create", title=f"ticket {i}", severity="low") for i in range(5000)]
    result = planner_for(FakeAPI(propose(*flood)), mode="design").plan(sqli)
    assert result.outcome == "ok"
    assert len(result.dropped) <= 11, len(result.dropped)  # the overflow, and the repeated tickets left out
    assert any("4990 action(s) beyond the first 10" in d["reason"] for d in result.dropped)


# -- what the model says cannot raise autonomy ---------------------------------------------------------------


@pytest.mark.parametrize("level", [Level.L3, Level.L4, Level.L5])
def test_the_models_confidence_never_scores_lower_risk_than_the_playbooks(
    planner_for: PlannerFactory, offline: OfflinePlanner, embedded_guard: Guard, sqli: Incident, level: Level
) -> None:
    """The proposal's confidence enters the risk score. The playbook this incident matches proposes the same block
    at its vetted confidence; the model saying 1.0 must not make its block less risky, nor its verdict freer."""
    vetted = next(a for a in offline.plan(sqli).actions if a.action == "network.block_ip")
    sure = act("network.block_ip", confidence=1.0, ip=ATTACKER, ttl_seconds=vetted.params["ttl_seconds"])
    result = planner_for(FakeAPI(propose(sure)), mode="design").plan(sqli)
    [claimed] = result.plan.actions
    assert claimed.confidence <= vetted.confidence
    [by_claude] = embedded_guard.decide_plan(sqli, result.plan, level)
    by_playbook = next(
        d for d in embedded_guard.decide_plan(sqli, offline.plan(sqli), level) if d.action == vetted.action
    )
    assert by_claude.risk is not None and by_playbook.risk is not None
    assert by_claude.risk.score >= by_playbook.risk.score
    freedom = ["deny", "recommend", "approve", "execute"]
    assert freedom.index(by_claude.verdict.value) <= freedom.index(by_playbook.verdict.value)


def test_an_action_no_matching_playbook_vouches_for_is_unvetted(planner_for: PlannerFactory, sqli: Incident) -> None:
    # The SQLi playbooks do not isolate hosts: however sure the model says it is, the controller cannot tell.
    isolate = act("host.isolate", confidence=0.99, host="web-01", ttl_seconds=3600)
    result = planner_for(FakeAPI(propose(isolate)), mode="design").plan(sqli)
    [action] = result.plan.actions
    assert action.confidence == 0.5


def test_a_lower_model_confidence_is_kept(planner_for: PlannerFactory, sqli: Incident) -> None:
    doubtful = act("network.block_ip", confidence=0.3, ip=ATTACKER, ttl_seconds=3600)
    result = planner_for(FakeAPI(propose(doubtful)), mode="design").plan(sqli)
    assert [a.confidence for a in result.plan.actions] == [0.3]


# -- text people read ------------------------------------------------------------------------------------------

HIDDEN = "\u202e\u2066\u200b\u200d\u00ad\ufeff\u061c\U000e0041\x1b[31m\u2028"


def test_model_text_reaches_people_without_invisible_or_reordering_characters(
    planner_for: PlannerFactory, sqli: Incident
) -> None:
    """Rationales, ticket titles and bodies, notify messages and the model's own triage go to tickets, Slack and
    terminals: a bidi override or zero-width character there can hide or reverse what a person reads."""
    text = f"block {HIDDEN}the source{HIDDEN}"
    answer = propose(
        act("network.block_ip", rationale=text, ip=ATTACKER, ttl_seconds=3600),
        act("ticket.create", rationale=text, title=text, severity="high", body=f"line one\n{text}"),
        act("notify.webhook", rationale=text, channel="soc", message=text),
        triage=own_triage("suspicious", 0.6, text),
    )
    result = planner_for(FakeAPI(answer), mode="design").plan(sqli)
    assert result.outcome == "ok" and len(result.plan.actions) == 3, result.reason
    people = [a.rationale for a in result.plan.actions]
    people += [str(v) for a in result.plan.actions for k, v in a.params.items() if k in {"title", "body", "message"}]
    assert result.plan.planner_triage is not None
    people.append(result.plan.planner_triage.rationale)
    for shown in people:
        assert not [c for c in shown if unicodedata.category(c) in {"Cf", "Zl", "Zp"}], ascii(shown)
        assert not [c for c in shown if unicodedata.category(c) == "Cc" and c != "\n"], ascii(shown)
        assert "the source" in shown
    assert "line one\n" in str(result.plan.actions[1].params["body"])  # the body keeps its own line breaks


def test_sanitize_free_text_removes_every_invisible_character() -> None:
    hidden = [
        c
        for c in map(chr, range(sys.maxunicode + 1))
        if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} and sanitize_free_text(f"a{c}b") != "a b"
    ]
    assert hidden == [], [f"U+{ord(c):04X}" for c in hidden[:20]]


# -- the real answer, once more with the defaults: none of the above costs a sound plan ------------------------


def test_a_usual_answer_still_plans(planner_for: PlannerFactory, sqli: Incident) -> None:
    api = FakeAPI(
        message(
            [tool_use(DESIGN_TOOL, {"actions": [act("network.block_ip", ip=ATTACKER, ttl_seconds=3600)]})],
            usage=DESIGN_WARM,
        )
    )
    result = planner_for(api, mode="design").plan(sqli)
    assert result.outcome == "ok" and result.plan.model == MODEL and result.error is None


# -- the API asking us to wait -------------------------------------------------------------------------------


def test_a_retry_after_of_an_hour_does_not_stall_the_planner(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This SDK sleeps whatever `retry-after` says (up to 49 days): a 429 asking for an hour would hold the plan
    activity's thread past its 3-minute timeout, the level's fallback would never apply and the thread would stay
    asleep in the worker's pool. The planner caps the wait; the SDK's own backoff runs (not the fixture's zero)."""
    monkeypatch.undo()  # the real retry timing of the SDK, with only the sleep recorded
    slept: list[float] = []
    monkeypatch.setattr("anthropic._base_client.time.sleep", slept.append)
    limited = httpx2.Response(
        429,
        json={"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited."}},
        headers={"retry-after": "3600"},
    )
    api = FakeAPI(limited)
    result = planner_for(api, max_retries=2).plan(sqli)
    assert (result.outcome, result.error) == ("fallback_offline", "rate_limited")
    assert result.plan.actions == offline.plan(sqli).actions
    assert len(api.requests) == 3 and len(slept) == 2
    assert all(0 < wait <= MAX_RETRY_WAIT for wait in slept), slept


def test_the_slowest_claude_call_fits_the_plan_activity() -> None:
    # Every attempt timing out and every retry after the longest wait still ends inside the plan activity, so the
    # level's fallback applies; a configuration that could not is refused when read, naming its variables.
    settings = ClaudeSettings(api_key=KEY)
    slowest = (settings.max_retries + 1) * settings.timeout_seconds + settings.max_retries * MAX_RETRY_WAIT
    assert slowest < PLAN_TIMEOUT.total_seconds()
    for env in ({"AUTONOMY_CLAUDE_TIMEOUT_SECONDS": "60"}, {"AUTONOMY_CLAUDE_MAX_RETRIES": "5"}):
        with pytest.raises(ClaudeConfigError) as refused:
            ClaudeSettings.from_env({"ANTHROPIC_API_KEY": KEY, **env})
        assert "AUTONOMY_CLAUDE_MAX_RETRIES" in str(refused.value) and "plan step" in str(refused.value)
    fits = ClaudeSettings.from_env(
        {"ANTHROPIC_API_KEY": KEY, "AUTONOMY_CLAUDE_TIMEOUT_SECONDS": "150", "AUTONOMY_CLAUDE_MAX_RETRIES": "0"}
    )
    assert fits is not None and fits.timeout_seconds == 150
