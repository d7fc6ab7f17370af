"""The write half of an append: input checks, then the locked read of the heads and the three writes.

Inputs are checked before the lock is taken, so a bad append costs the other workers nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger import schema
from autonomy_controller.controller.ledger.canonical import canonical_json
from autonomy_controller.controller.ledger.errors import LedgerError
from autonomy_controller.controller.ledger.records import REQUIRED_PAYLOAD_KEYS, RecordKind

_LIMITS = {"incident_key": 512, "actor": 256, "idempotency_key": 512}


class Tip(NamedTuple):
    seq: int
    hash: str
    incident_hash: str | None
    incident_count: int


def lock_tip(conn: Connection, incident_key: str) -> Tip:
    """Lock the chain head (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the lock), then
    read the incident's head.

    Two statements on purpose: joining the incident head into the locking SELECT looks like a saved round
    trip, but under READ COMMITTED PostgreSQL re-reads only the *locked* row after the wait, so the joined
    incident head would be the stale one from before the previous appender committed (a forked incident chain;
    measured, see test_concurrent_appends_to_one_incident_keep_its_chain_linear).
    """
    h, i = schema.head, schema.incident_heads
    head = conn.execute(select(h.c.seq, h.c.hash).where(h.c.id == 1).with_for_update()).one()
    incident = conn.execute(select(i.c.hash, i.c["count"]).where(i.c.incident_key == incident_key)).first()
    if incident is None:
        return Tip(head.seq, head.hash, None, 0)
    return Tip(head.seq, head.hash, incident.hash, incident._mapping["count"])


def write_record(conn: Connection, fields: dict[str, Any], tip: Tip) -> None:
    """Insert the record and move both heads, inside the transaction that holds the lock."""
    seq, hash_ = fields["seq"], fields["hash"]
    conn.execute(schema.records.insert().values({**fields, "payload": canonical_json(fields["payload"])}))
    conn.execute(schema.head.update().where(schema.head.c.id == 1).values(seq=seq, hash=hash_))
    i = schema.incident_heads
    if tip.incident_hash is None:
        conn.execute(i.insert().values(incident_key=fields["incident_key"], seq=seq, hash=hash_, count=1))
    else:
        values = {"seq": seq, "hash": hash_, "count": tip.incident_count + 1}
        conn.execute(i.update().where(i.c.incident_key == fields["incident_key"]).values(values))


def parse_kind(kind: RecordKind | str) -> RecordKind:
    try:
        return RecordKind(kind)
    except ValueError:
        raise LedgerError(f"unknown record kind {kind!r}; one of {[k.value for k in RecordKind]}") from None


def plain_payload(kind: RecordKind, payload: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """The payload as plain JSON (round-tripped, so the returned record equals what a later read returns)."""
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    if not isinstance(body, Mapping):
        raise LedgerError(f"payload must be a JSON object, not {type(body).__name__}")
    try:
        plain: dict[str, Any] = json.loads(canonical_json(dict(body)))
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"payload is not plain JSON: {exc}") from exc
    missing = REQUIRED_PAYLOAD_KEYS.get(kind, frozenset()) - plain.keys()
    if missing:
        raise LedgerError(f"a {kind.value} record needs payload keys {sorted(missing)}")
    return plain


def check_text(**values: str | None) -> None:
    for name, value in values.items():
        if value is None and name == "idempotency_key":
            continue
        if not value or not value.strip():
            raise LedgerError(f"{name} must not be empty")
        if len(value) > _LIMITS[name]:
            raise LedgerError(f"{name} is longer than {_LIMITS[name]} characters")
