"""`POST /v1/chat/slack/interactions`: a Slack button press becomes a vote through the inbox's vote path.

Order of checks, each refusing before the next runs: ChatOps configured (else 404); the body within
`MAX_BODY_BYTES`; Slack's signature, timestamp window and replay (else 401: the request is not Slack's); the
form and its `payload` JSON a `block_actions` press of our Approve/Reject button (else 400); the Slack user in
the configured map (else refused); then `controller.service.approvals.vote_as`, where the workflow's update and
validator decide. Once a request is known to be Slack's, the answer is 200 with a message for the person
(Slack shows nothing useful for an error status): the updated approval message (`replace_original`), or an
ephemeral `Refused: <reason>` only the presser sees. The update is also POSTed to the press's `response_url`
(how Slack updates a message after a `block_actions` press) when that URL starts with `response_url_prefix`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from autonomy_controller.controller.service.approvals import Refused, details, vote_as
from autonomy_controller.controller.service.chatops import blocks
from autonomy_controller.controller.service.chatops.config import ChatConfig
from autonomy_controller.controller.service.chatops.signature import SignatureRefused, Verifier
from autonomy_controller.controller.service.refusals import Attempt
from autonomy_controller.controller.service.state import Service
from autonomy_controller.workflows.contracts import ActionStatus, VoteChoice

router = APIRouter(tags=["chatops"])
MAX_BODY_BYTES = 256 * 1024
log = logging.getLogger(__name__)


@dataclass
class Chat:
    config: ChatConfig
    verifier: Verifier


@dataclass(frozen=True)
class Press:
    user: str
    choice: VoteChoice
    incident: str
    run_id: str
    action_id: str
    response_url: str | None


class Malformed(ValueError):
    pass


FORM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["payload"],
                    "properties": {"payload": {"type": "string", "description": "the interaction, JSON"}},
                }
            }
        },
    }
}


@router.post(
    "/v1/chat/slack/interactions",
    summary="A Slack button press (block_actions), signed by Slack: a vote on a pending approval",
    openapi_extra=FORM_BODY,
    responses={401: {"description": "not signed by Slack, stale or replayed"}, 404: {"description": "no ChatOps"}},
)
async def slack_interaction(request: Request, background: BackgroundTasks) -> JSONResponse:
    chat: Chat | None = getattr(request.app.state, "chat", None)
    service: Service = request.app.state.service
    outcomes = service.metrics.chat_interactions
    if chat is None:
        return JSONResponse({"detail": "ChatOps is not configured (chatops.yaml)"}, status_code=404)
    attempt = Attempt("slack", request.client.host if request.client else "unknown")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            outcomes.labels("malformed").inc()
            return await _refused(service, attempt, 413, f"body over {MAX_BODY_BYTES} bytes")
    headers = request.headers
    try:
        chat.verifier.verify(headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature"), body)
    except SignatureRefused as exc:
        outcomes.labels("untrusted").inc()
        return await _refused(service, attempt, 401, f"not a request from Slack: {exc}")
    try:
        press = parse_press(body)
    except Malformed as exc:
        outcomes.labels("malformed").inc()
        return await _refused(service, attempt, 400, f"not an Approve/Reject press: {exc}")
    identity = chat.config.users.get(press.user)
    attempt = Attempt(
        "slack", f"slack user {press.user}", identity, press.incident, press.action_id, press.run_id, press.choice.value
    )
    try:
        if identity is None:
            raise Refused(403, "Refused", f"Slack user {press.user} is not mapped to an identity (chatops.yaml users)")
        cast = await vote_as(
            service, identity, press.incident, press.action_id, press.choice, "via Slack", run_id=press.run_id
        )
    except Refused as exc:
        await service.refusals.record_refused(attempt, exc)  # every refused attempt is in the ledger (bounded)
        outcomes.labels("refused").inc()
        log.info("chatops: %s's %s of %s refused: %s", press.user, press.choice.value, press.action_id, exc.text)
        return JSONResponse(blocks.refusal(exc.text))
    outcomes.labels("voted").inc()
    state = cast.result.state
    (item,) = details(service, press.incident, press.run_id, [state])
    verb = "approved" if press.choice is VoteChoice.APPROVE else "rejected"
    outcome = f"*{blocks.escape(identity)}* {verb} via Slack ({cast.how}): now *{state.status.value}*"
    if state.status is ActionStatus.AWAITING_APPROVAL and state.missing:
        outcome += f"; still needed: {blocks.escape('; '.join(state.missing))}"
    update = {"replace_original": True, **blocks.message(item, outcome)}
    if press.response_url and press.response_url.startswith(chat.config.response_url_prefix):
        background.add_task(_respond, press.response_url, update)
    return JSONResponse(update)


async def _refused(service: Service, attempt: Attempt, status: int, detail: str) -> JSONResponse:
    """A request refused before it is known to be a press of ours by a person we know: recorded, and answered."""
    await service.refusals.record(attempt, status, detail)
    return JSONResponse({"detail": detail}, status_code=status)


def parse_press(body: bytes) -> Press:
    """The one Approve/Reject button press in Slack's form-encoded `payload=`; Malformed names what is wrong."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"not a form: {exc}") from None
    if len(form.get("payload", [])) != 1:
        raise Malformed("the form carries no single payload field")
    try:
        payload: Any = json.loads(form["payload"][0])
    except ValueError as exc:
        raise Malformed(f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise Malformed("payload is not a block_actions interaction")
    user, actions = payload.get("user"), payload.get("actions")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise Malformed("payload names no user.id")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise Malformed("payload carries no single action")
    action = actions[0]
    if action.get("block_id") != blocks.VOTE_BLOCK or action.get("action_id") not in (blocks.APPROVE, blocks.REJECT):
        raise Malformed("the action is not our Approve or Reject button")
    try:
        value = json.loads(action.get("value") or "")
        incident, run_id, action_id = (str(value[k]) for k in ("incident", "run", "action"))
    except (ValueError, TypeError, KeyError) as exc:
        raise Malformed(f"the button's value is not ours: {exc!r}") from None
    response_url = payload.get("response_url")
    return Press(
        user=user["id"],
        choice=VoteChoice(action["action_id"]),
        incident=incident,
        run_id=run_id,
        action_id=action_id,
        response_url=response_url if isinstance(response_url, str) else None,
    )


async def _respond(url: str, update: dict[str, Any]) -> None:
    """Slack's way to update the message after a block_actions press; best effort (the vote is already counted)."""
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            answer = await http.post(url, json=update)
        if not answer.is_success:
            log.warning("chatops: response_url answered %s", answer.status_code)
    except httpx.HTTPError as exc:
        log.warning("chatops: response_url unreachable (%s)", type(exc).__name__)
