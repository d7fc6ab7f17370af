"""`autonomy accounts add|passwd|disable|list`: the approval inbox's local accounts (controller/service/inbox/).

Passwords are read from the terminal (asked twice), or from stdin with --password-stdin for scripts; they are
never command-line arguments, which other users can read in the process list.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service.inbox.accounts import (
    Account,
    AccountError,
    AccountStore,
    accounts_file,
    people,
)

PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (scripts).")
]


def _store(settings: Settings) -> AccountStore:
    return AccountStore(accounts_file(settings.state_dir))


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    return password


def _as_dict(account: Account) -> dict[str, object]:
    return {
        "name": account.name,
        "identity": account.identity,
        "created_at": account.created_at,
        "disabled_at": account.disabled_at,
    }


def accounts_add(
    name: Annotated[str, typer.Argument(help="The sign-in name.")],
    identity: Annotated[
        str | None, typer.Option("--identity", help="The person in identities.yaml it votes as (default: NAME).")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Make an inbox account for a person in policies/identities/data.yaml (argon2id hash, file mode 0600)."""
    settings = Settings()
    try:
        known = people(data_file(settings.policies_dir, "identities"))
        account = _store(settings).add(name, identity or name, _password(password_stdin), known)
    except AccountError as exc:
        fail(str(exc), 1)
    console.print(f"account {escape(account.name)} votes as {escape(account.identity)}")


def accounts_passwd(
    name: Annotated[str, typer.Argument(help="The sign-in name.")], password_stdin: PasswordStdin = False
) -> None:
    """Set a new password; the account's open sessions end on their next request."""
    try:
        account = _store(Settings()).passwd(name, _password(password_stdin))
    except AccountError as exc:
        fail(str(exc), 1)
    console.print(f"password of {escape(account.name)} changed; its sessions are signed out")


def accounts_disable(name: Annotated[str, typer.Argument(help="The sign-in name.")]) -> None:
    """Disable an account: it can no longer sign in, and its open sessions end on their next request."""
    try:
        account = _store(Settings()).disable(name)
    except AccountError as exc:
        fail(str(exc), 1)
    console.print(f"disabled {escape(account.name)} at {account.disabled_at}")


def accounts_list(as_json: JsonFlag = False) -> None:
    """The accounts: name, identity, created, disabled (never the hashes)."""
    try:
        accounts = _store(Settings()).accounts()
    except AccountError as exc:
        fail(str(exc), 2)
    if as_json:
        for account in accounts:
            emit_json(_as_dict(account))
        return
    table = Table(title=f"{len(accounts)} account(s)")
    for column in ("name", "identity", "created", "disabled"):
        table.add_column(column, overflow="fold")
    for account in accounts:
        table.add_row(escape(account.name), escape(account.identity), account.created_at, account.disabled_at or "-")
    console.print(table)
