"""Reading the Messages API's answer strictly, before the Claude planner looks at what the model said.

The SDK builds its response objects without validating them (pydantic `construct`): a body with a model id that
is a number, an unknown `stop_reason`, a `role` of `user`, no `usage` or a content block of an unknown type comes
back as a `Message` all the same, and a plan built on it either crashes the activity or rests on an answer
nobody checked. So the planner reads the HTTP body itself, the way the API documents it:

- strict JSON (RFC 8259): no `NaN`/`Infinity` (Python's decoder accepts them, the ledger's canonical JSON does
  not) and no key named twice in one object (the SDK keeps the last value, other readers the first);
- a `tool_use` input that a gateway passed on as a JSON string is decoded by the same rules; an input that is
  not a JSON object is the model's malformed answer;
- then the SDK's own `Message` type *validates* it: every field its type, every block a known type, every
  `stop_reason` one the API documents. Anything else is not an answer, whatever it happens to contain.
"""

from __future__ import annotations

import json
from typing import Any

from anthropic.types import Message, Usage
from pydantic import ValidationError

from autonomy_controller.controller.planning.templating import sanitize_free_text


class AnswerError(Exception):
    """The model's answer cannot be used as a whole; `code` is the short error code for the ledger.

    `body` is the decoded response when it was strict JSON (for the transcript and the usage that was billed).
    """

    def __init__(self, code: str, reason: str, body: Any = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.body = body


def read_message(text: str) -> tuple[Message, dict[str, Any]]:
    """The validated message and the body as sent (decoded), or AnswerError saying what is wrong with it."""
    body = strict_json(text, "response_invalid", "the response body")
    if not isinstance(body, dict):
        raise AnswerError("response_invalid", f"the response body is a JSON {type(body).__name__}, not a message")
    try:
        decoded = _with_decoded_inputs(body)
    except AnswerError as exc:
        raise AnswerError(exc.code, exc.reason, body) from None
    try:
        return Message.model_validate(decoded), body
    except ValidationError as exc:
        raise AnswerError("response_invalid", f"not a Messages API message: {_summary(exc)}", body) from None


def billed_usage(body: Any) -> Usage | None:
    """The usage of an answer rejected as a whole, when that part of it is sound: the tokens were billed."""
    if not isinstance(body, dict):
        return None
    try:
        return Usage.model_validate(body.get("usage"))
    except ValidationError:
        return None


def strict_json(text: str, code: str, what: str) -> Any:
    """`text` decoded as RFC 8259 JSON; AnswerError(`code`) for anything else, and `malformed_input` for a key
    named twice in one object (which value counts is ambiguous)."""
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _value in items:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise AnswerError(code, f"{what} is not valid JSON: {exc}") from None
    if repeated:
        keys = ", ".join(repr(sanitize_free_text(key, 40)) for key in repeated[:5])
        raise AnswerError(
            "malformed_input",
            f"{what} names JSON key(s) {keys} more than once in one object: which value counts is ambiguous",
        )
    return value


def _with_decoded_inputs(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every tool_use input a JSON object: one given as a string (some gateways) is decoded."""
    content = body.get("content")
    if not isinstance(content, list):
        return body
    blocks: list[Any] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            payload = block.get("input")
            if isinstance(payload, str):
                payload = strict_json(payload, "malformed_input", "the tool input")
            if not isinstance(payload, dict):
                kind = type(payload).__name__
                raise AnswerError("malformed_input", f"the tool input is a JSON {kind}, not an object")
            block = {**block, "input": payload}
        blocks.append(block)
    return {**body, "content": blocks}


def _summary(exc: ValidationError, shown: int = 3) -> str:
    errors = exc.errors()
    parts = [f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in errors[:shown]]
    more = f" (+{len(errors) - shown} more)" if len(errors) > shown else ""
    return "; ".join(parts) + more
