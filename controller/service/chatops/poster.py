"""The service posts each pending approval to Slack once, and with a bot token edits it once it is decided.

Why a loop in the service and not a workflow activity: the workflow already says what awaits approval (its
`status` query, the same the inbox reads), so the poster needs no change to the workflow's history (no
replay patch); a chat outage can neither delay nor fail a decision; and the service already holds the
ledger, the Temporal client and the chat configuration. Durable: a message is recorded as posted in
`<state dir>/chatops-posted.json` (written atomically) only after the webhook answered 2xx, so a webhook or
service outage delays a message and never loses it; a crash between the webhook's answer and the record posts
that one message twice (at least once, never zero). Records older than `KEEP_SECONDS` are pruned.

Decided elsewhere: with a bot token (chatops.yaml) a message is posted with `chat.postMessage`, whose answer says
where it landed (channel, ts). When a posted action no longer awaits approval (voted in the inbox or the CLI,
rejected, past its deadline, its run ended), the next round reads the incident's status and replaces the
message with `chat.update`: the outcome and the votes, no buttons, so nobody presses a button that can only be
refused. A failed edit is retried next round; an edited message is not edited again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from autonomy_controller.controller.service.approvals import Pending, details, pending_actions
from autonomy_controller.controller.service.chatops import blocks
from autonomy_controller.controller.service.chatops.config import ChatConfig
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.workflows.contracts import ActionStatus
from autonomy_controller.workflows.operations import LoopError, describe_and_read

POSTED_FILE = "chatops-posted.json"
KEEP_SECONDS = 14 * 24 * 3600
WEBHOOK_TIMEOUT = 10.0
log = logging.getLogger(__name__)


def posted_key(item: Pending) -> str:
    return f"{item.incident}|{item.run_id}|{item.state.action_id}"


@dataclass
class Posted:
    """A message sent: when, and (posted with a bot token) where, so that it can be edited once."""

    at: float
    channel: str | None = None
    ts: str | None = None
    closed: bool = False
    """Edited to its outcome: nothing more to do."""

    @property
    def editable(self) -> bool:
        return self.ts is not None and self.channel is not None and not self.closed


class Poster:
    def __init__(self, service: Service, config: ChatConfig) -> None:
        self.service, self.config = service, config
        self.path = service.settings.state_dir / POSTED_FILE
        self.posted: dict[str, Posted] = _read(self.path)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="chatops-poster")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as http:
            while True:
                try:
                    await self.post_pending(http)
                except Unavailable as exc:
                    log.warning("chatops: Temporal does not answer, nothing posted this round: %s", exc)
                except Exception:  # a bug must not stop the loop: the next round tries again
                    log.exception("chatops: posting pending approvals failed")
                await asyncio.sleep(self.config.poll_seconds)

    async def post_pending(self, http: httpx.AsyncClient) -> int:
        """Post every pending approval not posted yet, then edit the messages of those decided elsewhere; how
        many were posted now."""
        items = await pending_actions(self.service, self.config.incidents_scanned)
        fresh = [item for item in items if posted_key(item) not in self.posted]
        sent = 0
        for item in fresh:
            posted = await self._send(http, item)
            if posted is None:
                break  # Slack is failing: keep the order, try the rest next round
            self.posted[posted_key(item)] = posted
            self._save()
            sent += 1
        still = {posted_key(item) for item in items}
        for key in [key for key, posted in self.posted.items() if posted.editable and key not in still]:
            if not await self._close(http, key):
                break
        return sent

    async def _send(self, http: httpx.AsyncClient, item: Pending) -> Posted | None:
        if self.config.bot_token is not None:
            landed = await self._api(http, "chat.postMessage", {"channel": self.config.channel, **blocks.message(item)})
            return None if landed is None else Posted(time.time(), str(landed["channel"]), str(landed["ts"]))
        assert self.config.webhook_url is not None  # ChatConfig holds one of the two
        metrics = self.service.metrics
        try:
            answer = await http.post(self.config.webhook_url.get_secret_value(), json=blocks.message(item))
        except httpx.HTTPError as exc:  # the URL carries Slack's token: name the failure, never the URL
            log.warning("chatops: the webhook is unreachable (%s); retrying next round", type(exc).__name__)
            metrics.chat_posts.labels("unreachable").inc()
            return None
        if not answer.is_success:
            log.warning("chatops: the webhook answered %s; retrying next round", answer.status_code)
            metrics.chat_posts.labels(str(answer.status_code)).inc()
            return None
        metrics.chat_posts.labels("posted").inc()
        return Posted(time.time())

    async def _close(self, http: httpx.AsyncClient, key: str) -> bool:
        """Replace the message of an action decided elsewhere with its outcome; False when Slack failed."""
        posted = self.posted[key]
        incident, run_id, action_id = key.rsplit("|", 2)
        try:
            _, status = await describe_and_read(await self.service.client(), incident)
        except LoopError as exc:  # Temporal or the worker: try again next round
            log.info("chatops: the status of %s is not readable now (%s)", incident, exc)
            return True
        state = next((a for a in status.actions if a.action_id == action_id), None)
        if state is not None and state.status in (ActionStatus.EXECUTING, ActionStatus.AWAITING_APPROVAL):
            # executing: edit once, with where it ended, next round. Awaiting: still pending (an incident past
            # the scanned window, or carried to a newer run, whose own message is posted): the buttons still serve
            # or are refused by the workflow, naming the earlier run
            return True
        if state is None:
            text = f"{action_id} of {incident} no longer awaits approval"
            update: dict[str, Any] = {
                "text": text,
                "blocks": [{"type": "section", "text": blocks.mrkdwn(blocks.escape(text))}],
            }
        else:
            (item,) = await asyncio.to_thread(details, self.service, incident, run_id, [state])
            update = blocks.message(item, f"Decided outside Slack: now *{state.status.value}*")
        answer = await self._api(http, "chat.update", {"channel": posted.channel, "ts": posted.ts, **update})
        if answer is None:
            return False
        posted.closed = True
        self._save()
        return True

    async def _api(self, http: httpx.AsyncClient, method: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A Slack Web API call with the bot token: its answer when Slack says ok, else None (logged, counted)."""
        assert self.config.bot_token is not None
        metrics = self.service.metrics
        headers = {"Authorization": f"Bearer {self.config.bot_token.get_secret_value()}"}
        try:
            answer = await http.post(f"{self.config.api_url}{method}", json=body, headers=headers)
            document = answer.json() if answer.is_success else {"error": f"status {answer.status_code}"}
        except (httpx.HTTPError, ValueError) as exc:  # never log the token
            log.warning("chatops: Slack's %s failed (%s); retrying next round", method, type(exc).__name__)
            metrics.chat_posts.labels("unreachable").inc()
            return None
        if not isinstance(document, dict) or document.get("ok") is not True:
            error = document.get("error") if isinstance(document, dict) else "not JSON"
            log.warning("chatops: Slack's %s answered %r; retrying next round", method, str(error)[:80])
            metrics.chat_posts.labels("refused").inc()
            return None
        metrics.chat_posts.labels("posted" if method == "chat.postMessage" else "edited").inc()
        return document

    def _save(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        self.posted = {key: posted for key, posted in self.posted.items() if posted.at >= cutoff}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".chatops-", delete=False) as out:
            json.dump({"posted": {key: asdict(posted) for key, posted in self.posted.items()}}, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(out.name, self.path)


def _read(path: Path) -> dict[str, Posted]:
    """What was posted; an unreadable record is set aside and posting starts over (at least once, never zero).
    A bare time is a record from before messages could be edited."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        posted = document["posted"]
        return {str(k): Posted(float(v)) if isinstance(v, int | float) else Posted(**v) for k, v in posted.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("chatops: %s is unreadable (%s); pending approvals are posted again", path, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".unreadable"))
        return {}
