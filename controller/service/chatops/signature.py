"""Slack's request signature: `v0=` HMAC-SHA256 under the signing secret over `v0:{timestamp}:{body}`.

A request is trusted only when its signature verifies (constant-time compare), its timestamp is within five
minutes of our clock (either way), and that signature was not seen before within the window: a captured
request replayed is refused even while fresh. The seen set lives in memory for the window's length; after a
restart a replay within the window reaches the workflow, which refuses a second vote from the same person.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict

WINDOW_SECONDS = 300
VERSION = "v0"


class SignatureRefused(ValueError):
    """Why a request is not trusted as Slack's (unsigned, malformed, stale, wrong signature, replayed)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Slack-Signature` value Slack sends for this timestamp and body."""
    base = f"{VERSION}:{timestamp}:".encode() + body
    return f"{VERSION}=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class Verifier:
    def __init__(self, secret: str, window: int = WINDOW_SECONDS) -> None:
        self._secret = secret
        self.window = window
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __repr__(self) -> str:  # the secret never reaches a log through a repr
        return f"Verifier(window={self.window})"

    def verify(self, timestamp: str | None, signature: str | None, body: bytes, now: float | None = None) -> None:
        """Return when the request is Slack's and fresh and new; else SignatureRefused saying which check failed."""
        now = time.time() if now is None else now
        if not timestamp or not signature:
            raise SignatureRefused("unsigned: X-Slack-Request-Timestamp and X-Slack-Signature are required")
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            raise SignatureRefused("X-Slack-Request-Timestamp is not a Unix time in seconds")
        if abs(now - int(timestamp)) > self.window:
            raise SignatureRefused(f"stale: the request's timestamp is more than {self.window} s from now")
        if not hmac.compare_digest(sign(self._secret, timestamp, body).encode(), signature.encode("utf-8", "replace")):
            raise SignatureRefused("the signature does not verify under the signing secret")
        self._forget(now)
        if signature in self._seen:
            raise SignatureRefused("replayed: this signed request was already received")
        self._seen[signature] = int(timestamp)

    def _forget(self, now: float) -> None:
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self.window:
                break
            del self._seen[oldest]
