"""What a case's workflow carries of its evidence: exact counts, a bounded sample, and where the rest is.

A persistent attacker sends tens of thousands of alerts into one case (one source, one case), and everything a
workflow holds crosses Temporal's boundary somewhere: signals, activity inputs, the state carried through
continue-as-new, query answers, each capped at 2 MB (slim alerts reach it near 2,000-4,000). So a case's
workflow never holds every alert. It holds a CaseDigest:

- `count`: exact. The ledger is the authority: each signal carries a LedgerTally (the Submitter counts the key's
  ALERT records when it signals, controller/ledger/cases.py), and the case is the key's ALERT records from the
  lowest seq this case was signalled (`floor_seq`) to the highest (`through_seq`). Exact whatever the order the
  signals arrive in, a resubmitted file (the ledger dedups by alert), or a signal lost after its write.
- `categories`, `first_seen`, `last_seen`: from every alert signalled (a bounded set and two times).
- `sample`: at most SAMPLE_MAX alerts, kept by decisiveness (below); in arrival order, as the case grew.

A case no larger than its sample is carried whole, exactly as before (the bench's and most cases). A larger one
is `partial`, and its decisions never rest on the sample: the plan, guard and pre-flight steps read the whole
case from the ledger by its CaseRef (workflows/activities.py), so triage, impact, risk and policy count and see
every alert, as they would for the same alerts in a small case.

The sample is what the workflow itself shows (status, carried state): each category keeps its PER_CATEGORY most
decisive alerts, and the rest of the room goes to the most decisive of all. Decisive means more severe, then not
blocked by the sensor (it got through), then an attack class before the supporting ones, then earlier. A flood of
low-severity noise cannot push a decisive alert out: an alert leaves only for one that ranks above it, a
category's reserved places are taken only by that category's own alerts, and a tie keeps the earlier alert, so
even a flood of equally decisive alerts leaves the first ones in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from autonomy_controller.controller.case.grouping import SUPPORTING, incident_from_alerts
from autonomy_controller.controller.models import Alert, Category, Incident

SAMPLE_MAX = 32
"""Alerts a case's workflow carries: 32 slim alerts are ~25 KB typically (evidence cut at 512 characters)."""
PER_CATEGORY = 2
"""Places each category keeps for its own most decisive alerts (15 categories x 2 fit in SAMPLE_MAX)."""


class LedgerTally(BaseModel):
    """The ledger's count of a case's ALERT records when a batch was signalled (controller/ledger/cases.py).

    `alerts` are the key's ALERT records up to `through_seq`; `below` those before `floor_seq`, the batch's lowest
    record. Records in [floor, through] are then `alerts - below` for the earliest floor and the latest through."""

    floor_seq: int = Field(ge=0)
    below: int = Field(ge=0)
    through_seq: int = Field(ge=0)
    alerts: int = Field(ge=0)


class CaseRef(BaseModel):
    """Where a case's alerts are in the ledger: the key's ALERT records with floor_seq <= seq <= through_seq."""

    key: str
    floor_seq: int
    through_seq: int
    alerts: int = Field(description="exact: how many records that range holds")


def rank(alert: Alert) -> tuple[int, bool, bool, datetime, str]:
    """Sort key, most decisive first (see the module docstring)."""
    return (-alert.severity.rank, alert.blocked, alert.category in SUPPORTING, alert.observed_at, alert.id)


def select(alerts: Sequence[Alert], limit: int = SAMPLE_MAX) -> list[Alert]:
    """The alerts to keep, in the order given: each category's PER_CATEGORY most decisive, then the most decisive
    of the rest, `limit` in all."""
    if len(alerts) <= limit:
        return list(alerts)
    ranked = sorted(alerts, key=rank)
    kept: set[str] = set()
    per_category: dict[Category, int] = {}
    for alert in ranked:
        if len(kept) < limit and per_category.get(alert.category, 0) < PER_CATEGORY:
            kept.add(alert.id)
            per_category[alert.category] = per_category.get(alert.category, 0) + 1
    for alert in ranked:
        if len(kept) >= limit:
            break
        kept.add(alert.id)
    return [a for a in alerts if a.id in kept]


class CaseDigest(BaseModel):
    """A case as its workflow holds it (see the module docstring). Carried through continue-as-new."""

    sample: list[Alert] = Field(default_factory=list)
    count: int = 0
    categories: list[Category] = Field(default_factory=list)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    tally_floor: LedgerTally | None = Field(default=None, description="the signalled tally with the lowest floor")
    tally_through: LedgerTally | None = Field(default=None, description="the signalled tally with the latest through")

    def add(self, alerts: Iterable[Alert], tally: LedgerTally | None = None) -> bool:
        """Take a signalled batch in; True when the case grew (an alert it did not hold before)."""
        before = self.count
        held = {a.id for a in self.sample}
        fresh: list[Alert] = []
        for alert in alerts:
            if alert.id in held:
                continue  # a resubmission, or a repeat within the batch
            held.add(alert.id)
            fresh.append(alert)
            if alert.category not in self.categories:
                self.categories = sorted({*self.categories, alert.category})
            self.first_seen = min(self.first_seen or alert.observed_at, alert.observed_at)
            self.last_seen = max(self.last_seen or alert.observed_at, alert.observed_at)
        if fresh:
            self.sample = select([*self.sample, *fresh])
        if tally is not None:
            if self.tally_floor is None or tally.floor_seq < self.tally_floor.floor_seq:
                self.tally_floor = tally
            if self.tally_through is None or tally.through_seq > self.tally_through.through_seq:
                self.tally_through = tally
        if self.tally_floor is not None and self.tally_through is not None:
            # The ledger's count; never below what the workflow holds itself (a tally read before a batch's own
            # records were visible would be, and the sample's alerts are in the ledger: they were written first).
            self.count = max(self.tally_through.alerts - self.tally_floor.below, len(self.sample), self.count)
        else:  # batches signalled without a tally (histories recorded before it): count what arrives
            self.count += len(fresh)
        return self.count > before

    @property
    def partial(self) -> bool:
        """The case holds more alerts than its sample: decisions read it from the ledger (`ref`)."""
        return self.count > len(self.sample)

    def ref(self, key: str) -> CaseRef | None:
        """The case's place in the ledger; None while no signal carried a tally."""
        if self.tally_floor is None or self.tally_through is None:
            return None
        return CaseRef(
            key=key, floor_seq=self.tally_floor.floor_seq, through_seq=self.tally_through.through_seq, alerts=self.count
        )

    def incident(self, key: str) -> Incident:
        """The case as the workflow passes it to its steps: every alert when it holds them all, else the sample
        (the steps then read the whole case by `ref`)."""
        return incident_from_alerts(key, list(self.sample))
