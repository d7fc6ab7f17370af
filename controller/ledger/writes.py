"""The write half of an append: input checks, then the locked read of the heads and the writes.

Inputs are checked before the lock is taken, so a bad append costs the other workers nothing. An append of
several records (an alert batch) reads the heads once, looks its idempotency keys up in one query, inserts
its records in one statement and moves each head once: the chain it writes is the one record-by-record
appends would write, in a handful of statements instead of six per record; several incidents' batches in one
transaction (`append_groups_entries`) share those statements too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy.engine import Connection

from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, canonical_json, record_hash
from autonomy_controller.controller.ledger.driver import DriverCursor
from autonomy_controller.controller.ledger.errors import IdempotencyConflict, LedgerError
from autonomy_controller.controller.ledger.reads import to_record
from autonomy_controller.controller.ledger.records import REQUIRED_PAYLOAD_KEYS, LedgerRecord, RecordKind

_LIMITS = {"incident_key": 512, "actor": 256, "idempotency_key": 512}


class Entry(NamedTuple):
    """One record to append: its plain payload, that payload's canonical JSON (serialised once, for both the
    stored column and the hash), and its idempotency key."""

    body: dict[str, Any]
    text: str
    key: str | None


def append_groups_entries(
    conn: Connection,
    kind: RecordKind,
    actor: str,
    groups: Mapping[str, Sequence[Entry]],
) -> dict[str, list[LedgerRecord]]:
    """Append each incident's entries inside the transaction that holds the lock; an entry whose key is used
    already (before, or earlier in the entries) returns that record instead.

    Every incident in the statements of one: the chain head locked and the incident heads read once, the
    idempotency keys looked up together, every record inserted in one statement, each head moved once. The
    records are those appending the incidents one after another would write, in the mapping's order: a batch
    of 200 sources is 7 statements, not 200 x 6 (bench.http)."""
    # The chain head is locked first (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the lock),
    # then the incident heads are read, in a statement of their own on purpose: joined into the locking SELECT,
    # PostgreSQL under READ COMMITTED re-reads only the *locked* row after the wait, so a joined incident head
    # would be the stale one from before the previous appender committed (a forked incident chain; measured, see
    # test_concurrent_appends_to_one_incident_keep_its_chain_linear).
    cursor = DriverCursor(conn)
    seq, head_hash = cursor.lock_head()
    heads = _incident_heads(cursor, list(groups))
    known = _records_by_key(
        cursor, [entry.key for entries in groups.values() for entry in entries if entry.key is not None]
    )
    now = datetime.now(UTC)
    stored_now = cursor.timestamp(now)
    result: dict[str, list[LedgerRecord]] = {}
    rows: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for incident_key, entries in groups.items():
        prior = heads.get(incident_key)
        incident_hash, count = prior if prior is not None else (None, 0)
        records: list[LedgerRecord] = []
        for body, text, key in entries:
            existing = known.get(key) if key is not None else None
            if existing is not None:
                if (existing.incident_key, existing.kind) != (incident_key, kind):
                    raise IdempotencyConflict(
                        f"idempotency key {key!r} already names record {existing.seq} "
                        f"({existing.kind.value} of incident {existing.incident_key!r})"
                    )
                records.append(existing)
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
            rows.append({**fields, "payload": text, "created_at": stored_now})
            # built as validated: every field is ours and of its type (plain_payload checked the payload)
            record = LedgerRecord.model_construct(**{**fields, "kind": kind})
            records.append(record)
            if key is not None:
                known[key] = record
            seq, head_hash, incident_hash, count = record.seq, record.hash, record.hash, count + 1
        result[incident_key] = records
        if incident_hash is not None and (prior is None or incident_hash != prior[0]):
            head = {"incident_key": incident_key, "seq": seq, "hash": incident_hash, "count": count}
            (added if prior is None else moved).append(head)
    if rows:
        cursor.insert_records(rows)
        cursor.move_head(seq, head_hash)
    if added:
        cursor.add_incident_heads(added)
    if moved:
        cursor.move_incident_heads(moved)
    return result


def _incident_heads(cursor: DriverCursor, incident_keys: list[str]) -> dict[str, tuple[str, int]]:
    """Hash and record count of each incident's head, for those that have one."""
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(incident_keys), _KEY_CHUNK):
        found.update(cursor.incident_heads(incident_keys[start : start + _KEY_CHUNK]))
    return found


_KEY_CHUNK = 500  # bound parameters per statement: SQLite before 3.32 allows 999


def _records_by_key(cursor: DriverCursor, keys: list[str]) -> dict[str, LedgerRecord]:
    unique = sorted(set(keys))
    found: dict[str, LedgerRecord] = {}
    for start in range(0, len(unique), _KEY_CHUNK):
        for row in cursor.records_by_keys(unique[start : start + _KEY_CHUNK]):
            record = to_record(row)
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
