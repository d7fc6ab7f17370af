"""investigate.*: read-only lookups answered from the audit ledger, our own record of what we have seen and done.

No external reputation feed is queried: the ledger is real data the controller already holds (every alert it
ingested, every action it executed), and answering from it keeps these actions free of network access, so
their blast radius really is none. Each lookup scans only the newest SCAN_LIMIT records of the kinds it needs
(newest first, in one read snapshot) and says in its evidence whether that cap cut the scan short: history
older than the cap is not consulted. A per-address index would replace the scan when ledgers grow large.

Every answer says what it covered (`evidence["coverage"]`: sources read, record kinds, the ledger's head and the
seq range scanned, their time window, record counts, whether the cap cut it), and verification checks that
coverage against the ledger, not just that the lookup answered: the ledger must hold exactly the records the
answer claims to have read in that range (all of them up to the head unless the cap cut the scan), with the
same first and last times; host_activity also re-resolves the host through the inventory. An answer that does
not say what it covered, or whose coverage the ledger contradicts, fails verification.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from autonomy_controller.actions.adapters._common import check_action, parse_params
from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.params import HostLookupParams, IpLookupParams
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.inventory import AssetIndex, canonical_host_text
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError
from autonomy_controller.controller.decision.runtime import load_policy_bundle
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.ledger import schema as ledger_schema
from autonomy_controller.controller.ledger.engine import read_snapshot
from autonomy_controller.controller.models import canonical_ip, parse_observed_at

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


class Coverage(BaseModel):
    """What one lookup read, as its answer states it (evidence["coverage"]) and verification re-checks it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: list[str]
    """Where the answer comes from: "ledger", and "inventory" for lookups that resolve hosts."""
    kinds: list[str]
    """Ledger record kinds read."""
    head_seq: int
    """The ledger's newest record (any kind) when the lookup read it: the answer is as of this record."""
    first_seq: int | None
    last_seq: int | None
    """Oldest and newest record of `kinds` read (None when there were none)."""
    window_start: str | None
    window_end: str | None
    """Ledger times of those two records: the time window the answer covers."""
    records_read: int
    unreadable_records: int
    scan_limit: int
    truncated: bool
    """True when the cap cut the scan: records older than first_seq were not read."""


class NewestRecords:
    """The newest `limit` records of some kinds, streamed; after iterating, `coverage()` says what was read."""

    def __init__(self, ledger: Ledger, kinds: Iterable[RecordKind], limit: int = SCAN_LIMIT) -> None:
        self.ledger = ledger
        self.kinds = [k.value for k in kinds]
        self.limit = limit
        self.scanned = 0
        self.unreadable = 0
        self.truncated = False
        self.head_seq = 0
        self._first: tuple[int, datetime] | None = None
        self._last: tuple[int, datetime] | None = None

    def __iter__(self) -> Iterator[Scanned]:
        r = ledger_schema.records
        query = (
            select(r.c.seq, r.c.incident_key, r.c.kind, r.c.payload, r.c.created_at)
            .where(r.c.kind.in_(self.kinds))
            .order_by(r.c.seq.desc())
            .limit(self.limit + 1)  # one more than the cap tells "cut short" from "exactly the cap"
        )
        with read_snapshot(self.ledger.engine) as conn:
            self.head_seq = conn.execute(select(func.coalesce(func.max(r.c.seq), 0))).scalar_one()
            for row in conn.execution_options(yield_per=1000).execute(query):
                if self.scanned == self.limit:
                    self.truncated = True
                    return
                self.scanned += 1
                self._first = (row.seq, row.created_at)  # newest first: the last row read is the oldest
                self._last = self._last or (row.seq, row.created_at)
                try:
                    payload = json.loads(row.payload)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):  # tampering is `ledger verify`'s to report; skip it here
                    self.unreadable += 1
                    continue
                yield Scanned(row.seq, row.incident_key, RecordKind(row.kind), payload)

    def coverage(self, sources: Iterable[str] = ("ledger",)) -> Coverage:
        return Coverage(
            sources=list(sources),
            kinds=self.kinds,
            head_seq=self.head_seq,
            first_seq=self._first[0] if self._first else None,
            last_seq=self._last[0] if self._last else None,
            window_start=_iso(self._first[1]) if self._first else None,
            window_end=_iso(self._last[1]) if self._last else None,
            records_read=self.scanned,
            unreadable_records=self.unreadable,
            scan_limit=self.limit,
            truncated=self.truncated,
        )


def check_coverage(ledger: Ledger, claimed: Coverage) -> str | None:
    """None when the ledger agrees with what an answer says it read; else what disagrees.

    The ledger is append-only, so what an answer read up to its head stays there: records of its kinds in
    [first_seq, head_seq] (from the start when the scan was not cut) must number exactly records_read, and the
    first and last of them must carry the answer's window times. A lookup run on another database, one that
    skipped records, or an answer edited after the fact disagrees."""
    if claimed.truncated and claimed.records_read != claimed.scan_limit:
        return f"says the cap cut its scan, but read {claimed.records_read} of {claimed.scan_limit} records"
    r = ledger_schema.records
    low = claimed.first_seq if claimed.truncated and claimed.first_seq is not None else 0
    in_range = (r.c.kind.in_(claimed.kinds), r.c.seq >= low, r.c.seq <= claimed.head_seq)
    with read_snapshot(ledger.engine) as conn:
        count = conn.execute(select(func.count()).select_from(r).where(*in_range)).scalar_one()
        ends = conn.execute(select(func.min(r.c.seq), func.max(r.c.seq)).where(*in_range)).one()
        times = dict(conn.execute(select(r.c.seq, r.c.created_at).where(r.c.seq.in_([s for s in ends if s]))).all())
    if count != claimed.records_read:
        return f"says it read {claimed.records_read} records up to seq {claimed.head_seq}; the ledger holds {count}"
    if (claimed.first_seq, claimed.last_seq) != tuple(ends):
        return f"says it read seq {claimed.first_seq}-{claimed.last_seq}; the ledger has {ends[0]}-{ends[1]}"
    window = (_iso(times[ends[0]]) if ends[0] else None, _iso(times[ends[1]]) if ends[1] else None)
    if (claimed.window_start, claimed.window_end) != window:
        return f"says it covered {claimed.window_start} to {claimed.window_end}; the ledger's records span {window}"
    return None


def _iso(value: datetime) -> str:
    return value.isoformat()


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
        observed = parse_observed_at(record.payload.get("observed_at"))
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


class _LedgerLookup:
    """Shared shape of the investigate adapters: validate, scan, answer DONE with the findings and their coverage
    as evidence; verify that coverage against the ledger."""

    action: str
    params_model: type[BaseModel]

    def __init__(self, ledger: Ledger, scan_limit: int = SCAN_LIMIT) -> None:
        self.ledger = ledger
        self.scan_limit = scan_limit

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, self.action)
        params = parse_params(request, self.params_model)
        with self._ledger_errors():
            detail, reference, evidence = self.lookup(request, params)
        if evidence["coverage"]["truncated"]:
            detail += f" (only the newest {self.scan_limit} records were scanned)"
        return ActionOutcome(status=ActionStatus.DONE, detail=detail, reference=reference, evidence=evidence)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        """The answer's coverage holds against the ledger (check_coverage), plus what a lookup checks itself."""
        if outcome.status not in (ActionStatus.DONE, ActionStatus.ALREADY_DONE):
            return VerifyOutcome(ok=False, detail=f"lookup {outcome.status.value}")
        try:
            claimed = Coverage.model_validate(outcome.evidence.get("coverage"))
        except ValidationError as exc:
            return VerifyOutcome(
                ok=False, detail=f"the answer does not say what it covered ({exc.error_count()} problems)"
            )
        with self._ledger_errors():
            problem = check_coverage(self.ledger, claimed) or self.check_answer(request, outcome)
        if problem is not None:
            return VerifyOutcome(ok=False, detail=f"coverage not confirmed: the answer {problem}")
        window = f"{claimed.window_start or '-'} to {claimed.window_end or '-'}"
        detail = f"coverage confirmed: {claimed.records_read} {'/'.join(claimed.kinds)} records, {window}"
        return VerifyOutcome(ok=True, detail=detail, evidence={"coverage": claimed.model_dump()})

    def check_answer(self, request: ActionRequest, outcome: ActionOutcome) -> str | None:
        """A lookup's own check beyond the ledger's coverage (None: nothing more to check, or it holds)."""
        return None

    @contextlib.contextmanager
    def _ledger_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:  # database unreachable or locked: worth a retry
            raise TransientAdapterError(f"ledger unavailable for {self.action}: {exc.orig or exc}") from None
        except SQLAlchemyError as exc:
            raise AdapterError(f"ledger query for {self.action} failed: {exc}") from None

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
        evidence = {
            "ip": params.ip,
            **found,
            "other_incident_count": len(others),
            "coverage": records.coverage().model_dump(),
        }
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
            "coverage": records.coverage().model_dump(),
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


InventoryProvider = Callable[[], AssetIndex]
"""The inventory as it is now (workers reload changed config): called per lookup and per verification."""


def bundle_inventory(settings: Settings) -> InventoryProvider:
    """The policy bundle's inventory as it is on disk at each call (a lookup is rare, a stale one is wrong).

    A bundle that does not load fails the lookup with the reason: without the inventory the answer would
    silently miss every alert that names the host only by address."""

    def current() -> AssetIndex:
        try:
            bundle = load_policy_bundle(settings)
        except (LevelConfigError, PolicyBundleError) as exc:
            raise AdapterError(f"inventory unavailable for investigate.host_activity: {exc}") from None
        return AssetIndex(bundle.inventory, bundle.data.get("inventory", {}).get("domain"))

    return current


class HostActivityAdapter(_LedgerLookup):
    """Alerts that targeted a host: how hard is it being hit, and from where?

    The host is resolved through the inventory both ways: a name (any spelling, alias, FQDN) or one of its
    addresses means the asset, and an alert counts when its `asset` resolves to that asset or its `dst_ip`
    is one of the asset's addresses. So "web-01" finds the WAF's alerts, which name only 198.51.100.1. A host
    that is not in the inventory matches by its own name or address only.
    """

    action = "investigate.host_activity"
    params_model = HostLookupParams

    def __init__(self, ledger: Ledger, inventory: InventoryProvider, scan_limit: int = SCAN_LIMIT) -> None:
        super().__init__(ledger, scan_limit)
        self.inventory = inventory

    def lookup(self, request: ActionRequest, params: HostLookupParams) -> tuple[str, str, dict[str, Any]]:
        assets = self.inventory()
        target = resolve_target(assets, params.host)
        seen = _Seen()
        by_asset = by_dst_ip = 0
        sources: Counter[str] = Counter()
        records = self.scan([RecordKind.ALERT])
        for record in records:
            asset_hit = _host_subject(assets, record.payload.get("asset")) == target["subject"]
            dst_hit = _address_subject(assets, record.payload.get("dst_ip")) == target["subject"]
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
            **target,
            **seen.report(),
            "matched_by_asset": by_asset,
            "matched_by_dst_ip": by_dst_ip,
            "top_sources": dict(sources.most_common(20)),
            "distinct_sources": len(sources),
            "coverage": records.coverage(("ledger", "inventory")).model_dump(),
        }
        named = target["asset"] or params.host
        detail = f"{seen.count} alerts against {named} in {len(seen.incidents)} incidents from {len(sources)} sources"
        return detail, f"{seen.count} alerts / {len(seen.incidents)} incidents", evidence

    def check_answer(self, request: ActionRequest, outcome: ActionOutcome) -> str | None:
        """The inventory must still resolve the host as the answer did: else its counts are about another asset."""
        host = outcome.evidence.get("host")
        if not isinstance(host, str):
            return "names no host"
        now = resolve_target(self.inventory(), host)
        answered = {key: outcome.evidence.get(key) for key in now}
        if answered != now:
            return f"resolved {host} as {answered}; the inventory now resolves it as {now}"
        return None


def resolve_target(assets: AssetIndex, host: str) -> dict[str, Any]:
    """What a host reference means: its inventory asset and addresses, and the `subject` alerts are matched on."""
    asset = assets.resolve_host(host)
    if asset is not None:
        addresses = [canonical_ip(str(a)) for a in (assets.get(asset) or {}).get("addresses", []) or []]
        return {"asset": asset, "addresses": addresses, "subject": f"asset:{asset}"}
    subject = _address_subject(assets, host) or _host_subject(assets, host)
    return {"asset": None, "addresses": [], "subject": subject}


def _host_subject(assets: AssetIndex, value: object) -> str | None:
    """An alert's asset as one comparable subject: the inventory asset it names, else its DNS-compared name."""
    if not isinstance(value, str) or not value.strip():
        return None
    owner = assets.resolve_host(value)
    return f"asset:{owner}" if owner else f"host:{canonical_host_text(value)}"


def _address_subject(assets: AssetIndex, value: object) -> str | None:
    """An address as one comparable subject: the inventory asset that owns it, else the canonical address."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        address = canonical_ip(value.strip())
        owner = assets.owner_of_address(value.strip())
    except ValueError:
        return None
    return f"asset:{owner}" if owner else f"ip:{address}"
