"""A login service's authentication log as JSON lines: password guessing, and guessing that succeeded.

One record per login attempt, written by the service that checked the password (the lab's login service,
controller/lab/login.py, writes exactly this; any service can). The counts are the *service's* own, over a
window it keeps, never the client's word: how many failures this source had in a row (any account), and how
many it had against this account before this attempt.

    {"time": "2026-01-01T00:00:00+00:00", "event": "authentication", "service": "lab-login",
     "src_ip": "198.51.100.66", "dst_ip": "198.51.100.1", "dst_port": 8081, "user": "frank",
     "outcome": "failure", "source_failures": 4, "user_failures_before": 3, "request_id": "..."}

What becomes an alert (category brute_force, classify.classify_auth):
- a failure once the source has failed GUESSING_FAILURES times in a row (fewer is a person mistyping);
- a success after at least GUESSING_FAILURES failures from that source against that account: the guessing
  succeeded (rule AUTH_GUESSED, high severity), the fact the brute-force-account playbook acts on.
Every other attempt (a first-try login, a failure or two, a directory error) is a valid record without an alert.
A user name that is not a plain account name (UserName) is kept in raw only: the alert names no account, so
nothing is ever done to one an attacker spelt oddly.

Detected by `event: authentication` with `outcome` and `src_ip`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import TypeAdapter, ValidationError

from autonomy_controller.actions.params import UserName
from autonomy_controller.controller.ingest import fields
from autonomy_controller.controller.ingest.classify import AUTH_FAILURES, AUTH_GUESSED, classify_auth
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import Record
from autonomy_controller.controller.ingest.normalise import bounded_raw, content_id, evidence, make_alert, stable_id
from autonomy_controller.controller.models import Alert

SOURCE = "auth-log"
EVENT = "authentication"
GUESSING_FAILURES = 3
"""Failures in a row from one source before its attempts count as guessing (and a success after as guessed)."""
Outcome = Literal["success", "failure", "error"]
OUTCOMES: tuple[Outcome, ...] = ("success", "failure", "error")
_ACCOUNT: TypeAdapter[str] = TypeAdapter(UserName)
"""The names an identity action accepts."""


def looks_like(record: Record) -> bool:
    return record.get("event") == EVENT and "outcome" in record and "src_ip" in record


def _outcome(record: Record) -> Outcome:
    value = record.get("outcome")
    for outcome in OUTCOMES:
        if value == outcome:
            return outcome
    raise IngestError(f"field outcome must be one of {', '.join(OUTCOMES)}, got {value!r:.40}")


def _count(record: Record, name: str) -> int:
    value = fields.optional_int(record, name)
    if value is None or value < 0:
        raise IngestError(f"field {name} must be a whole number of at least 0, got {record.get(name)!r:.40}")
    return value


def guessed(record: Record) -> bool:
    """A success after the source's guessing against this very account: the service's counts say so."""
    return _outcome(record) == "success" and _count(record, "user_failures_before") >= GUESSING_FAILURES


def skip_reason(record: Record) -> str | None:
    outcome = _outcome(record)
    if outcome == "error":
        return "the service could not check the password (directory error): not an attempt's outcome"
    if outcome == "success" and not guessed(record):
        before = _count(record, "user_failures_before")
        return f"a login that succeeded after {before} failure(s): fewer than {GUESSING_FAILURES} is no guessing"
    if outcome == "failure" and _count(record, "source_failures") < GUESSING_FAILURES:
        return f"fewer than {GUESSING_FAILURES} failures in a row from this source: a mistyped password"
    return None


def account_name(user: str | None) -> str | None:
    """`user` when it is an account name an identity action could take, else None."""
    if user is None:
        return None
    try:
        return _ACCOUNT.validate_python(user)
    except ValidationError:
        return None


def account(record: Record) -> str | None:
    """The account the attempt was for, when it is one an identity action could name."""
    return account_name(fields.optional_text(record, "user"))


def parse(record: Record) -> Alert:
    success = guessed(record)
    verdict = classify_auth(success)
    rule = AUTH_GUESSED if success else AUTH_FAILURES
    user = account(record)
    service = fields.optional_text(record, "service") or "login service"
    request_id = fields.optional_text(record, "request_id")
    counts = (
        f"{_count(record, 'user_failures_before')} failures against the account before it"
        if success
        else f"{_count(record, 'source_failures')} failures in a row from this source"
    )
    what = "login succeeded after password guessing" if success else "login failed during password guessing"
    return make_alert(
        id=stable_id(SOURCE, request_id) if request_id else content_id(SOURCE, record),
        source=SOURCE,
        observed_at=fields.iso_time(record.get("time"), "time"),
        category=verdict.category,
        severity=verdict.severity,
        confidence=verdict.confidence,
        src_ip=fields.ip(record.get("src_ip"), "src_ip"),
        dst_ip=fields.optional_ip(record.get("dst_ip"), "dst_ip"),
        dst_port=fields.port(record.get("dst_port"), "dst_port"),
        user=user,
        rule_ids=[rule],
        signature=f"{service}: {what}",
        src_connected=True,  # a login exchange: the service answered the address it logs
        evidence_text=evidence([f"{what} ({counts})", None if user else "account name not usable (kept in raw)"]),
        raw=bounded_raw(record),
    )
