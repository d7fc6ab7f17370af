"""How a config file's validation errors read: `key.path: message`, one per error, so every loader names the key."""

from __future__ import annotations

from pydantic import ValidationError


def error_lines(exc: ValidationError) -> list[str]:
    """`key.path: message` per error; `(top level)` when the document itself is wrong."""
    return [f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]
