"""ChatOps configuration: `<state dir>/chatops.yaml` (or `AUTONOMY_CHATOPS_FILE`); no file, no ChatOps.

    slack:
      webhook_url_env: AUTONOMY_SLACK_WEBHOOK_URL        # or webhook_url_file: /etc/autonomy/slack-webhook
      signing_secret_file: /etc/autonomy/slack-signing   # or signing_secret_env: AUTONOMY_SLACK_SIGNING_SECRET
      users: {U012AB3CD: bob, U045EF6GH: carol}          # Slack user id -> identity in identities.yaml
      poll_seconds: 10
      response_url_prefix: https://hooks.slack.com/

or, instead of the webhook, a Slack app's bot token and a channel (`bot_token_env` or `bot_token_file`,
`channel: C0123ABCD`): messages are then posted with the Web API (`chat.postMessage`), which tells where each one
landed, so the service can edit it (`chat.update`) when its action is decided elsewhere (inbox, CLI, deadline).
An incoming webhook cannot edit what it posted.

The webhook URL, the bot token and the signing secret are secrets (the URL carries Slack's token): they are read
from a file or an environment variable, never from the YAML itself, held as `SecretStr` and never put in a log or
an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from autonomy_controller.controller.service.inbox.accounts import AccountError, people

CONFIG_FILE = "chatops.yaml"
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
SLACK_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,20}$")
SLACK_API = "https://slack.com/api/"


class ChatConfigError(ValueError):
    """The ChatOps configuration cannot be used; the message names the field, never a secret's value."""


class ChatConfig(BaseModel):
    """What the service needs to post approvals to Slack and to trust its interaction requests."""

    model_config = ConfigDict(frozen=True)

    webhook_url: SecretStr | None = None
    signing_secret: SecretStr
    bot_token: SecretStr | None = None
    """With `channel`, instead of the webhook: post with chat.postMessage, edit with chat.update."""
    channel: str | None = None
    api_url: str = SLACK_API
    users: dict[str, str] = Field(default_factory=dict)
    """Slack user id -> identity: the only people whose buttons count."""
    poll_seconds: float = 10.0
    """How often the service looks for approvals not yet posted."""
    response_url_prefix: str = "https://hooks.slack.com/"
    """An interaction's `response_url` is only followed (to update the message) when it starts with this."""
    incidents_scanned: int = 200

    @model_validator(mode="after")
    def _one_way_to_post(self) -> ChatConfig:
        if (self.webhook_url is None) == (self.bot_token is None):
            raise ValueError("give exactly one way to post: a webhook URL, or a bot token with a channel")
        if self.bot_token is not None and not (self.channel and SLACK_CHANNEL.fullmatch(self.channel)):
            raise ValueError("a bot token posts to a channel: channel is a Slack channel id (C... or G...)")
        return self


class _SlackFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url_env: str | None = None
    webhook_url_file: Path | None = None
    signing_secret_env: str | None = None
    signing_secret_file: Path | None = None
    bot_token_env: str | None = None
    bot_token_file: Path | None = None
    channel: str | None = None
    api_url: str = SLACK_API
    users: dict[str, str] = Field(default_factory=dict)
    poll_seconds: float = Field(default=10.0, gt=0, le=3600)
    response_url_prefix: str = "https://hooks.slack.com/"


def chat_config_file(state_dir: Path) -> Path:
    named = os.environ.get("AUTONOMY_CHATOPS_FILE")
    return Path(named).expanduser() if named else state_dir / CONFIG_FILE


def load_chat_config(state_dir: Path, identities_file: Path) -> ChatConfig | None:
    """The configuration, None when there is no file (ChatOps off), ChatConfigError when it is unusable."""
    path = chat_config_file(state_dir)
    if not path.is_file():
        return None
    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        slack = _SlackFile.model_validate(document.get("slack") if isinstance(document, dict) else None)
    except (OSError, yaml.YAMLError) as exc:
        raise ChatConfigError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        raise ChatConfigError(f"{path}: slack: {_first(exc)}") from exc
    if not slack.response_url_prefix.startswith("https://") or not slack.response_url_prefix.endswith("/"):
        raise ChatConfigError(
            f"{path}: slack: response_url_prefix is an https:// origin ending in / (a host suffix would otherwise pass)"
        )
    try:
        known = people(identities_file)
    except AccountError as exc:
        raise ChatConfigError(str(exc)) from exc
    if not slack.api_url.startswith("https://") or not slack.api_url.endswith("/"):
        raise ChatConfigError(f"{path}: slack: api_url is an https:// URL ending in / (Slack's is {SLACK_API})")
    bot = slack.bot_token_env is not None or slack.bot_token_file is not None
    webhook = slack.webhook_url_env is not None or slack.webhook_url_file is not None
    if bot == webhook:
        raise ChatConfigError(f"{path}: slack: give a webhook (webhook_url_*) or a bot token (bot_token_*), not both")
    if bot and not (slack.channel and SLACK_CHANNEL.fullmatch(slack.channel)):
        raise ChatConfigError(f"{path}: slack: channel is the Slack channel id the bot posts to (C... or G...)")
    return ChatConfig(
        webhook_url=_secret("webhook_url", slack.webhook_url_env, slack.webhook_url_file, path) if webhook else None,
        bot_token=_secret("bot_token", slack.bot_token_env, slack.bot_token_file, path) if bot else None,
        channel=slack.channel if bot else None,
        api_url=slack.api_url,
        signing_secret=_secret("signing_secret", slack.signing_secret_env, slack.signing_secret_file, path),
        users=checked_users(slack.users, known),
        poll_seconds=slack.poll_seconds,
        response_url_prefix=slack.response_url_prefix,
    )


def checked_users(users: dict[str, str], known: set[str]) -> dict[str, str]:
    """Every Slack user id well formed and mapped to a person (never a service, planner or `svc:` identity)."""
    for user, identity in users.items():
        if not SLACK_USER.fullmatch(user):
            raise ChatConfigError(f"users: {user[:40]!r} is not a Slack user id (U... or W..., capitals and digits)")
        if identity not in known:
            raise ChatConfigError(f"users: {user} maps to {identity[:60]!r}, which is not a person in identities.yaml")
    return dict(users)


def _secret(name: str, env: str | None, file: Path | None, config: Path) -> SecretStr:
    if (env is None) == (file is None):
        raise ChatConfigError(f"{config}: slack: give exactly one of {name}_env and {name}_file")
    if env is not None:
        value = os.environ.get(env, "")
        if not value.strip():
            raise ChatConfigError(f"{config}: slack: {name}_env names {env}, which is not set or empty")
    else:
        assert file is not None
        try:
            value = file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ChatConfigError(f"{config}: slack: {name}_file {file}: {exc.strerror}") from None
        if not value.strip():
            raise ChatConfigError(f"{config}: slack: {name}_file {file} is empty")
    return SecretStr(value.strip())


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or "(top)"
    return f"{where}: {error['msg']}"
