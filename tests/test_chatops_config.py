"""ChatOps without the loop: Slack's request signature and the configuration's secrets and user map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service.chatops import ChatConfigError, load_chat_config
from autonomy_controller.controller.service.chatops.signature import SignatureRefused, Verifier

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def test_slacks_documented_signature_verifies_and_a_changed_byte_does_not() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"  # Slack's own example
    Verifier(SECRET).verify("1531420618", signature, body, now=1531420618 + 299)
    with pytest.raises(SignatureRefused, match="does not verify"):
        Verifier(SECRET).verify("1531420618", signature, body.replace(b"foobar", b"foobaz"), now=1531420618)
    with pytest.raises(SignatureRefused, match="stale"):
        Verifier(SECRET).verify("1531420618", signature, body, now=1531420618 + 301)
    assert SECRET not in repr(Verifier(SECRET))


def _write_config(state_dir: Path, slack: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "chatops.yaml").write_text(json.dumps({"slack": slack}))


def test_the_config_reads_secrets_from_a_file_or_the_environment_and_never_shows_them(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    identities = data_file(settings.policies_dir, "identities")
    assert load_chat_config(tmp_path, identities) is None  # no file: ChatOps off
    (tmp_path / "signing").write_text(SECRET + "\n")
    monkeypatch.setenv("HOOK_URL", "https://hooks.slack.com/services/T0/B0/sekrit-token")
    _write_config(
        tmp_path,
        {"webhook_url_env": "HOOK_URL", "signing_secret_file": str(tmp_path / "signing"), "users": {"U0BOB": "bob"}},
    )
    config = load_chat_config(tmp_path, identities)
    assert config is not None and config.signing_secret.get_secret_value() == SECRET
    assert config.webhook_url.get_secret_value().endswith("sekrit-token") and config.users == {"U0BOB": "bob"}
    assert SECRET not in repr(config) and "sekrit" not in repr(config) and "sekrit" not in str(config)

    for slack, problem in (
        ({"webhook_url_env": "HOOK_URL", "signing_secret_env": "UNSET_VAR"}, "names UNSET_VAR, which is not set"),
        ({"webhook_url_env": "HOOK_URL"}, "exactly one of signing_secret_env and signing_secret_file"),
        (
            {"webhook_url_env": "HOOK_URL", "signing_secret_env": "HOOK_URL", "users": {"U0X": "planner:offline"}},
            "not a person",
        ),
        (
            {"webhook_url_env": "HOOK_URL", "signing_secret_env": "HOOK_URL", "users": {"U0X": "svc:controller"}},
            "not a person",
        ),
        (
            {"webhook_url_env": "HOOK_URL", "signing_secret_env": "HOOK_URL", "users": {"bob": "bob"}},
            "not a Slack user id",
        ),
        ({"webhook_url_env": "HOOK_URL", "signing_secret_env": "HOOK_URL", "webhook_url": "x"}, "webhook_url"),
        (
            {
                "webhook_url_env": "HOOK_URL",
                "signing_secret_env": "HOOK_URL",
                "response_url_prefix": "https://hooks.slack.com",
            },
            "response_url_prefix",
        ),
    ):
        _write_config(tmp_path, slack)
        with pytest.raises(ChatConfigError, match=problem) as caught:
            load_chat_config(tmp_path, identities)
        assert "sekrit" not in str(caught.value)


def test_serve_refuses_to_start_with_an_unusable_chatops_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from autonomy_controller.controller.cli import app

    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HOOK_URL", "https://hooks.slack.com/services/T0/B0/sekrit-token")
    _write_config(tmp_path, {"webhook_url_env": "HOOK_URL", "signing_secret_env": "UNSET_VAR"})
    result = CliRunner().invoke(app, ["serve", "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "ChatOps:" in result.output and "UNSET_VAR" in result.output and "sekrit" not in result.output
