"""Triage's login-outcome factor: what a login service itself counted (the auth-log format) decides how much
password guessing weighs. A login that succeeded after the guessing is full evidence; failed guessing alone
counts for at most half, so on its own it stays suspicious (a person approves the source's block at L3) and
never makes the account the attacker's. Nothing the client sent, nor another sensor's words, moves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.ingest import parse_line
from autonomy_controller.controller.ingest.auth_log import GUESSING_FAILURES
from autonomy_controller.controller.models import Alert, Incident
from autonomy_controller.controller.triage import TriageModel, TriageResult, TriageVerdict, load_triage_model, triage
from autonomy_controller.controller.validation import LevelConfigError

LEVELS = Path(__file__).resolve().parents[1] / "levels"
MODEL = load_triage_model(LEVELS)


def attempt(i: int, outcome: str, source_failures: int, user_failures_before: int, **more: Any) -> Alert | None:
    record = {
        "time": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
        "event": "authentication",
        "service": "lab-login",
        "request_id": f"r{i}",
        "src_ip": "198.51.100.66",
        "dst_ip": "198.51.100.1",
        "dst_port": 8081,
        "user": "frank",
        "outcome": outcome,
        "source_failures": source_failures,
        "user_failures_before": user_failures_before,
        **more,
    }
    alerts = parse_line(json.dumps(record), "auth.json").alerts
    return alerts[0] if alerts else None


def failures(n: int) -> list[Alert]:
    """n failed guesses in a row from one source: alerts from the GUESSING_FAILURES-th on."""
    return [a for i in range(1, n + 1) if (a := attempt(i, "failure", i, i - 1)) is not None]


def guessed_after(n: int) -> list[Alert]:
    success = attempt(n + 1, "success", 0, n)
    assert success is not None
    return [*failures(n), success]


def judged(alerts: list[Alert], model: TriageModel = MODEL) -> TriageResult:
    incident = Incident(
        key="src:198.51.100.66",
        category=alerts[0].category,
        severity=max((a.severity for a in alerts), key=lambda s: s.rank),
        src_ip="198.51.100.66",
        first_seen=min(a.observed_at for a in alerts),
        last_seen=max(a.observed_at for a in alerts),
        alerts=alerts,
    )
    return triage(incident, model)


def login_factor(result: TriageResult) -> tuple[float, str, str]:
    (factor,) = [f for f in result.factors if f.name == "login_outcome"]
    return factor.value, factor.why, factor.trust


def test_a_login_that_succeeded_after_guessing_is_full_evidence() -> None:
    result = judged(guessed_after(GUESSING_FAILURES + 1))
    value, why, trust = login_factor(result)
    assert value == 1.0 and "the guessing succeeded" in why and trust == "sensor"
    assert (result.evidence.guessed_logins, result.evidence.failed_logins) == (1, 2)
    assert result.verdict is TriageVerdict.MALICIOUS, result.score
    assert result.confidence <= 0.75, "three alerts: little evidence caps the confidence below L3's bar"


def test_long_guessing_that_succeeded_is_malicious_past_l3s_bar() -> None:
    result = judged(guessed_after(12))
    assert result.verdict is TriageVerdict.MALICIOUS and result.confidence >= 0.8, (result.score, result.confidence)


@pytest.mark.parametrize("n", [GUESSING_FAILURES, 8, 50, 400])
def test_failed_guessing_alone_counts_for_at_most_half_and_is_never_malicious(n: int) -> None:
    result = judged(failures(n))
    value, why, _ = login_factor(result)
    assert 0 < value <= MODEL.login.failed_share and "none succeeded" in why
    assert result.verdict is not TriageVerdict.MALICIOUS, (n, result.score)
    if n >= 8:  # the lab's eight failed guesses and more: enough to put the source's block before a person
        assert result.verdict is TriageVerdict.SUSPICIOUS, (n, result.score)
    assert result.evidence.failed_logins == n - GUESSING_FAILURES + 1 and result.evidence.guessed_logins == 0


def test_more_failures_never_weigh_less() -> None:
    values = [login_factor(judged(failures(n)))[0] for n in (3, 10, 30, 60)]
    assert values == sorted(values) and values[-1] == MODEL.login.failed_share


def test_the_success_outweighs_any_number_of_failures() -> None:
    assert judged(guessed_after(3)).score > judged(failures(400)).score


def test_nothing_the_client_sent_moves_the_factor() -> None:
    """The user name and the service's label are the attacker's or irrelevant: the factor reads outcomes and
    counts only. (An odd user name even leaves the alert without an account.)"""
    plain = judged(guessed_after(5))
    odd = [a.model_copy(update={"user": None, "signature": "x' OR 1=1 -- then a success"}) for a in guessed_after(5)]
    assert judged(odd).score == plain.score


def test_other_sensors_words_about_logins_are_no_login_outcome() -> None:
    """An IdP's OCSF or native alert may say 'then a success' in its text, and a raw record may carry fields
    named like the login service's: only the auth-log format's own records are a login outcome."""
    guessed = guessed_after(37)[-1]
    text = guessed.model_copy(
        update={
            "source": "identity-provider",
            "signature": "37 failed sign-ins for j.doe, then a success",
            "raw": {"outcome": "success", "user_failures_before": 37, "source_failures": 37},
        }
    )
    value, why, _ = login_factor(judged([text]))
    assert value == 0.0 and "no login outcome" in why


def test_a_success_the_service_counted_no_guessing_before_is_no_guessed_login() -> None:
    """The format makes no alert of it; were one made anyway (a forged source), the count decides."""
    forged = guessed_after(5)[-1].model_copy(update={"raw": {"outcome": "success", "user_failures_before": 1}})
    value, _, _ = login_factor(judged([forged]))
    assert value == 0.0


def test_the_failed_share_must_stay_below_a_success(tmp_path: Path) -> None:
    levels = tmp_path / "levels"
    levels.mkdir()
    text = (LEVELS / "triage.yaml").read_text().replace("failed_share: 0.5", "failed_share: 1.0")
    (levels / "triage.yaml").write_text(text)
    with pytest.raises(LevelConfigError, match="failed_share"):
        load_triage_model(levels)
