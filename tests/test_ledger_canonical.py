"""record_hash assembles the hashed document field by field (so an append serialises each payload once): it must
spell exactly what canonical_json spells for the whole document, for any payload an attacker can shape."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from autonomy_controller.controller.ledger.canonical import HASH_FIELDS, canonical_json, format_ts, record_hash

PAYLOADS: list[dict[str, Any]] = [
    {},
    {"b": 1, "a": [1, 2.5, None, True], "c": {"z": "\u00e9\u4e2d\ud800", "y": '\x00\n"\\'}},
    {"payload": {"seq": 3}, "hash": "x" * 64, "\u2028": -0.0, "big": 10**30},
    {"evidence": "GET /?id=1' OR 1=1--", "raw": {"nested": [{"deep": [[[]]]}]}},
]


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("key", [None, "w/r/a1/execute", "k\u00e9y\x7f"])
def test_the_assembled_document_is_the_canonical_one(payload: dict[str, Any], key: str | None) -> None:
    at = datetime(2026, 12, 6, 9, 1, 2, 345678, tzinfo=UTC)
    fields = {
        "seq": 12,
        "incident_key": "src:198.51.100.7",
        "kind": "alert",
        "actor": "ingest \u00fc",
        "payload": payload,
        "created_at": at,
        "prev_hash": "a" * 64,
        "incident_prev_hash": "0" * 64,
        "idempotency_key": key,
    }
    whole = canonical_json({**{name: fields[name] for name in HASH_FIELDS}, "created_at": format_ts(at)})
    expected = hashlib.sha256(whole.encode("ascii")).hexdigest()
    assert record_hash(fields) == expected
    assert record_hash(fields, canonical_json(payload)) == expected
    assert record_hash({**fields, "created_at": format_ts(at)}) == expected
    assert record_hash(fields, canonical_json({**payload, "edited": 1})) != expected  # the text given is hashed
