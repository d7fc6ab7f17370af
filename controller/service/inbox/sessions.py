"""Signed session cookies and CSRF tokens for the inbox, from one service-held secret (stdlib HMAC-SHA256).

A session cookie is `<base64url JSON>.<base64url HMAC>`: the account, the account's `stamp` (so passwd and
disable end sessions), an expiry and a random session id. It is HttpOnly, SameSite=Strict, Path=/inbox, and
Secure unless the service is configured for plain http (tests on 127.0.0.1). The CSRF token of a form is an
HMAC of the session id under a separate purpose label: it is not in any cookie, so another site can neither
read nor forge it, and a form posted without it (or with another session's) is refused. The sign-in form,
posted before any session exists, is bound the same way to a short-lived pre-session cookie.

The secret is `<state dir>/inbox-session.key` (32 random bytes, 0600, made on first use): deleting it signs
everyone out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

SECRET_BYTES = 32


@dataclass(frozen=True)
class Session:
    account: str
    stamp: str
    sid: str
    expires: int


def load_secret(path: Path) -> bytes:
    """The signing secret, made (0600, exclusive create) when missing; a short or unreadable one is an error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"{path}: session secret shorter than {SECRET_BYTES} bytes") from None
        return secret
    secret = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode() + b"\n" + data, hashlib.sha256).digest()

    def seal(self, purpose: str, payload: dict[str, object]) -> str:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(purpose, body))}"

    def open(self, purpose: str, value: str | None) -> dict[str, object] | None:
        """The payload of a value this signer sealed for `purpose` and that has not expired, else None."""
        if not value or value.count(".") != 1 or len(value) > 4_096:
            return None
        body_text, mac_text = value.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            payload = json.loads(body)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("expires"), int):
            return None
        return payload if payload["expires"] > time.time() else None

    def session(self, value: str | None) -> Session | None:
        payload = self.open("session", value)
        if payload is None:
            return None
        account, stamp, sid, expires = (payload.get(k) for k in ("account", "stamp", "sid", "expires"))
        if not (isinstance(account, str) and isinstance(stamp, str) and isinstance(sid, str)):
            return None
        assert isinstance(expires, int)  # open() admits only payloads with an int expiry
        return Session(account, stamp, sid, expires)

    def new_session(self, account: str, stamp: str, lifetime: int) -> tuple[Session, str]:
        session = Session(account, stamp, secrets.token_urlsafe(16), int(time.time()) + lifetime)
        cookie = self.seal(
            "session",
            {"account": account, "stamp": stamp, "sid": session.sid, "expires": session.expires},
        )
        return session, cookie

    def csrf(self, sid: str) -> str:
        """The CSRF token of every form in the session (or pre-session) `sid`."""
        return _b64(self._mac("csrf", sid.encode()))

    def csrf_ok(self, sid: str, presented: str | None) -> bool:
        """Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)."""
        wanted, given = self.csrf(sid).encode(), (presented or "").encode("utf-8", "replace")
        return bool(given) and hmac.compare_digest(wanted, given)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
