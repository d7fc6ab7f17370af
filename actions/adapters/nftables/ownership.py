"""Whose element (or isolation) it is: the owner comment each one carries, and which block an undo reverses.

Each element's comment is the idempotency key of the action that added it (hashed when longer than nft's
128-character limit), so a repeat answers ALREADY_DONE and says whose element it is, and an undo (TTL revert,
compensation) can tell the element its own block created from one another incident took over.
"""

from __future__ import annotations

import hashlib

COMMENT_MAX_BYTES = 128
"""nft refuses longer comments in its text grammar ("comment too long, 128 characters maximum allowed"); its
JSON parser takes them, but a ruleset listed with one could no longer be loaded back with `nft -f`."""
UNDO_PURPOSES = ("revert", "compensate")


def owner_comment(idempotency_key: str) -> str:
    """The comment that marks an element (or isolation) as this key's: the key itself when it fits nft's limit
    and is plain printable ASCII, else its readable start (the incident key) plus a hash of the whole key."""
    plain = idempotency_key.isascii() and idempotency_key.isprintable() and not set('"\\') & set(idempotency_key)
    if plain and len(idempotency_key) <= COMMENT_MAX_BYTES:
        return idempotency_key
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:16]
    readable = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in idempotency_key)
    return f"{readable[: COMMENT_MAX_BYTES - len(digest) - 1]}~{digest}"


def undone_key(idempotency_key: str) -> str | None:
    """The idempotency key of the block an undo reverses, or None when `idempotency_key` is not an undo's.

    workflows/activities.py (`_adapter_request`) hands adapters `<workflow>/<run>/<action id>/<purpose>`: the
    block ran as `.../execute` and left owner_comment of that key on its element; its TTL revert and its
    compensation run the undo action (network.unblock_ip) as `.../revert` and `.../compensate`. Any other key
    (a person's or a plan's own unblock runs as `.../execute`) is not an undo and gets None."""
    base, sep, purpose = idempotency_key.rpartition("/")
    return f"{base}/execute" if sep and base and purpose in UNDO_PURPOSES else None


def whose(comment: str | None, idempotency_key: str) -> str:
    """Names the owner of an element or isolation for details: its comment, and whether that is this key."""
    if comment is None:
        return "no comment (added outside the controller)"
    mine = " (this idempotency key)" if comment == owner_comment(idempotency_key) else ""
    return f"comment {comment!r}{mine}"
