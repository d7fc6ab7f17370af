"""Errors the ledger raises to callers."""

from __future__ import annotations


class LedgerError(Exception):
    """An append was refused (bad input) or a stored record cannot be read back."""


class IdempotencyConflict(LedgerError):
    """The idempotency key is already used by a record of another incident or kind: a caller bug, not a retry."""
