"""The service posts each pending approval to the Slack webhook once.

Why a loop in the service and not a workflow activity: the workflow already says what awaits approval (its
`status` query, the same the inbox reads), so the poster needs no change to the workflow's history (no
replay patch); a chat outage can neither delay nor fail a decision; and the service already holds the
ledger, the Temporal client and the chat configuration. Durable: a message is recorded as posted in
`<state dir>/chatops-posted.json` (written atomically) only after the webhook answered 2xx, so a webhook or
service outage delays a message and never loses it; a crash between the webhook's answer and the record posts
that one message twice (at least once, never zero). Records older than `KEEP_SECONDS` are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import httpx

from autonomy_controller.controller.service.approvals import Pending, pending_actions
from autonomy_controller.controller.service.chatops import blocks
from autonomy_controller.controller.service.chatops.config import ChatConfig
from autonomy_controller.controller.service.state import Service, Unavailable

POSTED_FILE = "chatops-posted.json"
KEEP_SECONDS = 14 * 24 * 3600
WEBHOOK_TIMEOUT = 10.0
log = logging.getLogger(__name__)


def posted_key(item: Pending) -> str:
    return f"{item.incident}|{item.run_id}|{item.state.action_id}"


class Poster:
    def __init__(self, service: Service, config: ChatConfig) -> None:
        self.service, self.config = service, config
        self.path = service.settings.state_dir / POSTED_FILE
        self.posted: dict[str, float] = _read(self.path)
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
        """Post every pending approval not posted yet; how many were posted now."""
        items = await pending_actions(self.service, self.config.incidents_scanned)
        fresh = [item for item in items if posted_key(item) not in self.posted]
        sent = 0
        for item in fresh:
            if not await self._send(http, item):
                break  # the webhook is failing: keep the order, try the rest next round
            self.posted[posted_key(item)] = time.time()
            self._save()
            sent += 1
        return sent

    async def _send(self, http: httpx.AsyncClient, item: Pending) -> bool:
        metrics = self.service.metrics
        try:
            answer = await http.post(self.config.webhook_url.get_secret_value(), json=blocks.message(item))
        except httpx.HTTPError as exc:  # the URL carries Slack's token: name the failure, never the URL
            log.warning("chatops: the webhook is unreachable (%s); retrying next round", type(exc).__name__)
            metrics.chat_posts.labels("unreachable").inc()
            return False
        if not answer.is_success:
            log.warning("chatops: the webhook answered %s; retrying next round", answer.status_code)
            metrics.chat_posts.labels(str(answer.status_code)).inc()
            return False
        metrics.chat_posts.labels("posted").inc()
        return True

    def _save(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        self.posted = {key: at for key, at in self.posted.items() if at >= cutoff}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=".chatops-", delete=False) as out:
            json.dump({"posted": self.posted}, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(out.name, self.path)


def _read(path: Path) -> dict[str, float]:
    """What was posted; an unreadable record is set aside and posting starts over (at least once, never zero)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        posted = document["posted"]
        return {str(k): float(v) for k, v in posted.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("chatops: %s is unreadable (%s); pending approvals are posted again", path, exc)
        with contextlib.suppress(OSError):
            path.rename(path.with_suffix(".unreadable"))
        return {}
