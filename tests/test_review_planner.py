"""Adversarial review of the Claude planner's answer parsing, through the real SDK and its HTTP layer.

A JSON object that names a key twice has no one meaning: Python's decoder (the SDK's) keeps the last value,
others keep the first, and the transcript a person audits is decoded the same way, so the value that was
dropped is nowhere. An answer like that is not trusted as an answer.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2

from autonomy_controller.controller.models import Incident
from autonomy_controller.controller.planning import OfflinePlanner
from tests import test_claude_planner as claude_tests
from tests.claude_fake import FakeAPI, act, message, propose, tool_use
from tests.test_claude_planner import PlannerFactory

# The Claude planner tests' fixtures: the shipped playbooks, a planner over a FakeAPI, the WAF-blocked SQLi.
instant_retries, offline, planner_for, sqli = (
    claude_tests.instant_retries,
    claude_tests.offline,
    claude_tests.planner_for,
    claude_tests.sqli,
)


def body_with_a_repeated_key(answer: dict[str, Any], key: str, first: Any) -> httpx2.Response:
    """The answer's HTTP body with `key` written twice in its tool input: `first`, then the answer's own value."""
    text = json.dumps(answer)
    [call] = [block for block in answer["content"] if block["type"] == "tool_use"]
    value = json.dumps(call["input"][key])
    marker = f'"{key}": {value}'
    assert text.count(marker) == 1
    text = text.replace(marker, f'"{key}": {json.dumps(first)}, {marker}')
    return httpx2.Response(
        200, content=text.encode(), headers={"content-type": "application/json", "request-id": "req_01Review"}
    )


def test_an_answer_that_repeats_a_key_is_rejected_and_kept_as_sent(
    planner_for: PlannerFactory, offline: OfflinePlanner, sqli: Incident
) -> None:
    # Two action lists in one tool input: a ticket first, then a block. The SDK kept the block; an auditor reading
    # the transcript saw one list; a parser that keeps the first would have seen the ticket.
    answer = propose(act("network.block_ip", ip="198.51.100.66", ttl_seconds=3600))
    first = [act("ticket.create", title="SQL injection", severity="low")]
    api = FakeAPI(body_with_a_repeated_key(answer, "actions", first))
    result = planner_for(api, mode="design").plan(sqli)
    assert (result.outcome, result.error) == ("fallback_offline", "malformed_input"), result.reason
    assert "'actions'" in (result.reason or "") and "more than once" in (result.reason or "")
    assert result.plan.planner == "offline" and result.plan.actions == offline.plan(sqli).actions
    assert '"actions": [{"action": "ticket.create"' in result.transcript["response_text"]


def test_a_repeated_key_inside_params_is_rejected_too(planner_for: PlannerFactory, sqli: Incident) -> None:
    answer = message([tool_use("propose_actions", {"actions": [act("network.block_ip", ip="198.51.100.66")]})])
    api = FakeAPI(body_with_a_repeated_key_in_params(answer, "10.10.0.10"))
    result = planner_for(api, mode="design").plan(sqli)
    assert result.error == "malformed_input" and "'ip'" in (result.reason or "")


def body_with_a_repeated_key_in_params(answer: dict[str, Any], first_ip: str) -> httpx2.Response:
    text = json.dumps(answer).replace('"ip": "198.51.100.66"', f'"ip": "{first_ip}", "ip": "198.51.100.66"', 1)
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "application/json"})
