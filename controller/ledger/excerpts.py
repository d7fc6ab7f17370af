"""Reading many records across incidents cheaply: a few payload keys, in seq order, after a seq.

Views that fold the whole ledger (triage's source history and people's feedback) read every record of a few
kinds once and then only what was appended since. Records never change, and seq is gap-free and assigned in
commit order under the append lock, so "every record up to the head read in the same snapshot" is complete:
a reader that remembers `through` and asks for what comes after misses nothing and reads nothing twice.

Only the asked top-level payload keys leave the database (JSON functions on each backend): an alert's raw
sensor record can be kilobytes, and a view that needs its rule ids should not parse the rest.
An excerpt is not verifiable on its own (its payload is partial): `Ledger.verify` is the tamper check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from autonomy_controller.controller.ledger.driver import DriverCursor
from autonomy_controller.controller.ledger.errors import LedgerError
from autonomy_controller.controller.ledger.reads import _parse_timestamp
from autonomy_controller.controller.ledger.records import RecordKind

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_PAGE = 20_000


class RecordExcerpt(BaseModel):
    """A record's identity and the asked payload keys (absent keys are null)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    incident_key: str
    kind: RecordKind
    actor: str
    created_at: datetime
    payload: dict[str, Any]


class ExcerptPage(BaseModel):
    records: list[RecordExcerpt]
    through: int
    """Every record of the asked kinds with seq <= through is in this page or an earlier one: ask again after it."""
    more: bool
    """The page was full: records after `through` may already exist."""


def _select(cursor: DriverCursor, keys: Sequence[str], kinds: Sequence[RecordKind], params: dict[str, Any]) -> str:
    """The SQL per backend. PostgreSQL: the page is cut first (`page`), then each payload is parsed once into
    jsonb (`parsed`, materialised so the planner does not inline the cast into every key; json's `->` would
    re-parse the text per key). SQLite: json_extract keeps objects and arrays as JSON inside json_object, and
    strings as strings."""
    p = cursor.p
    kind_names = [f"kind{n}" for n in range(len(kinds))]
    params.update({name: kind.value for name, kind in zip(kind_names, kinds, strict=True)})
    where = f"seq > {p('after')} AND seq <= {p('upto')} AND kind IN ({', '.join(p(n) for n in kind_names)})"
    if cursor.postgres:
        pairs = ", ".join(f"'{k}', j -> '{k}'" for k in keys)
        return (
            "WITH page AS MATERIALIZED (SELECT seq, incident_key, kind, actor, created_at, payload FROM ledger_record "
            f"WHERE {where} ORDER BY seq LIMIT {p('limit')}), "
            "parsed AS MATERIALIZED (SELECT seq, incident_key, kind, actor, created_at, CAST(payload AS jsonb) AS j "
            "FROM page) "
            f"SELECT seq, incident_key, kind, actor, created_at, CAST(jsonb_build_object({pairs}) AS text) AS excerpt "
            "FROM parsed ORDER BY seq"
        )
    pairs = ", ".join(f"'{k}', json_extract(payload, '$.{k}')" for k in keys)
    return (
        f"SELECT seq, incident_key, kind, actor, created_at, json_object({pairs}) AS excerpt FROM ledger_record "
        f"WHERE {where} ORDER BY seq LIMIT {p('limit')}"
    )


def read_excerpts(
    conn: Connection, after: int, kinds: Sequence[RecordKind], keys: Sequence[str], limit: int
) -> ExcerptPage:
    """Records of `kinds` with seq > after, at most `limit`, each with the payload `keys` (inside one snapshot)."""
    bad = [k for k in keys if not _KEY.match(k)]
    if bad or not keys:
        raise LedgerError(f"payload keys must be plain identifiers (got {bad or 'none'})")
    if not kinds:
        raise LedgerError("give at least one record kind")
    limit = max(1, min(limit, MAX_PAGE))
    cursor = DriverCursor(conn)  # a fold reads a page per step of the loop: the driver's cursor (driver.py)
    upto = cursor.head_seq()
    params: dict[str, Any] = {"after": after, "upto": upto, "limit": limit}
    try:
        rows = cursor.rows(_select(cursor, keys, kinds, params), params)
    except DBAPIError as exc:  # e.g. a payload edited to non-JSON: the database cannot parse it
        raise LedgerError(f"records after seq {after} are unreadable ({exc.orig}); run verify") from exc
    records: list[RecordExcerpt] = []
    for row in rows:
        m = row
        try:
            payload = json.loads(m["excerpt"])
            records.append(
                RecordExcerpt.model_construct(  # the columns' types are the schema's; skip validating 100k rows
                    seq=int(m["seq"]),
                    incident_key=m["incident_key"],
                    kind=RecordKind(m["kind"]),
                    actor=m["actor"],
                    created_at=_parse_timestamp(m["created_at"]),
                    payload=payload if isinstance(payload, dict) else {},
                )
            )
        except (ValueError, TypeError) as exc:
            raise LedgerError(f"record {m['seq']} is unreadable ({exc}); run verify") from exc
    more = len(rows) == limit
    return ExcerptPage(records=records, through=records[-1].seq if more else upto, more=more)
