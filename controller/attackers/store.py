"""Profiles in the ledger's database: folded page by page from the ledger, each page one transaction.

The cursor row (`attacker_cursor.through`) is moved in the transaction that saves the profiles, under a lock
(SQLite's BEGIN IMMEDIATE; FOR UPDATE on PostgreSQL), so several submitters folding at once fold each record
exactly once, and a fold that fails leaves profiles and cursor as they were: the next fold redoes the page.

Eviction (docs/attackers.md, "Bounds"): beyond `Limits.max_profiles`, the profiles of the lowest stage reached
on connected evidence go first, and among those the least recently seen. Benign traffic (an access log's clients
reach no stage), scanners and forged packets never push out an attacker that got further. An evicted source that
returns starts a new profile; its past stays in the ledger.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Connection

from autonomy_controller.controller.attackers.fold import add_action_record, add_alert, new_profile
from autonomy_controller.controller.attackers.observe import TrackingConfig, observe
from autonomy_controller.controller.attackers.profile import AttackerProfile, Limits, stage_rank
from autonomy_controller.controller.ledger import Ledger, RecordExcerpt, RecordKind
from autonomy_controller.controller.ledger import schema as ledger_schema
from autonomy_controller.controller.ledger.canonical import canonical_json
from autonomy_controller.controller.ledger.driver import driver_read
from autonomy_controller.controller.ledger.engine import read_snapshot
from autonomy_controller.controller.ledger.excerpts import read_excerpts
from autonomy_controller.controller.ledger.observations import case_address
from autonomy_controller.controller.ledger.reads import read_head
from autonomy_controller.controller.models import canonical_ip

log = logging.getLogger(__name__)

KINDS = (
    RecordKind.ALERT,
    RecordKind.ACCESS,
    RecordKind.DECISION,
    RecordKind.APPROVAL,
    RecordKind.EXECUTION,
    RecordKind.VERIFICATION,
    RecordKind.COMPENSATION,
    RecordKind.REVERT,
)
KEYS = (
    # ALERT, ACCESS
    "id", "source", "observed_at", "category", "src_ip", "dst_ip", "dst_port", "asset", "url", "rule_ids", "blocked",
    "raw", "provenance", "src_connected",
    # DECISION, APPROVAL, EXECUTION, VERIFICATION, COMPENSATION, REVERT
    "action_id", "action", "verdict", "shadow", "event", "request", "outcome", "purpose", "ok",
)  # fmt: skip
OBSERVED = (RecordKind.ALERT, RecordKind.ACCESS)
"""Records whose payload is an Alert: what the source did (the other kinds are what the controller did)."""
PAGE = 2000
_CHUNK = 500  # addresses per IN (...) list
_ADD_HINT = "INSERT INTO attacker_hint (kind, value, address) VALUES (:kind, :value, :address) ON CONFLICT DO NOTHING"
_P, _H, _C = ledger_schema.attacker_profiles, ledger_schema.attacker_hints, ledger_schema.attacker_cursor


class FoldReport(BaseModel):
    records: int = 0
    alerts: int = 0
    profiles_touched: int = 0
    profiles_created: int = 0
    evicted: int = 0
    skipped: int = 0
    """Alert records that could not be read as alerts (an edited ledger: `autonomy audit verify` says more)."""
    through: int = 0


class StoreStatus(BaseModel):
    through: int
    """Every ledger record up to this seq is in the profiles."""
    head: int
    profiles: int
    evicted: int


@dataclass
class _Page:
    profiles: dict[str, AttackerProfile]
    created: set[str]


def hints_of(profile: AttackerProfile) -> list[tuple[str, str]]:
    """The profile's linking hints: its network, and a digest of each User-Agent (a column's worth, any length)."""
    agents = [("user_agent", hashlib.sha256(ua.encode()).hexdigest()[:32]) for ua in profile.user_agents]
    return [("network", profile.network), *agents]


class AttackerStore:
    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine
        self.committer = ledger.committer

    # -- folding -----------------------------------------------------------------------------------------

    def fold(self, config: TrackingConfig, limits: Limits, page_size: int = PAGE) -> FoldReport:
        """Fold every ledger record appended since the last fold into the profiles."""
        report = FoldReport()

        def page(conn: Connection) -> bool:
            return self._fold_page(conn, config, limits, page_size, report)

        # through the ledger's group commit: this process's appends never wait in SQLite's busy handler for it
        while self.committer.run(self.engine, page):
            pass
        return report

    def _fold_page(
        self, conn: Connection, config: TrackingConfig, limits: Limits, page_size: int, report: FoldReport
    ) -> bool:
        """One page in one transaction; True when the ledger holds more to fold. The report is only added to once
        the page's writes are done (a page that fails adds nothing, and its transaction or savepoint is undone)."""
        through, count, evicted = _lock_cursor(conn)
        page = read_excerpts(conn, through, KINDS, KEYS, page_size)
        report.through = max(report.through, through)
        if page.through == through:
            return False
        state = _Page(_load(conn, _addresses(page.records)), set())
        folded = FoldReport()
        for record in page.records:
            self._fold_one(record, state, config, limits, folded)
        _save(conn, state)
        gone = _evict(conn, count + len(state.created) - limits.max_profiles)
        conn.execute(
            _C.update()
            .where(_C.c.id == 1)
            .values(through=page.through, profiles=count + len(state.created) - gone, evicted=evicted + gone)
        )
        report.through = page.through
        report.records += len(page.records)
        report.alerts += folded.alerts
        report.skipped += folded.skipped
        report.profiles_touched += len(state.profiles)
        report.profiles_created += len(state.created)
        report.evicted += gone
        return page.more

    @staticmethod
    def _fold_one(
        record: RecordExcerpt, state: _Page, config: TrackingConfig, limits: Limits, report: FoldReport
    ) -> None:
        if record.kind not in OBSERVED:
            address = case_address(record.incident_key)  # the controller's actions in a case are about its source
            profile = state.profiles.get(address) if address else None
            if profile is not None:
                add_action_record(profile, record, limits)
            return
        source = record.payload.get("src_ip")
        if not isinstance(source, str) or not source:
            return  # an event without a source (an IDS decoder event): nobody to profile
        try:
            obs = observe(record.seq, record.payload, config)
        except (ValueError, TypeError) as exc:
            report.skipped += 1
            log.warning("attacker profiles: alert record %s skipped: %s", record.seq, exc)
            return
        profile = state.profiles.get(source)
        if profile is None:
            profile = state.profiles[source] = new_profile(source, obs.at)
            state.created.add(source)
        incident = record.incident_key if record.kind is RecordKind.ALERT else None  # an access line is in no case
        add_alert(profile, obs, incident, limits)
        report.alerts += 1

    # -- reading -----------------------------------------------------------------------------------------

    def get(self, address: str) -> AttackerProfile | None:
        """The profile of an address (any spelling: it is canonicalised); ValueError when it is not an address."""
        address = canonical_ip(address) or ""
        with driver_read(self.engine) as cursor:  # read for every report of a case: the driver's cursor
            text_ = cursor.scalar(f"SELECT profile FROM {_P.name} WHERE address = {cursor.p('a')}", {"a": address})
        return AttackerProfile.model_validate_json(text_) if text_ is not None else None

    def profiles(self, limit: int = 50, min_stage: int = 0) -> list[AttackerProfile]:
        """Profiles, furthest stage first, then the most recently seen."""
        query = (
            select(_P.c.profile)
            .where(_P.c.stage_rank >= min_stage)
            .order_by(_P.c.stage_rank.desc(), _P.c.last_seen.desc(), _P.c.address)
            .limit(limit)
        )
        with read_snapshot(self.engine) as conn:
            return [AttackerProfile.model_validate_json(row.profile) for row in conn.execute(query)]

    def linked(self, profile: AttackerProfile, limit: int = 50) -> dict[str, list[str]]:
        """Other profiled addresses sharing a hint with this one (address -> hint kinds): hints, not proof."""
        mine = hints_of(profile)
        linked: dict[str, list[str]] = {}
        with driver_read(self.engine) as cursor:  # hints, not proof: one statement per hint, no snapshot needed
            sql = (
                f"SELECT address FROM {_H.name} WHERE kind = {cursor.p('kind')} AND value = {cursor.p('value')} "
                f"ORDER BY address LIMIT {cursor.p('limit')}"
            )
            for kind, value in mine:
                for row in cursor.rows(sql, {"kind": kind, "value": value, "limit": limit + 1}):
                    address = row["address"]
                    if address != profile.address and kind not in linked.get(address, []):
                        linked.setdefault(address, []).append(kind)
        return dict(sorted(linked.items())[:limit])

    def status(self) -> StoreStatus:
        with read_snapshot(self.engine) as conn:
            through, profiles, evicted = _cursor(conn)
            return StoreStatus(through=through, head=read_head(conn).seq, profiles=profiles, evicted=evicted)


def _cursor(conn: Connection, lock: bool = False) -> tuple[int, int, int]:
    query = select(_C.c.through, _C.c.profiles, _C.c.evicted).where(_C.c.id == 1)
    row = conn.execute(query.with_for_update() if lock else query).one()
    return int(row.through), int(row.profiles), int(row.evicted)


def _lock_cursor(conn: Connection) -> tuple[int, int, int]:
    return _cursor(conn, lock=True)


def _addresses(records: Iterable[RecordExcerpt]) -> set[str]:
    found: set[str] = set()
    for record in records:
        address = record.payload.get("src_ip") if record.kind in OBSERVED else case_address(record.incident_key)
        if isinstance(address, str) and address:
            found.add(address)
    return found


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _load(conn: Connection, addresses: set[str]) -> dict[str, AttackerProfile]:
    loaded: dict[str, AttackerProfile] = {}
    for chunk in _chunks(sorted(addresses)):
        for row in conn.execute(select(_P.c.profile).where(_P.c.address.in_(chunk))):
            profile = AttackerProfile.model_validate_json(row.profile)
            loaded[profile.address] = profile
    return loaded


def _save(conn: Connection, state: _Page) -> None:
    rows = [
        {
            "b_address": p.address,
            "network": p.network,
            "stage_rank": stage_rank(p.stage),
            "connected_rank": stage_rank(p.connected_stage),
            "first_seen": _utc(p.first_seen),
            "last_seen": _utc(p.last_seen),
            "alerts": p.alerts,
            "through_seq": p.through_seq,
            "profile": canonical_json(p.model_dump(mode="json")),
        }
        for p in state.profiles.values()
    ]
    created = [r for r in rows if r["b_address"] in state.created]
    changed = [r for r in rows if r["b_address"] not in state.created]
    if created:
        conn.execute(
            _P.insert(),
            [{**{k: v for k, v in r.items() if k != "b_address"}, "address": r["b_address"]} for r in created],
        )
    if changed:
        values: dict[str, Any] = {k: bindparam(k) for k in changed[0] if k != "b_address"}
        conn.execute(_P.update().where(_P.c.address == bindparam("b_address")).values(values), changed)
    hints = [{"kind": k, "value": v, "address": p.address} for p in state.profiles.values() for k, v in hints_of(p)]
    if hints:
        conn.execute(text(_ADD_HINT), hints)


def _utc(value: datetime) -> datetime:
    """A time for the columns lists and eviction order by, in UTC: SQLite keeps a time's digits without its offset,
    so sensors writing local time would be ordered by their wall clocks. One too near year 1 or 9999 to move stays."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return value


def _evict(conn: Connection, excess: int) -> int:
    if excess <= 0:
        return 0
    # by the stage reached on connected evidence: forged packets' stages do not pin their addresses (profile.py)
    order = (_P.c.connected_rank, _P.c.last_seen, _P.c.address)
    victims = list(conn.execute(select(_P.c.address).order_by(*order).limit(excess)).scalars())
    for chunk in _chunks(victims):
        conn.execute(_P.delete().where(_P.c.address.in_(chunk)))
        conn.execute(_H.delete().where(_H.c.address.in_(chunk)))
    return len(victims)


def profile_count(conn: Connection) -> int:
    """Rows in the table (tests compare it with the cursor's running count)."""
    return int(conn.execute(select(func.count()).select_from(_P)).scalar_one())
