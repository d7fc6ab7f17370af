"""One attacker profile: what one source address did, across incidents, categories and sensors.

A profile is a view folded from the ledger (controller/attackers/fold.py), stored as one JSON document per
address beside the ledger. Every list and map in it is capped (`Limits`), so a source that sends a million
distinct paths costs the same as one that sends forty; what a cap turned away is counted in `dropped`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from autonomy_controller.controller.models import Stage, stage_rank

MAX_PROFILES_ENV = "AUTONOMY_ATTACKER_PROFILES_MAX"


@dataclass(frozen=True)
class Limits:
    """Size bounds (docs/attackers.md, "Bounds"): profiles in the database, and entries per profile."""

    max_profiles: int = 10_000
    paths: int = 32
    assets: int = 16
    user_agents: int = 8
    techniques: int = 32
    incidents: int = 16
    actions: int = 32
    seqs: int = 64
    """Ledger seqs cited per profile: the first half and the most recent half of its alert records."""
    pairing: int = 16
    """Requests remembered per profile for pairing an alert with the access log's record of it (exchange.py):
    the latest access-log answers, and the alerts still waiting for theirs."""

    @classmethod
    def from_env(cls) -> Limits:
        value = os.environ.get(MAX_PROFILES_ENV)
        if not value:
            return cls()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{MAX_PROFILES_ENV} must be a positive integer, got {value!r}")
        return cls(max_profiles=int(value))


def _highest(stages: Iterable[StageReached]) -> Stage:
    return max((s.stage for s in stages), key=stage_rank, default="none")


def network_of(address: str) -> str:
    """The linking prefix: the /24 of an IPv4 address, the /64 of an IPv6 one (addresses are canonical)."""
    if ":" not in address:  # string work for IPv4: ipaddress was half the fold's cost at 100k sources
        return address.rsplit(".", 1)[0] + ".0/24"
    ip = ipaddress.ip_address(address)
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class PathStats(BaseModel):
    requests: int = 0
    attacks_refused: int = 0
    """Attack-class alerts on this path a sensor blocked, or whose answer was an error (4xx/5xx)."""
    attacks_through: int = 0
    """Attack-class alerts on this path nothing refused (an IDS sees, it does not stop). Includes alerts whose
    answer their sensor did not see while the access log's record of the request has not come (exchange.py)."""
    app_success: int = 0
    """Requests the application itself answered 2xx (access log: proxied upstream; WAF: not intercepted)."""


class Outcomes(BaseModel):
    waf_blocked: int = 0
    app_status: dict[str, dict[str, int]] = Field(default_factory=dict)
    """sensor -> status class (2xx..5xx) -> requests the application answered (not what the WAF answered)."""
    bytes_sent: int = 0
    """Body bytes the application sent back with 2xx answers (access log)."""


class StageReached(BaseModel):
    stage: Stage
    at: datetime
    seq: int = Field(description="the ledger record that reached it")
    why: str
    connected: bool = True
    """Reached on evidence whose source held a connection (`Alert.src_connected`) or a trusted feed's: only those
    stages order eviction (store.py); a one-way packet's source address is whatever its sender wrote."""
    path: str | None = None
    """For possible_success reached by a path's two halves: the path (withdrawn if its attack proves refused)."""


class Answer(BaseModel):
    """The access log's record of one request, kept a while for an alert on that request folded after it."""

    request: str
    at: datetime
    status: int | None
    blocked: bool


class Unanswered(BaseModel):
    """An attack alert whose answer its sensor did not see, counted as not refused until the access log's record of
    its request comes (exchange.py)."""

    request: str
    at: datetime
    path: str | None


class ActionTaken(BaseModel):
    """A containment (or restore) decision in the source's case and what followed it, from the ledger."""

    incident: str
    action_id: str
    action: str
    verdict: str
    status: str
    """The latest of: the verdict, the approval's settlement, executed / execution_failed, verified /
    verification_failed, compensated, reverted."""
    shadow: bool = False
    target: str | None = None
    at: datetime
    seqs: list[int] = Field(default_factory=list)


class AttackerProfile(BaseModel):
    address: str
    network: str
    first_seen: datetime
    last_seen: datetime
    alerts: int = 0
    sensors: dict[str, int] = Field(default_factory=dict)
    categories: dict[str, int] = Field(default_factory=dict)
    techniques: dict[str, str] = Field(default_factory=dict)
    assets: dict[str, int] = Field(default_factory=dict)
    paths: dict[str, PathStats] = Field(default_factory=dict)
    user_agents: dict[str, int] = Field(default_factory=dict)
    """Client fingerprints: linking hints only, the client chooses them."""
    incidents: dict[str, int] = Field(default_factory=dict)
    outcomes: Outcomes = Field(default_factory=Outcomes)
    stages: list[StageReached] = Field(default_factory=list)
    actions: list[ActionTaken] = Field(default_factory=list)
    controller: dict[str, int] = Field(default_factory=dict)
    """Lifetime tallies of action statuses (kept when the capped `actions` list drops old entries)."""
    seqs: list[int] = Field(default_factory=list)
    dropped: dict[str, int] = Field(default_factory=dict)
    """Entries a cap turned away, per field."""
    through_seq: int = 0
    answers: list[Answer] = Field(default_factory=list)
    """The latest access-log records with a request identity (pairing, exchange.py): not shown, bounded."""
    unanswered: list[Unanswered] = Field(default_factory=list)
    """Attack alerts waiting for the access log's record of their request (pairing, exchange.py): bounded."""

    @property
    def stage(self) -> Stage:
        """The highest stage reached, on any evidence."""
        return _highest(self.stages)

    @property
    def connected_stage(self) -> Stage:
        """The highest stage reached on connected or trusted evidence: what eviction orders by."""
        return _highest(s for s in self.stages if s.connected)

    def reach(
        self, stage: Stage, at: datetime, seq: int, why: str, connected: bool = True, path: str | None = None
    ) -> None:
        """Record `stage` when it is higher than any reached so far, or than any reached on connected evidence
        (stages only go up, on each kind of evidence)."""
        rank = stage_rank(stage)
        if rank > stage_rank(self.stage) or (connected and rank > stage_rank(self.connected_stage)):
            self.stages.append(StageReached(stage=stage, at=at, seq=seq, why=why, connected=connected, path=path))

    def count(self, field: str, table: dict[str, int], key: str, cap: int) -> None:
        """Add one to `table[key]`; a new key beyond `cap` is counted in `dropped[field]` instead."""
        if key in table or len(table) < cap:
            table[key] = table.get(key, 0) + 1
        else:
            self.dropped[field] = self.dropped.get(field, 0) + 1

    def cite(self, seq: int, cap: int) -> None:
        """Keep the first cap/2 and the latest cap/2 alert seqs."""
        self.seqs.append(seq)
        if len(self.seqs) > cap:
            del self.seqs[cap // 2]
