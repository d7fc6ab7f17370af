"""The write half of an append: input checks, then the locked read of the heads and the writes.

Inputs are checked before the lock is taken, so a bad append costs the other workers nothing. An append of
several records (an alert batch) reads the heads once, looks its idempotency keys up in one query, inserts
its records in one statement and moves each head once: the chain it writes is the one record-by-record
appends would write, in a handful of statements instead of six per record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger import schema
from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, canonical_json, record_hash
from autonomy_controller.controller.ledger.errors import IdempotencyConflict, LedgerError
from autonomy_controller.controller.ledger.reads import record_by_key, records_by_keys
from autonomy_controller.controller.ledger.records import REQUIRED_PAYLOAD_KEYS, LedgerRecord, RecordKind

_LIMITS = {"incident_key": 512, "actor": 256, "idempotency_key": 512}


class Entry(NamedTuple):
    """One record to append: its plain payload, that payload's canonical JSON (serialised once, for both the
    stored column and the hash), and its idempotency key."""

    body: dict[str, Any]
    text: str
    key: str | None


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
    head = conn.execute(_LOCK_HEAD).one()
    incident = conn.execute(_INCIDENT_HEAD, {"key": incident_key}).first()
    if incident is None:
        return Tip(head.seq, head.hash, None, 0)
    return Tip(head.seq, head.hash, incident.hash, incident._mapping["count"])


def append_entries(
    conn: Connection,
    incident_key: str,
    kind: RecordKind,
    actor: str,
    entries: Sequence[Entry],
) -> list[LedgerRecord]:
    """Append one incident's entries inside the transaction that holds the lock; an entry whose key is used
    already (before, or earlier in `entries`) returns that record instead."""
    tip = lock_tip(conn, incident_key)
    known = _records_by_key(conn, [entry.key for entry in entries if entry.key is not None])
    for used, existing in known.items():
        if (existing.incident_key, existing.kind) != (incident_key, kind):
            raise IdempotencyConflict(
                f"idempotency key {used!r} already names record {existing.seq} "
                f"({existing.kind.value} of incident {existing.incident_key!r})"
            )
    seq, head_hash, incident_hash, count = tip.seq, tip.hash, tip.incident_hash, tip.incident_count
    now = datetime.now(UTC)
    result: list[LedgerRecord] = []
    rows: list[dict[str, Any]] = []
    for body, text, key in entries:
        if key is not None and key in known:
            result.append(known[key])
            continue
        fields: dict[str, Any] = {
            "seq": seq + 1,
            "incident_key": incident_key,
            "kind": kind.value,
            "actor": actor,
            "payload": body,
            "created_at": now,
            "prev_hash": head_hash,
            "incident_prev_hash": incident_hash or GENESIS_HASH,
            "idempotency_key": key,
        }
        fields["hash"] = record_hash(fields, text)
        rows.append({**fields, "payload": text})
        # built as validated: every field is ours and of its type (plain_payload checked the payload)
        record = LedgerRecord.model_construct(**{**fields, "kind": kind})
        result.append(record)
        if key is not None:
            known[key] = record
        seq, head_hash, incident_hash, count = record.seq, record.hash, record.hash, count + 1
    if rows:
        _write_rows(conn, incident_key, rows, new_incident=tip.incident_hash is None, count=count)
    return result


def _write_rows(
    conn: Connection, incident_key: str, rows: list[dict[str, Any]], new_incident: bool, count: int
) -> None:
    """Insert the records and move both heads to the last of them."""
    last = rows[-1]
    conn.execute(schema.records.insert(), rows)
    conn.execute(_MOVE_HEAD, {"b_seq": last["seq"], "b_hash": last["hash"]})
    if new_incident:
        conn.execute(
            _ADD_INCIDENT, {"incident_key": incident_key, "seq": last["seq"], "hash": last["hash"], "count": count}
        )
    else:
        values = {"b_incident_key": incident_key, "b_seq": last["seq"], "b_hash": last["hash"], "b_count": count}
        conn.execute(_MOVE_INCIDENT, values)


# Built once: SQLAlchemy then compiles each once, not per append (its per-statement Python cost was the
# ledger's largest in bench.loop's profile).
_LOCK_HEAD = select(schema.head.c.seq, schema.head.c.hash).where(schema.head.c.id == 1).with_for_update()
_INCIDENT_HEAD = select(schema.incident_heads.c.hash, schema.incident_heads.c["count"]).where(
    schema.incident_heads.c.incident_key == bindparam("key")
)
_MOVE_HEAD = schema.head.update().where(schema.head.c.id == 1).values(seq=bindparam("b_seq"), hash=bindparam("b_hash"))
_ADD_INCIDENT = schema.incident_heads.insert()
_MOVE_INCIDENT = (
    schema.incident_heads.update()
    .where(schema.incident_heads.c.incident_key == bindparam("b_incident_key"))
    .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"), count=bindparam("b_count"))
)
_KEY_CHUNK = 500


def _records_by_key(conn: Connection, keys: list[str]) -> dict[str, LedgerRecord]:
    unique = sorted(set(keys))
    if len(unique) == 1:  # a single append: one prepared equality lookup
        record = record_by_key(conn, unique[0])
        return {unique[0]: record} if record is not None else {}
    found: dict[str, LedgerRecord] = {}
    for start in range(0, len(unique), _KEY_CHUNK):
        for record in records_by_keys(conn, unique[start : start + _KEY_CHUNK]):
            assert record.idempotency_key is not None
            found[record.idempotency_key] = record
    return found


def parse_kind(kind: RecordKind | str) -> RecordKind:
    try:
        return RecordKind(kind)
    except ValueError:
        raise LedgerError(f"unknown record kind {kind!r}; one of {[k.value for k in RecordKind]}") from None


def plain_payload(kind: RecordKind, payload: Mapping[str, Any] | BaseModel, key: str | None = None) -> Entry:
    """The payload as plain JSON (round-tripped, so the returned record equals what a later read returns), with
    its canonical text and `key`."""
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    if not isinstance(body, Mapping):
        raise LedgerError(f"payload must be a JSON object, not {type(body).__name__}")
    try:
        text = canonical_json(dict(body))
        plain: dict[str, Any] = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"payload is not plain JSON: {exc}") from exc
    missing = REQUIRED_PAYLOAD_KEYS.get(kind, frozenset()) - plain.keys()
    if missing:
        raise LedgerError(f"a {kind.value} record needs payload keys {sorted(missing)}")
    return Entry(plain, text, key)


def check_text(**values: str | None) -> None:
    for name, value in values.items():
        if value is None and name == "idempotency_key":
            continue
        if not value or not value.strip():
            raise LedgerError(f"{name} must not be empty")
        if len(value) > _LIMITS[name]:
            raise LedgerError(f"{name} is longer than {_LIMITS[name]} characters")
