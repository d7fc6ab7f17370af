"""`autonomy approvers`: approvers' signing keys. `keygen` makes a key pair, `list` shows the configured public keys.

The private key never leaves the approver's machine: keygen writes it to a file only its owner can read and prints
the PUBLIC half as a config snippet to add to the approver keys file (Settings.approver_keys_file, in git).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.approver_keys import ApproverKeysError, fingerprint, generate_key, load_configured
from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, err_console, fail
from autonomy_controller.controller.config import Settings


def default_key_dir() -> Path:
    """Per user, outside any repository: $XDG_CONFIG_HOME/autonomy/keys (~/.config/autonomy/keys)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "autonomy" / "keys"


def keygen(
    name: Annotated[
        str, typer.Argument(help="The approver, as named in the approver groups (policies/identities/data.yaml).")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the private key file. Default: ~/.config/autonomy/keys."),
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key-id", help="Key id. Default: NAME-YYYYMMDD-<fingerprint prefix>.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a signing key pair for an approver: the private key to a 0600 file, the public key as a config snippet.

    Add the snippet under `approvers:` in the approver keys file; the key signs votes (`approve --key FILE`)
    from then on. Rotate by adding the new key beside the old one, then removing the old one (that revokes it).
    Never overwrites an existing key file.
    """
    settings = Settings()
    try:
        secret = generate_key(name, key_id)
    except ApproverKeysError as exc:
        fail(str(exc), 2)
    path = (out.expanduser() if out else default_key_dir()) / f"{secret.key_id}.key"
    try:
        secret.write(path)
    except FileExistsError:
        fail(f"{path} exists: not overwritten (pass another --key-id, or move it away)", 2)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", 2)
    snippet = yaml.safe_dump(secret.config_entry(), sort_keys=False)
    if as_json:
        emit_json(
            {
                "approver": secret.approver,
                "key_id": secret.key_id,
                "public_key": secret.public_key_b64,
                "fingerprint": fingerprint(secret.private_key.public_key()),
                "private_key_file": str(path),
                "config_file": str(settings.approver_keys_file),
                "config_snippet": secret.config_entry(),
            }
        )
        return
    err_console.print(f"private key written to [bold]{escape(str(path))}[/] (mode 0600): keep it, never commit it")
    err_console.print(f"add this to {escape(str(settings.approver_keys_file))} (merge under `approvers:`):")
    console.print(snippet, end="", markup=False, highlight=False)


def approvers_list(as_json: JsonFlag = False) -> None:
    """The approvers with signing keys, from the approver keys config, and whether unsigned votes are refused."""
    settings = Settings()
    path = settings.approver_keys_file
    try:
        keys = load_configured(path)
    except ApproverKeysError as exc:
        fail(str(exc), 2)
    rows = [
        {"approver": name, "key_id": key.id, "fingerprint": fingerprint(key.key())}
        for name, entry in sorted(keys.approvers.items())
        for key in entry.keys
    ]
    if as_json:
        emit_json(
            {
                "config_file": str(path),
                "exists": path.is_file(),
                "require_signed": keys.require_signed,
                "max_token_seconds": keys.max_token_seconds,
                "keys": rows,
            }
        )
        return
    signed = "required" if keys.require_signed else "optional (unsigned votes are accepted and marked unsigned)"
    table = Table(title=f"approver keys in {escape(str(path))}{'' if path.is_file() else ' (no such file)'}")
    for column in ("approver", "key id", "sha256 fingerprint"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(escape(row["approver"]), escape(row["key_id"]), row["fingerprint"])
    console.print(table)
    console.print(f"signed votes: {signed}")
