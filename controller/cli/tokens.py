"""`autonomy tokens add|list|revoke`: the API's per-sender bearer tokens (controller/service/tokens.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import (
    JsonFlag,
    TrustNativeOption,
    console,
    emit_json,
    err_console,
    fail,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.service.tokens import Scope, TokenEntry, TokenError, TokenStore, tokens_file


def _store() -> TokenStore:
    return TokenStore(tokens_file(Settings().state_dir))


def _as_dict(entry: TokenEntry) -> dict[str, object]:
    return {
        "name": entry.name,
        "scopes": [s.value for s in entry.scopes],
        "created_at": entry.created_at,
        "revoked_at": entry.revoked_at,
        "sha256": entry.sha256,
        "trust_native": list(entry.trust_native),
    }


def tokens_add(
    name: Annotated[str, typer.Argument(help="Who sends with it: a SIEM, a sensor, a team.")],
    scope: Annotated[list[Scope], typer.Option("--scope", help="ingest (POST /v1/alerts), read (/v1/incidents).")],
    trust_native: TrustNativeOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a token: printed once, stored only as its SHA-256 (give it to the sender now).

    With --trust-native SOURCE (ingest scope), this sender's Alert JSON naming SOURCE is read as that sensor's
    facts; without it, as claims (docs/sensors.md, Provenance)."""
    try:
        token, entry = _store().add(name, scope, trust_native or ())
    except TokenError as exc:
        fail(str(exc), 1)
    if as_json:
        emit_json({**_as_dict(entry), "token": token})
        return
    console.print(token, soft_wrap=True)
    err_console.print(f"[dim]token {escape(name)} ({', '.join(s.value for s in entry.scopes)}); shown once only[/]")


def tokens_list(as_json: JsonFlag = False) -> None:
    """The tokens: name, scopes, created, revoked (never the tokens themselves)."""
    try:
        entries = _store().entries()
    except TokenError as exc:
        fail(str(exc), 2)
    if as_json:
        for entry in entries:
            emit_json(_as_dict(entry))
        return
    table = Table(title=f"{len(entries)} token(s)")
    for column in ("name", "scopes", "trusted feed for", "created", "revoked"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        scopes = ", ".join(s.value for s in entry.scopes)
        trusts = escape(", ".join(entry.trust_native)) or "-"
        table.add_row(escape(entry.name), scopes, trusts, entry.created_at, entry.revoked_at or "-")
    console.print(table)


def tokens_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: the next request carrying it gets 401 (the service re-reads the file)."""
    try:
        entry = _store().revoke(name)
    except TokenError as exc:
        fail(str(exc), 1)
    console.print(f"revoked {escape(entry.name)} at {entry.revoked_at}")
