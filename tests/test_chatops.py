"""ChatOps against a live server: a real Temporal dev server and worker, real workflows pending approval, and a
real local HTTP receiver standing in for Slack (its incoming webhook, its Web API's chat.postMessage and
chat.update, and a press's response_url are outside services we cannot reach). Interaction requests are signed
as Slack signs them.

One dev server, worker and receiver for the module, and two services on the same ledger: one posting through
the webhook, one with a bot token (which can edit its messages); each test uses its own attacker address.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request
from pydantic import SecretStr

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.chatops import ChatConfig
from autonomy_controller.controller.service.chatops.poster import POSTED_FILE
from autonomy_controller.controller.service.chatops.signature import sign
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionStatus
from tests.harness import Loop, action_of, alert, awaiting, running_loop, vote
from tests.test_http import live

pytestmark = pytest.mark.asyncio(loop_scope="module")
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-bot-token"
USERS = {"U0BOB": "bob", "U0ALICE": "alice"}  # bob: soc-oncall; alice: finance, in no approver group
MARKUP = "<!channel> <https://evil.example|click here> & <@U0BOB> *bold*"


@dataclass
class Receiver:
    """What Slack would have received: webhook messages and response_url updates, as posted (JSON)."""

    base: str = ""
    webhook: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    api: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Web API calls with the bot token: (method, body)."""


def receiver_app(receiver: Receiver) -> FastAPI:
    app = FastAPI()

    @app.post("/services/T0/B0/hook")
    async def hook(request: Request) -> str:
        assert request.headers["content-type"] == "application/json"
        receiver.webhook.append(json.loads(await request.body()))
        return "ok"  # what Slack's incoming webhook answers

    @app.post("/api/{method}")
    async def web_api(method: str, request: Request) -> dict[str, Any]:
        if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
            return {"ok": False, "error": "invalid_auth"}  # what Slack answers, with status 200
        body = json.loads(await request.body())
        receiver.api.append((method, body))
        if method == "chat.postMessage":
            return {"ok": True, "channel": body["channel"], "ts": f"1733460000.{len(receiver.api):06d}"}
        return {"ok": True, "channel": body["channel"], "ts": body["ts"]}

    @app.post("/actions/T0/respond")
    async def respond(request: Request) -> dict[str, bool]:
        receiver.responses.append(json.loads(await request.body()))
        return {"ok": True}

    return app


@dataclass
class Chat:
    loop: Loop
    http: httpx.AsyncClient
    receiver: Receiver
    state_dir: Path

    async def message_for(self, key: str, timeout: float = 30) -> tuple[dict[str, Any], dict[str, Any]]:
        """The webhook message posted for `key`'s pending action, and its Approve button."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            found = [
                (m, b) for m in self.receiver.webhook for b in buttons(m) if json.loads(b["value"])["incident"] == key
            ]
            if found:
                return next((m, b) for m, b in found if b["action_id"] == "approve")
            await asyncio.sleep(0.1)
        raise AssertionError(f"no message for {key}; received {len(self.receiver.webhook)}")

    async def press(
        self,
        button: dict[str, Any],
        user: str,
        *,
        secret: str = SECRET,
        at: int | None = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        body = body if body is not None else interaction(button, user, f"{self.receiver.base}/actions/T0/respond")
        timestamp = str(at if at is not None else int(time.time()))
        signed = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": sign(secret, timestamp, body)}
        return await self.http.post(
            "/v1/chat/slack/interactions",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **(signed if headers is None else headers)},
        )


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def interaction(button: dict[str, Any], user: str, response_url: str) -> bytes:
    """A block_actions payload as Slack sends it for a press of `button` (form-encoded `payload=`)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0"},
        "api_app_id": "A0",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": "1733460000.000100", "channel_id": "C0", "is_ephemeral": False},
        "trigger_id": "1.2.3",
        "team": {"id": "T0", "domain": "example"},
        "channel": {"id": "C0", "name": "soc"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": button["action_id"],
                "block_id": "autonomy-vote",
                "text": button["text"],
                "value": button["value"],
                "style": button.get("style"),
                "type": "button",
                "action_ts": "1733460001.000200",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chat(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Chat]:
    root = tmp_path_factory.mktemp("chatops")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    receiver = Receiver()
    async with live(receiver_app(receiver)) as slack:
        receiver.base = str(slack.base_url).rstrip("/")
        chat_config = ChatConfig.model_validate(
            {
                "webhook_url": f"{receiver.base}/services/T0/B0/hook",
                "signing_secret": SECRET,
                "users": USERS,
                "poll_seconds": 0.2,
                "response_url_prefix": f"{receiver.base}/actions/",
            }
        )
        async with running_loop(config) as loop:
            app = create_app(
                config,
                ServiceConfig(connect_timeout_seconds=1),
                loop.client.service_client.config.target_host,
                chat=chat_config,
            )
            # The same ledger and Temporal, its own state folder (what it posted): a service with a bot token.
            bot_settings = Settings(
                levels_dir=config.levels_dir,
                policies_dir=config.policies_dir,
                state_dir=root / "var-bot",
                ledger_url_override=config.ledger_url,
            )
            bot_chat = chat_config.model_copy(
                update={"webhook_url": None, "bot_token": SecretStr(BOT_TOKEN), "channel": "C0SOC"}
            )
            bot_config = ChatConfig.model_validate(bot_chat.model_dump() | {"api_url": f"{receiver.base}/api/"})
            bot_app = create_app(
                bot_settings,
                ServiceConfig(connect_timeout_seconds=1),
                loop.client.service_client.config.target_host,
                chat=bot_config,
            )
            async with live(app) as http, live(bot_app):
                yield Chat(loop, http, receiver, config.state_dir)


async def pending_block(chat: Chat, src_ip: str) -> tuple[str, str]:
    (key,) = await chat.loop.submit([alert(1, src_ip, evidence=f"GET /?q={MARKUP}")], level=Level.L2)
    block = action_of(await awaiting(chat.loop, key), "network.block_ip")
    return key, block.action_id


def texts(message: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for block in message["blocks"]:
        found += [block["text"]] if "text" in block else []
        found += block.get("fields", []) + block.get("elements", [])
    return [t for t in found if t.get("type") in ("mrkdwn", "plain_text")]


def votes(loop: Loop, key: str, event: str = "vote") -> list[dict[str, Any]]:
    return [r.payload for r in loop.ledger.records(key, [RecordKind.APPROVAL]) if r.payload["event"] == event]


async def test_each_pending_approval_is_posted_once_as_block_kit_with_evidence_escaped(chat: Chat) -> None:
    key, action_id = await pending_block(chat, "203.0.113.80")
    message, approve = await chat.message_for(key)
    await asyncio.sleep(1.0)  # five more polls: still one message for this action
    assert len([m for m in chat.receiver.webhook if any(key in b["value"] for b in buttons(m))]) == 1

    assert message["text"] == "Approval needed: network.block_ip on 203.0.113.80"
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": message["text"], "emoji": False},
    }
    everything = "\n".join(t["text"] for t in texts(message))
    for shown in (
        "*Quorum still needed*\n1 more approval(s)",
        "*Approver groups*\nsoc-oncall",
        "L2 requires approval for contain_network",
        "*Triage*\nsuspicious",
        "blast_radius",
        "*Deadline*\n20",
        "&lt;!channel&gt; &lt;https://evil.example|click here&gt; &amp; &lt;@U0BOB&gt;",
    ):
        assert shown in everything, shown
    assert "<!channel>" not in everything and "<https://" not in everything and "<@U0BOB>" not in everything
    assert all(t["verbatim"] for t in texts(message) if t["type"] == "mrkdwn"), "auto-linking must be off"
    reject = next(b for b in buttons(message) if b["action_id"] == "reject")
    assert (approve["style"], reject["style"]) == ("primary", "danger") and approve["value"] == reject["value"]
    value = json.loads(approve["value"])
    assert value["incident"] == key and value["action"] == action_id and value["run"]
    posted = json.loads((chat.state_dir / POSTED_FILE).read_text())["posted"]
    assert f"{key}|{value['run']}|{action_id}" in posted


async def test_a_signed_press_by_a_mapped_approver_approves_and_the_action_executes(chat: Chat) -> None:
    key, action_id = await pending_block(chat, "203.0.113.81")
    _, approve = await chat.message_for(key)
    before = chat.loop.enforcement.effects.get("network.block_ip", 0)

    answer = await chat.press(approve, "U0BOB")
    assert answer.status_code == 200, answer.text
    update = answer.json()
    assert update["replace_original"] is True and not buttons(update), "a decided action keeps no buttons"
    outcome = "\n".join(t["text"] for t in texts(update))
    assert "*bob* approved via Slack (unsigned): now *" in outcome

    await chat.loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert chat.loop.enforcement.effects["network.block_ip"] == before + 1
    assert [(v["approver"], v["choice"], v["action_id"]) for v in votes(chat.loop, key)] == [
        ("bob", "approve", action_id)
    ]
    for _ in range(50):  # the same update also went to the press's response_url (Slack's way to update)
        if any(key in json.dumps(r) for r in chat.receiver.responses):
            break
        await asyncio.sleep(0.1)
    assert any(r["replace_original"] is True and key in json.dumps(r) for r in chat.receiver.responses)


async def test_unsigned_wrongly_signed_stale_and_replayed_requests_are_refused(chat: Chat) -> None:
    key, _ = await pending_block(chat, "203.0.113.82")
    _, approve = await chat.message_for(key)
    body = interaction(approve, "U0BOB", "")
    now = int(time.time())

    unsigned = await chat.press(approve, "U0BOB", headers={})
    wrong = await chat.press(approve, "U0BOB", secret="not-the-signing-secret")
    stale = await chat.press(approve, "U0BOB", at=now - 301)  # correctly signed for a time 5 min 1 s ago
    future = await chat.press(approve, "U0BOB", at=now + 301)
    tampered = await chat.http.post(
        "/v1/chat/slack/interactions",
        content=body.replace(b"U0BOB", b"U0BOC"),
        headers={"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign(SECRET, str(now), body)},
    )
    for refused, reason in (
        (unsigned, "unsigned"),
        (wrong, "does not verify"),
        (stale, "stale"),
        (future, "stale"),
        (tampered, "does not verify"),
    ):
        assert refused.status_code == 401 and reason in refused.json()["detail"], (reason, refused.text)
    assert votes(chat.loop, key) == [] and votes(chat.loop, key, "vote_refused") == []

    first = await chat.press(approve, "U0NOBODY", at=now)  # valid; an unknown user, so nothing is voted
    replayed = await chat.press(approve, "U0NOBODY", at=now)  # the very same bytes and signature again
    assert first.status_code == 200 and replayed.status_code == 401 and "replayed" in replayed.json()["detail"]
    status = await chat.loop.wait_for(key, lambda s: True)
    assert action_of(status, "network.block_ip").status is ActionStatus.AWAITING_APPROVAL


async def test_an_unknown_chat_user_and_an_outsider_are_refused_and_nothing_runs(chat: Chat) -> None:
    key, action_id = await pending_block(chat, "203.0.113.83")
    _, approve = await chat.message_for(key)

    unknown = await chat.press(approve, "U0NOBODY")
    assert unknown.status_code == 200
    assert unknown.json() == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": "Refused: Slack user U0NOBODY is not mapped to an identity (chatops.yaml users)",
    }
    outsider = await chat.press(approve, "U0ALICE")
    assert outsider.json()["response_type"] == "ephemeral" and "not in an approver group" in outsider.json()["text"]
    refused = votes(chat.loop, key, "vote_refused")  # U0NOBODY's refused by us, alice's by the workflow: both kept
    assert [(r["approver"], r["action_id"]) for r in refused] == [("unauthenticated", action_id), ("alice", action_id)]
    assert refused[0]["client"] == "slack user U0NOBODY" and refused[0]["channel"] == "slack"
    assert votes(chat.loop, key) == []
    status = await chat.loop.wait_for(key, lambda s: True)
    assert action_of(status, "network.block_ip").status is ActionStatus.AWAITING_APPROVAL

    other_run = json.loads(approve["value"]) | {"run": "an-earlier-run"}
    stale_run = await chat.press({**approve, "value": json.dumps(other_run)}, "U0BOB")
    assert "earlier run" in stale_run.json()["text"] and votes(chat.loop, key) == []

    junk = await chat.press(approve, "U0BOB", body=b"payload=%7Bnot+json")
    assert junk.status_code == 400 and "payload is not JSON" in junk.json()["detail"]


async def test_with_a_bot_token_a_message_decided_elsewhere_is_edited_to_its_outcome(chat: Chat) -> None:
    key, action_id = await pending_block(chat, "203.0.113.84")
    posted = await api_calls(chat, "chat.postMessage", key)
    assert posted[0]["channel"] == "C0SOC" and any(b["action_id"] == "approve" for b in buttons(posted[0]))
    assert await api_calls(chat, "chat.update", key, wait=1.0) == []  # pending: nothing to edit

    await cast_vote(chat.loop.client, chat.loop.ledger, key, vote("bob", action_id=action_id))  # the CLI's path
    (update,) = await api_calls(chat, "chat.update", key)
    assert update["channel"] == "C0SOC" and update["ts"] == f"1733460000.{first_call(chat, key):06d}"
    assert not buttons(update), "a decided action keeps no buttons"
    shown = "\n".join(t["text"] for t in texts(update))
    assert "Decided outside Slack: now *awaiting_revert*" in shown and "bob approve (unsigned)" in shown
    assert update["text"] == "Now awaiting_revert: network.block_ip on 203.0.113.84"  # executed, its TTL pending
    await asyncio.sleep(1.0)  # more polls: edited once, not again
    assert len(await api_calls(chat, "chat.update", key, wait=0)) == 1
    assert len(await api_calls(chat, "chat.postMessage", key, wait=0)) == 1


def first_call(chat: Chat, key: str) -> int:
    return next(n for n, (m, b) in enumerate(chat.receiver.api, 1) if m == "chat.postMessage" and key in json.dumps(b))


async def api_calls(chat: Chat, method: str, key: str, wait: float = 30) -> list[dict[str, Any]]:
    """The bot's `method` calls about `key`: waits up to `wait` s for one (returns [] after that)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = [b for m, b in chat.receiver.api if m == method and key in json.dumps(b)]
        if found or asyncio.get_running_loop().time() >= deadline:
            return found
        await asyncio.sleep(0.1)
