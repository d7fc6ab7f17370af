"""investigate.*: read-only lookups answered from the audit ledger, our own record of what we have seen and done.

No external reputation feed is queried: the ledger is real data the controller already holds (every alert it
ingested, every action it executed), and answering from it keeps these actions free of network access, so
their blast radius really is none. Each lookup scans only the newest SCAN_LIMIT records of the kinds it needs
(newest first, in one read snapshot) and says in its evidence whether that cap cut the scan short: history
older than the cap is not consulted. A per-address index would replace the scan when ledgers grow large.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from actions.adapters._common import check_action, parse_params
from actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from actions.params import HostLookupParams, IpLookupParams
from controller.ledger import Ledger, RecordKind
from controller.ledger import schema as ledger_schema
from controller.ledger.engine import read_snapshot

SCAN_LIMIT = 50_000
"""Records (of the kinds a lookup needs) read per call, newest first."""
LIST_LIMIT = 100
"""Longest list (incident keys, actions) put in evidence: evidence is written to the ledger."""
ACTION_KINDS = (RecordKind.EXECUTION, RecordKind.COMPENSATION, RecordKind.REVERT)
EFFECTIVE = {ActionStatus.DONE.value, ActionStatus.ALREADY_DONE.value}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Scanned:
    seq: int
    incident_key: str
    kind: RecordKind
    payload: dict[str, Any]


class NewestRecords:
    """The newest `limit` records of some kinds, streamed; after iterating, `summary()` says what was read."""

    def __init__(self, ledger: Ledger, kinds: Iterable[RecordKind], limit: int = SCAN_LIMIT) -> None:
        self.ledger = ledger
        self.kinds = [k.value for k in kinds]
        self.limit = limit
        self.scanned = 0
        self.unreadable = 0
        self.truncated = False

    def __iter__(self) -> Iterator[Scanned]:
        r = ledger_schema.records
        query = (
            select(r.c.seq, r.c.incident_key, r.c.kind, r.c.payload)
            .where(r.c.kind.in_(self.kinds))
            .order_by(r.c.seq.desc())
            .limit(self.limit + 1)  # one more than the cap tells "cut short" from "exactly the cap"
        )
        with read_snapshot(self.ledger.engine) as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                if self.scanned == self.limit:
                    self.truncated = True
                    return
                self.scanned += 1
                try:
                    payload = json.loads(row.payload)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):  # tampering is `ledger verify`'s to report; skip it here
                    self.unreadable += 1
                    continue
                yield Scanned(row.seq, row.incident_key, RecordKind(row.kind), payload)

    def summary(self) -> dict[str, Any]:
        return {
            "records_scanned": self.scanned,
            "scan_limit": self.limit,
            "scan_truncated": self.truncated,
            "unreadable_records": self.unreadable,
        }


def as_network(value: object) -> Network | None:
    """An address or network as a network (an address is a /32 or /128); None for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def overlaps(query: Network, value: object) -> bool:
    """Same address, or one inside the other: a lookup for 198.51.100.0/24 finds alerts from .66 and vice versa."""
    other = as_network(value)
    return other is not None and other.version == query.version and query.overlaps(other)


class _Seen:
    """Counts alerts per incident and category and tracks the observed time range."""

    def __init__(self) -> None:
        self.count = 0
        self.incidents: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()
        self.first: datetime | None = None
        self.last: datetime | None = None

    def add(self, record: Scanned) -> None:
        self.count += 1
        self.incidents[record.incident_key] += 1
        self.categories[str(record.payload.get("category"))] += 1
        observed = _timestamp(record.payload.get("observed_at"))
        if observed is not None:
            self.first = observed if self.first is None or observed < self.first else self.first
            self.last = observed if self.last is None or observed > self.last else self.last

    def report(self, prefix: str = "") -> dict[str, Any]:
        keys = list(self.incidents)  # newest first: the scan runs newest first
        return {
            f"{prefix}alert_count": self.count,
            f"{prefix}incident_count": len(keys),
            f"{prefix}incident_keys": keys[:LIST_LIMIT],
            f"{prefix}categories": dict(self.categories.most_common()),
            f"{prefix}first_seen": self.first.isoformat() if self.first else None,
            f"{prefix}last_seen": self.last.isoformat() if self.last else None,
        }


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class _LedgerLookup:
    """Shared shape of the investigate adapters: validate, scan, answer DONE with the findings as evidence."""

    action: str
    params_model: type[BaseModel]

    def __init__(self, ledger: Ledger, scan_limit: int = SCAN_LIMIT) -> None:
        self.ledger = ledger
        self.scan_limit = scan_limit

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, self.params_model)
        try:
            detail, reference, evidence = self.lookup(request, params)
        except OperationalError as exc:  # database unreachable or locked: worth a retry
            raise TransientAdapterError(f"ledger unavailable for {self.action}: {exc.orig or exc}") from None
        except SQLAlchemyError as exc:
            raise AdapterError(f"ledger query for {self.action} failed: {exc}") from None
        if evidence.get("scan_truncated"):
            detail += f" (only the newest {self.scan_limit} records were scanned)"
        return ActionOutcome(status=ActionStatus.DONE, detail=detail, reference=reference, evidence=evidence)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        """Read-only: nothing to read back, so the check is that the lookup answered."""
        ok = outcome.status in (ActionStatus.DONE, ActionStatus.ALREADY_DONE)
        return VerifyOutcome(ok=ok, detail="lookup returned a result" if ok else f"lookup {outcome.status.value}")

    def scan(self, kinds: Iterable[RecordKind]) -> NewestRecords:
        return NewestRecords(self.ledger, kinds, self.scan_limit)

    def lookup(self, request: ActionRequest, params: Any) -> tuple[str, str, dict[str, Any]]:
        raise NotImplementedError


class RelatedAlertsAdapter(_LedgerLookup):
    """Alerts from the same source across every incident: is this attacker new, or working through us?"""

    action = "investigate.related_alerts"
    params_model = IpLookupParams

    def lookup(self, request: ActionRequest, params: IpLookupParams) -> tuple[str, str, dict[str, Any]]:
        query = ipaddress.ip_network(params.ip, strict=False)
        seen = _Seen()
        records = self.scan([RecordKind.ALERT])
        for record in records:
            if overlaps(query, record.payload.get("src_ip")):
                seen.add(record)
        found = seen.report()
        others = [k for k in seen.incidents if k != request.incident_key]
        evidence = {"ip": params.ip, **found, "other_incident_count": len(others), **records.summary()}
        detail = (
            f"{seen.count} alerts from {params.ip} in {len(seen.incidents)} incidents ({len(others)} besides this one)"
        )
        return detail, f"{seen.count} alerts / {len(seen.incidents)} incidents", evidence


class IpReputationAdapter(_LedgerLookup):
    """What our own history says about an address: where it appeared, and what we already did about it."""

    action = "investigate.ip_reputation"
    params_model = IpLookupParams

    def lookup(self, request: ActionRequest, params: IpLookupParams) -> tuple[str, str, dict[str, Any]]:
        query = ipaddress.ip_network(params.ip, strict=False)
        as_source, as_destination = _Seen(), _Seen()
        actions: list[dict[str, Any]] = []
        records = self.scan([RecordKind.ALERT, *ACTION_KINDS])
        for record in records:
            if record.kind is RecordKind.ALERT:
                if overlaps(query, record.payload.get("src_ip")):
                    as_source.add(record)
                if overlaps(query, record.payload.get("dst_ip")):
                    as_destination.add(record)
            else:
                action = _action_against(query, record)
                if action is not None:
                    actions.append(action)
        effective = [a for a in actions if a["status"] in EFFECTIVE]
        evidence = {
            "ip": params.ip,
            **as_source.report("source_"),
            **as_destination.report("destination_"),
            "action_count": len(actions),
            "effective_action_count": len(effective),
            "actions": actions[:LIST_LIMIT],
            **records.summary(),
        }
        detail = (
            f"{params.ip}: source of {as_source.count} alerts in {len(as_source.incidents)} incidents, "
            f"destination of {as_destination.count}; {len(effective)} of {len(actions)} actions against it took effect"
        )
        reference = f"{len(as_source.incidents)} incidents / {len(actions)} actions"
        return detail, reference, evidence


def _action_against(query: Network, record: Scanned) -> dict[str, Any] | None:
    """An execution/compensation/revert record whose params name the address (or a network around it)."""
    request = record.payload.get("request")
    if not isinstance(request, dict):
        return None
    params = request.get("params")
    if not isinstance(params, dict) or not overlaps(query, params.get("ip")):
        return None
    outcome = record.payload.get("outcome")
    status = outcome.get("status") if isinstance(outcome, dict) else None
    return {
        "seq": record.seq,
        "incident_key": record.incident_key,
        "kind": record.kind.value,
        "action": request.get("action"),
        "action_id": request.get("action_id"),
        "ip": params.get("ip"),
        "status": status,
    }


class HostActivityAdapter(_LedgerLookup):
    """Recent alerts that targeted a host (by asset name or destination address): how hard is it being hit?"""

    action = "investigate.host_activity"
    params_model = HostLookupParams

    def lookup(self, request: ActionRequest, params: HostLookupParams) -> tuple[str, str, dict[str, Any]]:
        host = params.host.lower()
        host_ip = _canonical_ip(params.host)
        seen = _Seen()
        by_asset = by_dst_ip = 0
        sources: Counter[str] = Counter()
        records = self.scan([RecordKind.ALERT])
        for record in records:
            asset = record.payload.get("asset")
            asset_hit = isinstance(asset, str) and asset.lower() == host
            dst_hit = host_ip is not None and _canonical_ip(record.payload.get("dst_ip")) == host_ip
            if not (asset_hit or dst_hit):
                continue
            seen.add(record)
            by_asset += asset_hit
            by_dst_ip += dst_hit
            src = record.payload.get("src_ip")
            if isinstance(src, str) and src:
                sources[src] += 1
        evidence = {
            "host": params.host,
            **seen.report(),
            "matched_by_asset": by_asset,
            "matched_by_dst_ip": by_dst_ip,
            "top_sources": dict(sources.most_common(20)),
            "distinct_sources": len(sources),
            **records.summary(),
        }
        detail = (
            f"{seen.count} alerts against {params.host} in {len(seen.incidents)} incidents from {len(sources)} sources"
        )
        return detail, f"{seen.count} alerts / {len(seen.incidents)} incidents", evidence


def _canonical_ip(value: object) -> str | None:
    """A host name that is an address matches alerts' dst_ip; a real name never does."""
    if not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None
