"""notify.webhook: POST a JSON message to a configured channel, at most once per idempotency key.

HTTP gives no exactly-once, so two things make a retried activity harmless. A local delivery journal (one
marker file per key) records that a POST started and, after a 2xx, that it was delivered: a retry of a
delivered key answers ALREADY_DONE without posting. A crash between the POST and the journal entry cannot
be told apart from a lost request, so that case posts again, carrying the same `Idempotency-Key` header
for receivers that deduplicate, and the outcome says so.

Channel URLs can embed secrets (many chat webhooks put the token in the path), so outcomes, evidence and
errors name the channel and host, never the full URL: they end up in the audit ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from autonomy_controller.actions.adapters._common import (
    check_action,
    create_if_absent,
    fsync_dir,
    key_digest,
    parse_params,
    read_json,
    utc_now_iso,
)
from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.params import WebhookParams
from autonomy_controller.controller.validation import read_yaml_model

ACTION = "notify.webhook"
USER_AGENT = "autonomy-controller/0.1 (notify.webhook)"

ChannelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]


class ChannelsConfigError(AdapterError):
    """The channels file is missing or malformed: a permanent failure until an operator fixes the file."""


class Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: AnyHttpUrl
    timeout_seconds: float = Field(default=5.0, gt=0, le=120)


class ChannelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: dict[ChannelName, Channel]


def load_channels(path: Path) -> dict[str, Channel]:
    """Parse and validate the channels file; every error names the file and the offending key."""
    channels = read_yaml_model(path, ChannelsFile, ChannelsConfigError)
    if channels is None:
        raise ChannelsConfigError(
            f"channels file {path} not found: notify.webhook needs `channels: {{<name>: {{url: ...}}}}`"
        )
    return channels.channels


class DeliveryJournal:
    """Per key: `<digest>.sending` (created with O_EXCL before the POST) and `<digest>.done` (after a 2xx)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, idempotency_key: str, suffix: str) -> Path:
        return self.directory / f"{key_digest(idempotency_key)}.{suffix}"

    def delivered(self, idempotency_key: str) -> dict[str, Any] | None:
        """The completion entry for this key, or None; an entry for another key (digest clash) is an error."""
        path = self._path(idempotency_key, "done")
        try:
            entry = read_json(path)
        except FileNotFoundError:
            return None
        if entry.get("idempotency_key") != idempotency_key:
            raise AdapterError(f"delivery journal entry {path} belongs to another idempotency key")
        return entry

    def begin(self, idempotency_key: str, channel: str) -> bool:
        """Mark a send as started; False when a marker was already there (an earlier attempt did not finish)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(idempotency_key, "sending")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"idempotency_key": idempotency_key, "channel": channel, "started_at": utc_now_iso()}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(self.directory)
        return True

    def abandon(self, idempotency_key: str) -> None:
        """The POST certainly did not deliver (refused connection, error status): forget that it started."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(idempotency_key, "sending"))

    def complete(self, idempotency_key: str, entry: dict[str, Any]) -> None:
        """Record the delivery; a concurrent duplicate that completed first has already recorded an equal fact."""
        create_if_absent(self._path(idempotency_key, "done"), {**entry, "idempotency_key": idempotency_key})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(idempotency_key, "sending"))


class WebhookAdapter:
    """Posts to the channels in `channels_file` (re-read per call, so an edit applies without a restart and a
    missing file fails only notify actions), journaling deliveries under `journal_dir`."""

    action: str = ACTION

    def __init__(self, channels_file: Path, journal_dir: Path) -> None:
        self.channels_file = channels_file
        self.journal = DeliveryJournal(journal_dir)

    def channel(self, name: str) -> Channel:
        channels = load_channels(self.channels_file)
        if name not in channels:
            known = ", ".join(sorted(channels)) or "none"
            raise AdapterError(f"unknown channel {name!r}: not in {self.channels_file} (configured: {known})")
        return channels[name]

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, ACTION)
        params = parse_params(request, WebhookParams)
        key = request.idempotency_key
        done = self.journal.delivered(key)  # before reading config: a delivered message stays delivered
        if done is not None:
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE,
                detail=f"already delivered to {params.channel} at {done.get('delivered_at')}; not posted again",
                reference=f"HTTP {done.get('status')}",
                evidence={"channel": params.channel, "status": done.get("status")},
            )
        channel = self.channel(params.channel)
        evidence: dict[str, Any] = {"channel": params.channel, "host": channel.url.host}
        fresh = self.journal.begin(key, params.channel)
        body = {
            "incident_key": request.incident_key,
            "action_id": request.action_id,
            "channel": params.channel,
            "message": params.message,
            "idempotency_key": key,
            "sent_at": utc_now_iso(),
        }
        response = self._post(params.channel, channel, body, key, fresh)
        status = response.status_code
        evidence["status"] = status
        if 200 <= status < 300:
            self.journal.complete(
                key, {"channel": params.channel, "status": status, "delivered_at": utc_now_iso(), "resent": not fresh}
            )
            note = (
                ""
                if fresh
                else "; an earlier attempt started but never recorded a result, so this was posted again "
                "with the same Idempotency-Key (a receiver that honours it drops the duplicate)"
            )
            return ActionOutcome(
                status=ActionStatus.DONE,
                detail=f"posted to {params.channel} ({channel.url.host}): HTTP {status}{note}",
                reference=f"HTTP {status}",
                evidence={**evidence, "resent": not fresh},
            )
        if fresh:  # the receiver answered and refused: a retry is a first attempt again, not a re-send
            self.journal.abandon(key)
        what = f"{params.channel} ({channel.url.host}) answered HTTP {status} {response.reason_phrase}".rstrip()
        if status == 429 or status >= 500:
            raise TransientAdapterError(what)
        raise AdapterError(what)

    def _post(self, name: str, channel: Channel, body: dict[str, Any], key: str, fresh: bool) -> httpx.Response:
        """One POST; transport failures become transient errors, and only an ambiguous one keeps the marker."""
        headers = {"Idempotency-Key": key, "User-Agent": USER_AGENT}
        where = f"{name} ({channel.url.host})"
        try:
            with httpx.Client(timeout=channel.timeout_seconds, follow_redirects=False) as client:
                return client.post(str(channel.url), json=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if fresh:  # never reached the receiver
                self.journal.abandon(key)
            raise TransientAdapterError(f"cannot connect to {where}: {type(exc).__name__}") from None
        except httpx.TimeoutException as exc:
            raise TransientAdapterError(
                f"{where} did not answer within {channel.timeout_seconds}s ({type(exc).__name__}); "
                "it may have received the message"
            ) from None
        except httpx.TransportError as exc:
            raise TransientAdapterError(f"posting to {where} failed: {type(exc).__name__}: {exc}") from None

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        """The journal, not the receiver, is what we can read back: it must show a 2xx delivery for this key."""
        try:
            entry = self.journal.delivered(request.idempotency_key)
        except AdapterError as exc:
            return VerifyOutcome(ok=False, detail=str(exc))
        if entry is None:
            return VerifyOutcome(ok=False, detail="the delivery journal has no completed delivery for this key")
        status = entry.get("status")
        evidence = {"channel": entry.get("channel"), "status": status, "delivered_at": entry.get("delivered_at")}
        if not isinstance(status, int) or not 200 <= status < 300:
            return VerifyOutcome(ok=False, detail=f"journal shows HTTP {status}, not 2xx", evidence=evidence)
        return VerifyOutcome(ok=True, detail=f"delivered to {entry.get('channel')}: HTTP {status}", evidence=evidence)
