"""Local accounts for the approval inbox: a login name, an argon2id password hash, the identity it votes as.

The file (`<state dir>/inbox-accounts.json`, or AUTONOMY_INBOX_ACCOUNTS_FILE) is what an admin manages with
`autonomy accounts add|passwd|disable|list`; it is written atomically with mode 0600 and re-read by the service
when it changes, so a disabled account or a changed password ends that person's sessions on their next request
(a session carries the account's `stamp`, which both change). An account maps to one person in
policies/identities/data.yaml: never a service account, never a planner or the controller, which can never
approve anything.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ACCOUNTS_ENV = "AUTONOMY_INBOX_ACCOUNTS_FILE"
MIN_PASSWORD = 12
MAX_PASSWORD = 1_024
"""argon2 hashes whatever it is given: a cap keeps a sign-in request from buying seconds of CPU."""
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
"""Verified against when the account is unknown, so a wrong name costs as long as a wrong password."""


class AccountError(ValueError):
    """An admin's mistake with the accounts file, or a file that does not parse (then nobody signs in)."""


@dataclass(frozen=True)
class Account:
    name: str
    identity: str
    password_hash: str
    stamp: str
    """Random, renewed by passwd and disable: a session made before either no longer matches."""
    created_at: str
    disabled_at: str | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


def accounts_file(state_dir: Path) -> Path:
    named = os.environ.get(ACCOUNTS_ENV)
    return Path(named).expanduser() if named else state_dir / "inbox-accounts.json"


def people(identities_file: Path) -> set[str]:
    """The people in identities.yaml who may hold an inbox account: users that are not service accounts."""
    try:
        document = yaml.safe_load(identities_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AccountError(f"cannot read {identities_file}: {exc}") from exc
    users: dict[str, Any] = document.get("users") or {}
    services = set(document.get("service_identities") or [])
    return {
        name
        for name, facts in users.items()
        if not (facts or {}).get("service_account") and name not in services and ":" not in name
    }


class AccountStore:
    """The accounts file, read again whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int] | None = None
        self._accounts: list[Account] = []

    def accounts(self) -> list[Account]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._accounts = None, []
            return []
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._accounts, self._seen = self._load(), seen
        return self._accounts

    def _load(self) -> list[Account]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            return [Account(**item) for item in document["accounts"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise AccountError(f"{self.path}: not an accounts file ({exc})") from exc

    def find(self, name: str) -> Account | None:
        return next((a for a in self.accounts() if a.name == name), None)

    def authenticate(self, name: str, password: str) -> Account | None:
        """The active account these credentials open, else None (unknown, disabled, wrong: told apart nowhere)."""
        account = self.find(name)
        if len(password) > MAX_PASSWORD:
            return None
        try:
            _HASHER.verify(account.password_hash if account else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return account if account is not None and account.active else None

    def add(self, name: str, identity: str, password: str, known: set[str]) -> Account:
        _check_name(name)
        if identity not in known:
            raise AccountError(
                f"{identity!r} is not a person in identities.yaml (service accounts and planners never approve)"
            )
        accounts = self.accounts()
        if any(a.name == name for a in accounts):
            raise AccountError(f"an account named {name!r} exists already (passwd changes its password)")
        account = Account(name, identity, _hash(password), secrets.token_urlsafe(16), _now())
        self._save([*accounts, account])
        return account

    def passwd(self, name: str, password: str) -> Account:
        return self._change(name, password_hash=_hash(password), stamp=secrets.token_urlsafe(16))

    def sign_out(self, name: str) -> Account:
        """End every session of the account: a new stamp. A session is a signed cookie with no server-side state,
        so deleting the browser's copy alone left any copy taken before (a shared machine, a proxy log) valid."""
        return self._change(name, stamp=secrets.token_urlsafe(16))

    def disable(self, name: str) -> Account:
        return self._change(name, disabled_at=_now(), stamp=secrets.token_urlsafe(16))

    def _change(self, name: str, **changes: Any) -> Account:
        accounts = self.accounts()
        if self.find(name) is None:
            raise AccountError(f"no account named {name!r}")
        changed = [replace(a, **changes) if a.name == name else a for a in accounts]
        self._save(changed)
        return next(a for a in changed if a.name == name)

    def _save(self, accounts: list[Account]) -> None:
        """Write a temporary file (0600) and rename it over the old one: a reader never sees half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"accounts": [asdict(a) for a in accounts]}, handle, indent=2)
            handle.write("\n")
        os.replace(temporary, self.path)


def _check_name(name: str) -> None:
    if not (0 < len(name) <= 64) or not all(c.isalnum() or c in "._@+-" for c in name):
        raise AccountError("an account name is 1-64 letters, digits or . _ @ + -")


def _hash(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AccountError(f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    return _HASHER.hash(password)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
