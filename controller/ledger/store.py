"""The Ledger: append-only, hash-chained audit records of every incident step, on SQLite or PostgreSQL.

There is deliberately no update or delete method. Every append runs in a serialised transaction that reads the
chain head, writes the record, and moves both the global and the incident head, so the chain stays linear
and gap-free under many concurrent workers (see engine.py for how each backend serialises); appends made at
the same time by threads of one process share one transaction (commit.py), and each returns once it commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Connection, Engine

from autonomy_controller.controller.ledger import schema
from autonomy_controller.controller.ledger.commit import committer
from autonomy_controller.controller.ledger.driver import driver_read
from autonomy_controller.controller.ledger.engine import configure_engine, install_schema, make_engine, read_snapshot
from autonomy_controller.controller.ledger.excerpts import ExcerptPage, read_excerpts
from autonomy_controller.controller.ledger.export import build_export
from autonomy_controller.controller.ledger.reads import (
    DbIndex,
    first_record,
    incident_records,
    read_head,
    read_incident_head,
    read_incident_heads,
    stream,
    to_record,
)
from autonomy_controller.controller.ledger.records import ChainHead, IncidentHead, LedgerRecord, RecordKind
from autonomy_controller.controller.ledger.report import VerifyReport
from autonomy_controller.controller.ledger.verify import check_incident, check_ledger
from autonomy_controller.controller.ledger.writes import (
    Entry,
    append_groups_entries,
    check_text,
    parse_kind,
    plain_payload,
)


class Ledger:
    """Append-only audit ledger. Thread-safe; share one instance per process."""

    def __init__(self, engine: Engine, *, create_schema: bool = True) -> None:
        configure_engine(engine)
        self.engine = engine
        self.committer = committer(engine)
        if create_schema:
            install_schema(engine)

    @classmethod
    def from_url(cls, url: str, **engine_kwargs: Any) -> Ledger:
        """`sqlite:///path/ledger.db` or `postgresql+psycopg://user:pw@host/db` (bare postgresql:// works too)."""
        return cls(make_engine(url, **engine_kwargs))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------------

    def append(
        self,
        incident_key: str,
        kind: RecordKind | str,
        actor: str,
        payload: Mapping[str, Any] | BaseModel,
        *,
        idempotency_key: str | None = None,
    ) -> LedgerRecord:
        """Append one record and return it; with an idempotency key already used, return that record instead.

        Temporal retries an activity whose result it did not see, so the key (e.g. `<workflow id>:<step>`)
        makes the retry return the first write. The payload of a retry may differ (it was recomputed); the
        first write wins and is what the audit shows. Reusing a key for another incident or kind raises
        IdempotencyConflict.
        """
        return self.append_many(incident_key, kind, actor, [(payload, idempotency_key)])[0]

    def append_many(
        self,
        incident_key: str,
        kind: RecordKind | str,
        actor: str,
        entries: Sequence[tuple[Mapping[str, Any] | BaseModel, str | None]],
    ) -> list[LedgerRecord]:
        """Append several records of one incident in one transaction (an alert storm: one fsync, not 200).

        Each entry is (payload, idempotency key); an entry whose key is already used returns that record.
        """
        return self.append_groups(kind, actor, {incident_key: entries})[incident_key]

    def append_groups(
        self,
        kind: RecordKind | str,
        actor: str,
        groups: Mapping[str, Sequence[tuple[Mapping[str, Any] | BaseModel, str | None]]],
    ) -> dict[str, list[LedgerRecord]]:
        """`append_many` for several incidents in one transaction: a request carrying alerts of 200 sources
        is one fsync, not 200. Returns each incident's records, in its entries' order."""
        record_kind = parse_kind(kind)
        check_text(actor=actor)
        prepared: dict[str, list[Entry]] = {}
        for incident_key, entries in groups.items():
            check_text(incident_key=incident_key)
            prepared[incident_key] = [plain_payload(record_kind, payload, key) for payload, key in entries]
            for entry in prepared[incident_key]:
                check_text(idempotency_key=entry.key)

        def write(conn: Connection) -> dict[str, list[LedgerRecord]]:
            return append_groups_entries(conn, record_kind, actor, prepared)

        return self.committer.run(self.engine, write)  # returns once committed (commit.py: group commit)

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, seq: int) -> LedgerRecord | None:
        """The record a workflow refers to by seq (e.g. a raw alert or an LLM transcript)."""
        with read_snapshot(self.engine) as conn:
            return first_record(conn, schema.records.c.seq == seq)

    def find(self, idempotency_key: str) -> LedgerRecord | None:
        with driver_read(self.engine) as cursor:  # one statement: its own snapshot
            rows = cursor.records_by_keys([idempotency_key])
        return to_record(rows[0]) if rows else None

    def records(
        self, incident_key: str, kinds: Iterable[RecordKind | str] | None = None, latest: int | None = None
    ) -> list[LedgerRecord]:
        """An incident's records in the order they were written; `latest`: only that many, the most recent."""
        kind_values = None if kinds is None else [parse_kind(k).value for k in kinds]
        with driver_read(self.engine) as cursor:  # one statement: its own snapshot
            rows = cursor.incident_records(incident_key, kind_values, latest)
        return [to_record(row) for row in rows]

    def count(self, incident_key: str, kinds: Iterable[RecordKind | str] | None = None) -> int:
        """How many records an incident has (of `kinds`), counted by the index, no payload read."""
        kind_values = None if kinds is None else [parse_kind(k).value for k in kinds]
        with driver_read(self.engine) as cursor:
            return cursor.incident_count(incident_key, kind_values)

    def excerpts(
        self, after: int, kinds: Iterable[RecordKind | str], keys: Sequence[str], limit: int = 5000
    ) -> ExcerptPage:
        """Records of `kinds` across all incidents with seq > `after`, in seq order, each with only the payload
        `keys`: for views that fold the ledger incrementally (ask again after `page.through`)."""
        kind_values = [parse_kind(k) for k in kinds]
        with read_snapshot(self.engine) as conn:
            return read_excerpts(conn, after, kind_values, list(keys), limit)

    def head(self) -> ChainHead:
        """Seq and hash of the last record: publish it elsewhere to anchor the chain."""
        with read_snapshot(self.engine) as conn:
            return read_head(conn)

    def incident_head(self, incident_key: str) -> IncidentHead | None:
        with read_snapshot(self.engine) as conn:
            return read_incident_head(conn, incident_key)

    def incidents(self) -> list[IncidentHead]:
        """Every incident the ledger knows, most recently written last."""
        with read_snapshot(self.engine) as conn:
            return read_incident_heads(conn)

    def export_incident(self, incident_key: str) -> dict[str, Any]:
        """An incident's records and head as a JSON-ready document that `verify_export` can check offline."""
        with read_snapshot(self.engine) as conn:
            rows = incident_records(conn, incident_key)
            return build_export(incident_key, rows, read_incident_head(conn, incident_key), datetime.now(UTC))

    def export_incident_json(self, incident_key: str, indent: int | None = 2) -> str:
        return json.dumps(self.export_incident(incident_key), indent=indent, ensure_ascii=False)

    # -- verifying -----------------------------------------------------------------------------------------

    def verify(self, incident_key: str | None = None) -> VerifyReport:
        """Recompute every hash and link (of the ledger, or of one incident) and name the first bad record.

        Runs in one snapshot, so it can run while workers append. It trusts nothing the database enforces
        (triggers, constraints): whoever can bypass them is exactly whom the chain is for.
        """
        with read_snapshot(self.engine) as conn:
            index = DbIndex(conn)
            if incident_key is None:
                return check_ledger(stream(conn), read_head(conn), read_incident_heads(conn), index)
            return check_incident(
                incident_key, stream(conn, incident_key), read_incident_head(conn, incident_key), index
            )
