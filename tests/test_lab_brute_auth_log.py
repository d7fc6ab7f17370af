"""The auth-log format (controller/ingest/auth_log.py): which login attempts become brute_force alerts.

No root, no directory: records as the lab's login service writes them (controller/lab/login.py), and its
failure counting (`Counts`) on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autonomy_controller.controller.ingest import Format, IngestError, parse_line
from autonomy_controller.controller.ingest.auth_log import GUESSING_FAILURES
from autonomy_controller.controller.lab.login import WINDOW_SECONDS, Counts, credentials
from autonomy_controller.controller.models import Category, Severity


def line(**overrides: Any) -> str:
    record = {
        "time": "2026-01-01T00:00:00+00:00",
        "event": "authentication",
        "service": "lab-login",
        "request_id": "r1",
        "src_ip": "198.51.100.66",
        "dst_ip": "198.51.100.1",
        "dst_port": 8081,
        "user": "frank",
        "outcome": "failure",
        "source_failures": GUESSING_FAILURES,
        "user_failures_before": GUESSING_FAILURES - 1,
    }
    return json.dumps({**record, **overrides})


def test_a_failure_once_the_source_is_guessing_is_a_low_brute_force_alert() -> None:
    result = parse_line(line(), "auth.json:1")
    (alert,) = result.alerts
    assert result.format is Format.AUTH_LOG
    assert (alert.category, alert.severity, alert.user, alert.src_ip) == (
        Category.BRUTE_FORCE,
        Severity.LOW,
        "frank",
        "198.51.100.66",
    )
    assert alert.rule_ids == ["auth-guessing"]


def test_a_success_after_guessing_is_the_high_guessed_alert() -> None:
    (alert,) = parse_line(line(outcome="success", user_failures_before=GUESSING_FAILURES), "x").alerts
    assert (alert.severity, alert.rule_ids, alert.user) == (Severity.HIGH, ["auth-guessed"], "frank")
    assert "succeeded" in (alert.signature or "")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"source_failures": GUESSING_FAILURES - 1}, "mistyped"),
        ({"outcome": "success", "user_failures_before": GUESSING_FAILURES - 1}, "no guessing"),
        ({"outcome": "success", "user_failures_before": 0}, "no guessing"),
        ({"outcome": "error"}, "directory error"),
    ],
)
def test_ordinary_attempts_are_valid_records_without_an_alert(overrides: dict[str, Any], reason: str) -> None:
    result = parse_line(line(**overrides), "x")
    assert result.alerts == [] and reason in (result.skipped or "")


def test_a_user_name_no_identity_action_could_take_names_no_account() -> None:
    (alert,) = parse_line(line(user="frank,ou=admins"), "x").alerts
    assert alert.user is None and alert.raw["user"] == "frank,ou=admins"


@pytest.mark.parametrize(
    "overrides",
    [{"outcome": "maybe"}, {"source_failures": -1}, {"source_failures": "many"}, {"src_ip": "not-an-ip"}],
)
def test_a_broken_record_is_an_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(IngestError):
        parse_line(line(**overrides), "x")


def test_the_service_counts_failures_in_a_row_per_source_and_per_account() -> None:
    counts = Counts()
    assert counts.record("a", "frank", False, 0.0) == (1, 0)
    assert counts.record("a", "grace", False, 1.0) == (2, 0), "a spray: the source's run spans accounts"
    assert counts.record("b", "frank", False, 1.0) == (1, 0), "another source has its own"
    assert counts.record("a", "frank", False, 2.0) == (3, 1)
    assert counts.record("a", "frank", True, 3.0) == (0, 2), "the success sees the failures before it"
    assert counts.record("a", "frank", False, 4.0) == (1, 0), "... and ends the run"
    assert counts.record("a", "frank", None, 5.0) == (1, 1), "a directory error counts neither way"
    assert counts.record("a", "frank", False, 4.0 + WINDOW_SECONDS + 1) == (1, 0), "old failures are forgotten"


def test_only_basic_credentials_with_a_colon_are_read() -> None:
    assert credentials("Basic ZnJhbms6cHc6eA==") == ("frank", "pw:x")
    assert credentials("Basic ZnJhbms=") is None
    assert credentials("Basic !!") is None
    assert credentials("Bearer x") is None
    assert credentials(None) is None
