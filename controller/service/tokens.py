"""Per-sender bearer tokens: named, scoped, revocable, and stored only as their SHA-256.

The file (`<state dir>/api-tokens.json`, or AUTONOMY_API_TOKENS_FILE) is what an admin manages with
`autonomy tokens add|list|revoke`; the service re-reads it when it changes, so a revocation takes effect on
the next request without a restart. A token is 32 random bytes: a plain SHA-256 is enough to store it (no
password stretching needed for a secret nobody chose), and a leaked file reveals no usable token.

A token with the ingest scope may also name the sources its sender speaks for (`trust_native`, set with
`autonomy tokens add NAME --scope ingest --trust-native auth-log`): that sender's native Alert JSON naming one of
them is read as that sensor's facts (a trusted feed). None by default: native records are claims
(docs/sensors.md, "Provenance"). A file written before this field reads as trusting nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from autonomy_controller.controller.ingest.native import trusted_sources

PREFIX = "aut_"
"""Makes a leaked token recognisable to secret scanners and in logs."""


class Scope(StrEnum):
    INGEST = "ingest"
    READ = "read"


class TokenError(ValueError):
    """An admin's mistake with the token file: a name taken or unknown, a file that does not parse."""


@dataclass(frozen=True)
class TokenEntry:
    name: str
    scopes: tuple[Scope, ...]
    sha256: str
    created_at: str
    revoked_at: str | None = None
    trust_native: tuple[str, ...] = ()
    """The sources this sender's native Alert JSON may speak for (a trusted feed); none by default."""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


class TokenStore:
    """The token file, read again whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []

    def entries(self) -> list[TokenEntry]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._entries = None, []
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._entries, self._stamp = self._load(), stamp
        return self._entries

    def _load(self) -> list[TokenEntry]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return [
                TokenEntry(
                    name=str(item["name"]),
                    scopes=tuple(Scope(s) for s in item["scopes"]),
                    sha256=str(item["sha256"]),
                    created_at=str(item["created_at"]),
                    revoked_at=item.get("revoked_at"),
                    trust_native=tuple(sorted(trusted_sources(item.get("trust_native") or ()))),
                )
                for item in document["tokens"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"{self.path}: not a token file ({exc})") from exc

    def find(self, token: str) -> TokenEntry | None:
        """The entry a presented token belongs to, revoked or not (the caller tells the two apart)."""
        wanted = digest(token)
        return next((e for e in self.entries() if secrets.compare_digest(e.sha256, wanted)), None)

    def add(self, name: str, scopes: list[Scope], trust_native: Iterable[str] = ()) -> tuple[str, TokenEntry]:
        """A new token for `name`: returns the token itself (shown once, never stored) and its entry."""
        if not name.strip() or len(name) > 64 or not name.isprintable():
            raise TokenError("a token name is 1-64 printable characters")
        if not scopes:
            raise TokenError("a token needs at least one scope (ingest, read)")
        try:
            trusted = tuple(sorted(trusted_sources(trust_native)))
        except ValueError as exc:
            raise TokenError(str(exc)) from None
        if trusted and Scope.INGEST not in scopes:
            raise TokenError("--trust-native is for a sender: the token needs the ingest scope")
        entries = self.entries()
        if any(e.name == name and e.active for e in entries):
            raise TokenError(f"an active token is named {name!r} already: revoke it first, or pick another name")
        token = PREFIX + secrets.token_urlsafe(32)
        entry = TokenEntry(name, tuple(dict.fromkeys(scopes)), digest(token), _now(), trust_native=trusted)
        self._save([*entries, entry])
        return token, entry

    def revoke(self, name: str) -> TokenEntry:
        entries = self.entries()
        if not any(e.name == name and e.active for e in entries):
            raise TokenError(f"no active token named {name!r}")
        revoked = [
            TokenEntry(**{**asdict(e), "revoked_at": _now()}) if e.name == name and e.active else e for e in entries
        ]
        self._save(revoked)
        return next(e for e in revoked if e.name == name and e.revoked_at is not None)

    def _save(self, entries: list[TokenEntry]) -> None:
        """Write a temporary file (0600) and rename it over the old one: a reader never sees half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"tokens": [{**asdict(e), "scopes": [s.value for s in e.scopes]} for e in entries]}
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, self.path)


def tokens_file(state_dir: Path) -> Path:
    named = os.environ.get("AUTONOMY_API_TOKENS_FILE")
    return Path(named).expanduser() if named else state_dir / "api-tokens.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
