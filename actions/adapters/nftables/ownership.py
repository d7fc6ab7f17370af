"""Whose element (or isolation) it is: the owner comment each one carries, and what an undo may remove.

Each element's comment is the idempotency key of the action that added it (hashed when longer than nft's
128-character limit), so a repeat answers ALREADY_DONE and says whose element it is, and an undo (TTL revert,
compensation) can tell the element its own execution created from one another incident holds. Which execution
an undo reverses is what the request says (ActionRequest.purpose and .undoes), never read from a key's format.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from autonomy_controller.actions.adapters.base import ActionRequest, Purpose

COMMENT_MAX_BYTES = 128
"""nft refuses longer comments in its text grammar ("comment too long, 128 characters maximum allowed"); its
JSON parser takes them, but a ruleset listed with one could no longer be loaded back with `nft -f`."""


def owner_comment(idempotency_key: str) -> str:
    """The comment that marks an element (or isolation) as this key's: the key itself when it fits nft's limit
    and is plain printable ASCII, else its readable start (the incident key) plus a hash of the whole key."""
    plain = idempotency_key.isascii() and idempotency_key.isprintable() and not set('"\\') & set(idempotency_key)
    if plain and len(idempotency_key) <= COMMENT_MAX_BYTES:
        return idempotency_key
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:16]
    readable = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_" for ch in idempotency_key)
    return f"{readable[: COMMENT_MAX_BYTES - len(digest) - 1]}~{digest}"


@dataclass(frozen=True)
class Undo:
    """An undo (TTL revert, compensation) of the execution whose idempotency key is `undoes`.

    It may remove only what that execution created: the element or isolation carrying `owner_comment(undoes)`.
    Anything else (another incident's, an operator's, one without a comment) is someone else's need and is
    left in place. Without `undoes` (a request built around ActionRequest's validation) nothing counts as its
    own, so such an undo removes nothing: fail closed."""

    purpose: Purpose
    undoes: str | None

    @property
    def comment(self) -> str | None:
        """The owner comment the undone execution left on its effect; None when the request did not say."""
        return owner_comment(self.undoes) if self.undoes else None

    def created(self, comment: str | None) -> bool:
        """Whether an effect carrying `comment` is the one the undone execution created (and so ours to remove)."""
        own = self.comment
        return own is not None and comment == own

    def missing(self, what: str) -> str:
        """For details of an undo that removes nothing: what it looked for and did not find."""
        if self.comment is None:
            return f"this {self.purpose} names no execution it undoes, so nothing is its own to remove"
        return f"the {what} this {self.purpose} had to remove ({self.comment!r}) is no longer there"


def undo_of(request: ActionRequest) -> Undo | None:
    """The undo `request` is (purpose compensate or revert), or None for an action of its own (purpose execute):
    a person's or a plan's explicit unblock or release, guarded and maybe approved as such, which lifts the
    effect whoever holds it. The key's format plays no part: `purpose` and `undoes` are the whole answer."""
    return Undo(request.purpose, request.undoes) if request.is_undo else None


def whose(comment: str | None, idempotency_key: str) -> str:
    """Names the owner of an element or isolation for details: its comment, and whether that is this key."""
    if comment is None:
        return "no comment (added outside the controller)"
    mine = " (this idempotency key)" if comment == owner_comment(idempotency_key) else ""
    return f"comment {comment!r}{mine}"
