"""A case's alerts in the ledger: the tally a signal carries, and the whole case a decision reads.

The workflow carries a bounded digest of its case (controller/case/digest.py); the ledger holds every alert,
written before it is signalled. Two reads close the gap:

- `tally`, on the Submitter's side as it signals a batch: how many ALERT records the key holds up to the latest
  one and below the batch's lowest, so the workflow's count is exact without the workflow holding every alert id.
- `case_alerts`, in the plan, guard and pre-flight steps of a case larger than its sample: every ALERT record of
  the case's range, whole (raw record included), in ledger order.

The ledger appends under one lock (controller/ledger/writes.py), so seq order is commit order: once a record is
visible, every record below its seq is too, and a range read twice reads the same records.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import case, func, select

from autonomy_controller.controller.case.digest import CaseRef, LedgerTally
from autonomy_controller.controller.ledger import Ledger, LedgerError, RecordKind, schema
from autonomy_controller.controller.ledger.engine import read_snapshot
from autonomy_controller.controller.ledger.reads import select_records, to_record
from autonomy_controller.controller.models import Alert

_ALERT = RecordKind.ALERT.value


def tally(ledger: Ledger, key: str, seqs: Iterable[int]) -> LedgerTally | None:
    """The key's ALERT records as a batch whose records have `seqs` is signalled; None for an empty batch."""
    floor = min(seqs, default=None)
    if floor is None:
        return None
    records = schema.records.c
    query = select(
        func.count(), func.coalesce(func.sum(case((records.seq < floor, 1), else_=0)), 0), func.max(records.seq)
    )
    query = query.where(records.incident_key == key, records.kind == _ALERT)
    with read_snapshot(ledger.engine) as conn:
        alerts, below, through = conn.execute(query).one()
    return LedgerTally(floor_seq=floor, below=int(below), through_seq=int(through or floor), alerts=int(alerts))


def case_alerts(ledger: Ledger, ref: CaseRef) -> list[Alert]:
    """Every alert of the case's range, as the ledger holds it (raw record included), in ledger order.

    Raises LedgerError when the range does not hold the count the workflow was told: the caller fails closed
    rather than deciding on a case it cannot read whole."""
    records = schema.records.c
    with read_snapshot(ledger.engine) as conn:
        query = select_records(conn).where(
            records.incident_key == ref.key,
            records.kind == _ALERT,
            records.seq >= ref.floor_seq,
            records.seq <= ref.through_seq,
        )
        rows = [to_record(row._mapping) for row in conn.execute(query.order_by(records.seq))]
    alerts = [Alert.model_validate(record.payload) for record in rows]
    if len(alerts) < ref.alerts:
        raise LedgerError(
            f"case {ref.key}: the ledger holds {len(alerts)} alerts between seq {ref.floor_seq} and "
            f"{ref.through_seq}, the workflow counted {ref.alerts}"
        )
    return alerts
