"""The whole case a step decides on, when the workflow could send only its sample (controller/case/digest.py).

The plan, guard and pre-flight steps of a case larger than its sample get the sample and a CaseRef; they read
every alert of the case from the ledger, so triage, impact, risk and policy see what they would for the same
alerts in a small case: the alerts slimmed as the workflow would have carried them (what planners and the guard
read), and whole (raw record included: what triage and impact read). The range is append-only history, so a
read is cached per worker (a round's guard and pre-flights reuse its plan's read). A read that fails, or finds
fewer alerts than the workflow counted, raises: the step fails, and the workflow fails closed (no plan, every
action denied, or the action held), with the reason recorded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from autonomy_controller.controller.case.digest import CaseRef
from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.ledger.cases import case_alerts
from autonomy_controller.controller.models import Alert, Incident
from autonomy_controller.workflows.contracts import slim_alert

CACHED_CASES = 4
"""Large cases a worker keeps read (a 10,000-alert case is ~60 MB of objects): the rounds in flight."""


def partial(incident: Incident, ref: CaseRef | None) -> bool:
    """Whether the workflow sent only a sample of the case (its ref counts more alerts than it sent)."""
    return ref is not None and ref.alerts > len(incident.alerts)


class CaseReader:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, int, int], tuple[Incident, list[Alert]]] = OrderedDict()

    def whole(self, incident: Incident, ref: CaseRef | None) -> Incident:
        """The case with every alert as the workflow carries alerts (slim): `incident` itself when it is whole."""
        return self._read(incident, ref)[0] if partial(incident, ref) else incident

    def recorded(self, incident: Incident, ref: CaseRef | None) -> list[Alert] | None:
        """Every alert of a partial case as the ledger holds it (raw included); None when `incident` is whole."""
        return self._read(incident, ref)[1] if partial(incident, ref) else None

    def _read(self, incident: Incident, ref: CaseRef | None) -> tuple[Incident, list[Alert]]:
        assert ref is not None
        key = (ref.key, ref.floor_seq, ref.through_seq, ref.alerts)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        raw = case_alerts(self.ledger, ref)  # outside the lock: a read of 10,000 records takes a while
        whole = incident_from_alerts(incident.key, [slim_alert(a) for a in raw])
        with self._lock:
            self._cache[key] = (whole, raw)
            while len(self._cache) > CACHED_CASES:
                self._cache.popitem(last=False)
        return whole, raw
