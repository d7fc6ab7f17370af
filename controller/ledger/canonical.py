"""The exact bytes a ledger record's hash is computed over.

A hash chain is only useful if anyone can recompute it later, with another tool, from an export. So the
hashed document is plain JSON with one canonical spelling: sorted keys, no whitespace, ASCII only (every
non-ASCII character, control character and even a lone surrogate from attacker-controlled alert text is
escaped, so any string is storable in SQLite and PostgreSQL text and hashes identically), no NaN/Infinity
(not JSON). Timestamps are UTC with microseconds and a `Z`, the precision both databases keep.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""prev_hash of the first record (of the ledger, and of each incident's own chain)."""

HASH_FIELDS = (
    "seq",
    "incident_key",
    "kind",
    "actor",
    "payload",
    "created_at",
    "prev_hash",
    "incident_prev_hash",
    "idempotency_key",
)
"""Every column of a record except `hash` itself: editing any of them must break the hash."""


def canonical_json(value: Any) -> str:
    """Serialise `value` canonically; raises TypeError/ValueError for anything that is not plain JSON."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def format_ts(value: datetime) -> str:
    """UTC, microseconds, `Z`: one spelling per instant (naive values are taken as UTC, as SQLite returns them)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str) -> datetime:
    """Inverse of `format_ts`, for exports."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


_SORTED_FIELDS = tuple(sorted(HASH_FIELDS))
_FIELD_NAMES = {name: canonical_json(name) for name in HASH_FIELDS}


def record_hash(fields: Mapping[str, Any], payload_text: str | None = None) -> str:
    """sha256 (hex) of the canonical JSON of a record's HASH_FIELDS; `created_at` may be a datetime or a string.

    `payload_text`: the payload's canonical JSON when the caller has it already (an append serialises each
    payload once, for this and for the stored column). The document is assembled field by field, in sorted
    order, exactly as `canonical_json` spells the whole (tests/test_ledger_canonical.py holds them equal).
    """
    parts = []
    for name in _SORTED_FIELDS:
        value = fields[name]
        if name == "payload":
            text = canonical_json(value) if payload_text is None else payload_text
        elif name == "created_at" and isinstance(value, datetime):
            text = canonical_json(format_ts(value))
        else:
            text = canonical_json(value)
        parts.append(f"{_FIELD_NAMES[name]}:{text}")
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode("ascii")).hexdigest()
