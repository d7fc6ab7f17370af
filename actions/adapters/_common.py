"""Small pieces the adapters share: param checks, key hashing, and crash-safe create-if-absent files.

The file helpers exist because local adapters (ticket queue, webhook delivery journal) use the file system as
their idempotency store: the file named after a key *is* the record that the effect happened, so it must
appear complete or not at all, and a second writer for the same key must lose instead of overwriting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from autonomy_controller.actions.adapters.base import ActionRequest, AdapterError
from autonomy_controller.actions.registry import InvalidParamsError, UnknownActionError, get_spec, validate_params

P = TypeVar("P", bound=BaseModel)


def parse_params(request: ActionRequest, model: type[P]) -> P:
    """Re-validate params at the edge: the workflow should send canonical params, but an adapter that acts on
    the world does not trust a caller it cannot see (a bad value becomes a permanent AdapterError)."""
    try:
        parsed = validate_params(get_spec(request.action), request.params)
    except (InvalidParamsError, UnknownActionError) as exc:
        raise AdapterError(str(exc)) from None
    if not isinstance(parsed, model):
        raise AdapterError(
            f"{request.action} params are {type(parsed).__name__}, this adapter expects {model.__name__}"
        )
    return parsed


def check_action(request: ActionRequest, expected: str) -> None:
    """An adapter handed another action's request would apply the wrong effect: refuse it loudly."""
    if request.action != expected:
        raise AdapterError(f"adapter for {expected} was handed a {request.action} request")


def key_digest(idempotency_key: str) -> str:
    """A file-name-safe, fixed-length name for an idempotency key (keys contain '/' and arbitrary text)."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def fsync_dir(directory: Path) -> None:
    """Make a new directory entry durable: fsync of a file does not persist its name on POSIX."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_if_absent(path: Path, document: dict[str, Any]) -> bool:
    """Publish `document` as JSON at `path` unless a file is already there; True when this call created it.

    The content goes to a temp file in the same directory (fsynced), which is then hard-linked to its final
    name. `link` fails if the name exists, so of two concurrent writers exactly one wins, and a reader never
    sees a half-written file (a plain rename would silently overwrite the winner). A crash leaves at most a
    stray `.tmp` file, never a truncated document under the real name.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.stem[:16]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        except OSError as exc:  # e.g. a file system without hard links: refuse rather than risk a torn file
            raise AdapterError(f"cannot publish {path.name} in {directory} atomically: {exc}") from exc
        fsync_dir(directory)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or AdapterError saying which file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise AdapterError(f"{path} does not hold a JSON object")
    return data
