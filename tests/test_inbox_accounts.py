"""Inbox accounts and sessions without a server: the file an admin manages, and what ends a session."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service.inbox.accounts import AccountError, AccountStore, accounts_file, people
from autonomy_controller.controller.service.inbox.sessions import Signer, load_secret

PASSWORD = "correct horse battery staple"


@pytest.fixture
def store(tmp_path: Path) -> AccountStore:
    return AccountStore(tmp_path / "inbox-accounts.json")


@pytest.fixture
def known(settings: Settings) -> set[str]:
    return people(data_file(settings.policies_dir, "identities"))


def test_accounts_are_argon2id_hashed_in_a_0600_file(store: AccountStore, known: set[str]) -> None:
    account = store.add("bob", "bob", PASSWORD, known)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    text = store.path.read_text()
    assert PASSWORD not in text and account.password_hash.startswith("$argon2id$")
    assert store.authenticate("bob", PASSWORD) == account
    assert store.authenticate("bob", PASSWORD + "x") is None and store.authenticate("nobody", PASSWORD) is None


def test_only_people_in_identities_yaml_get_accounts(store: AccountStore, known: set[str]) -> None:
    for identity in ("svc-backup", "planner:offline", "svc:controller", "mallory"):
        with pytest.raises(AccountError, match="not a person"):
            store.add("x", identity, PASSWORD, known)
    with pytest.raises(AccountError, match="12-1024 characters"):
        store.add("bob", "bob", "short", known)
    store.add("bob", "bob", PASSWORD, known)
    with pytest.raises(AccountError, match="exists already"):
        store.add("bob", "carol", PASSWORD, known)


def test_passwd_and_disable_end_sessions(store: AccountStore, known: set[str], tmp_path: Path) -> None:
    signer = Signer(load_secret(tmp_path / "session.key"))
    account = store.add("bob", "bob", PASSWORD, known)
    session, cookie = signer.new_session(account.name, account.stamp, 3600)
    assert signer.session(cookie) == session
    assert signer.session(cookie[:-2] + "AA") is None  # a tampered MAC
    changed = store.passwd("bob", "another long passphrase")
    assert changed.stamp != account.stamp and store.authenticate("bob", PASSWORD) is None
    disabled = store.disable("bob")
    assert store.authenticate("bob", "another long passphrase") is None and not disabled.active
    assert Signer(load_secret(tmp_path / "other.key")).session(cookie) is None  # another secret's cookie


def test_a_broken_accounts_file_admits_nobody(store: AccountStore) -> None:
    store.path.write_text("{not json")
    with pytest.raises(AccountError, match="not an accounts file"):
        store.authenticate("bob", PASSWORD)


def test_the_accounts_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    added = runner.invoke(app, ["accounts", "add", "bobby", "--identity", "bob", "--password-stdin"], PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    refused = runner.invoke(app, ["accounts", "add", "web", "--identity", "svc-web", "--password-stdin"], PASSWORD)
    assert refused.exit_code == 1 and "not a person" in refused.output
    assert runner.invoke(app, ["accounts", "disable", "bobby"]).exit_code == 0
    listed = runner.invoke(app, ["accounts", "list", "--json"])
    assert '"identity": "bob"' in listed.output and '"disabled_at": null' not in listed.output
    assert AccountStore(accounts_file(tmp_path)).authenticate("bobby", PASSWORD) is None
