"""A fake Anthropic Messages API for tests: real SDK, real HTTP layer (httpx2 MockTransport), canned replies.

Replies are real Messages API bodies (tool_use, thinking, usage with cache fields), so the SDK parses them as
it would a live answer.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2

from autonomy_controller.controller.planning.claude_prompt import DESIGN_TOOL, SELECT_TOOL

KEY = "sk-ant-api03-TESTKEY-0123456789abcdef"
MODEL = "claude-sonnet-5-5"
BASE_URL = "http://claude.test"

# Usage as the API would report it for these prompts: the stable prefix (tools + system prompt + catalog) is
# ~21k characters in select mode and ~26k in design mode, about 6,300 and 8,100 tokens with the tool-use
# overhead; the incident message is ~450 tokens; output includes adaptive thinking. Cold = the first request
# in the 5-minute cache window (writes the prefix), warm = every later one (reads it).
SELECT_COLD = {
    "input_tokens": 450,
    "output_tokens": 450,
    "cache_creation_input_tokens": 6300,
    "cache_read_input_tokens": 0,
}
SELECT_WARM = {
    "input_tokens": 450,
    "output_tokens": 450,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 6300,
}
DESIGN_COLD = {
    "input_tokens": 480,
    "output_tokens": 1200,
    "cache_creation_input_tokens": 8100,
    "cache_read_input_tokens": 0,
}
DESIGN_WARM = {
    "input_tokens": 480,
    "output_tokens": 1200,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 8100,
}

_ids = iter(range(1_000_000))


# -- the fake API -----------------------------------------------------------------------------------------


def message(
    content: list[dict[str, Any]], stop_reason: str = "tool_use", usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A Messages API response body."""
    return {
        "id": f"msg_01Test{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or SELECT_WARM,
    }


def tool_use(name: str, payload: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_01Test{next(_ids):06d}", "name": name, "input": payload}


def thinking(text: str = "The WAF blocked it; a short block and a ticket are proportionate.") -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": "EqQBCkYIBxgCKkD0c2lnbmF0dXJl"}


def choose(*names: str, usage: dict[str, int] | None = None, triage: Any = None) -> dict[str, Any]:
    """A select-mode answer; `triage` (any JSON, to test bad ones) is the model's own triage when given."""
    picks = [{"name": n, "rationale": f"{n} fits the facts."} for n in names]
    return message([thinking(), tool_use(SELECT_TOOL, _with_triage({"playbooks": picks}, triage))], usage=usage)


def propose(*actions: dict[str, Any], usage: dict[str, int] | None = None, triage: Any = None) -> dict[str, Any]:
    payload = _with_triage({"actions": list(actions)}, triage)
    return message([thinking(), tool_use(DESIGN_TOOL, payload)], usage=usage or DESIGN_WARM)


def own_triage(verdict: Any, confidence: Any, rationale: Any = "My own reading of the facts.") -> dict[str, Any]:
    """The model's own triage as the tool's `triage` field carries it."""
    return {"verdict": verdict, "confidence": confidence, "rationale": rationale}


def _with_triage(payload: dict[str, Any], triage: Any) -> dict[str, Any]:
    return payload if triage is None else {**payload, "triage": triage}


def act(action: str, confidence: float = 0.8, rationale: str = "Proportionate to the facts.", **params: Any) -> dict:
    return {"action": action, "params": params, "rationale": rationale, "confidence": confidence}


def error(status: int, kind: str, text: str) -> httpx2.Response:
    return httpx2.Response(status, json={"type": "error", "error": {"type": kind, "message": text}})


Reply = dict[str, Any] | httpx2.Response | Exception


class FakeAPI:
    """Serves queued replies (the last one repeats) and records every HTTP request the SDK made."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx2.Response):
            return reply
        return httpx2.Response(200, json=reply, headers={"request-id": "req_01Test"})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def client(self) -> anthropic.Anthropic:
        transport = httpx2.MockTransport(self)
        return anthropic.Anthropic(api_key=KEY, base_url=BASE_URL, http_client=httpx2.Client(transport=transport))
