"""Recompute the chain and explain what broke: pure functions over stored records, so the same checks run on
a live database (store.py) and on an exported incident (export.py).

Each record is judged once its successor is known, because the successor's link tells *what* was edited:
if the next record still links to the stored hash, the stored hash is the original and the fields changed;
if it links to the recomputed hash, only the hash column changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from autonomy_controller.controller.ledger.canonical import GENESIS_HASH, record_hash
from autonomy_controller.controller.ledger.records import ChainHead, IncidentHead
from autonomy_controller.controller.ledger.report import MAX_PROBLEMS, Problem, ProblemCode, VerifyReport

MAX_DIAGNOSES = 5
"""Hash mismatches for which the index is asked where a record really belongs (each ask may scan the table)."""


@dataclass(frozen=True)
class StoredRecord:
    """A record exactly as stored: payload still as text and kind unchecked, so even garbage can be judged."""

    seq: int
    incident_key: str
    kind: str
    actor: str
    payload: str
    created_at: str
    prev_hash: str
    incident_prev_hash: str
    idempotency_key: str | None
    hash: str

    def recompute(self) -> str:
        """The hash these fields should have; ValueError when the payload is not a JSON object."""
        payload: Any = json.loads(self.payload)
        if not isinstance(payload, dict):
            raise ValueError("payload is not a JSON object")
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "hash"}
        return record_hash({**fields, "payload": payload})


class ChainIndex(Protocol):
    """Look-ups used only to explain a mismatch (which seq a renumbered or deleted record had)."""

    def seq_of_hash(self, hash_: str) -> int | None: ...

    def seq_linking_to(self, hash_: str) -> int | None: ...


class _Tip(NamedTuple):
    seq: int
    hash: str
    n: int


class _Pending(NamedTuple):
    record: StoredRecord
    computed: str | None
    problems: list[Problem]


class _Checker:
    """Shared state of one verification: collected problems and the budget of index look-ups."""

    def __init__(self, index: ChainIndex | None) -> None:
        self.index = index
        self.problems: list[Problem] = []
        self.more = False
        self.diagnoses = 0
        self.checked = 0
        self.bad_hashes: set[int] = set()
        """Seqs whose hash column is wrong: heads disagreeing with them are a symptom, not a new problem."""

    def add(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(problem)
            else:
                self.more = True

    def recompute(self, rec: StoredRecord) -> tuple[str | None, list[Problem]]:
        self.checked += 1
        try:
            return rec.recompute(), []
        except (ValueError, TypeError) as exc:
            return None, [_problem(ProblemCode.BAD_RECORD, rec, f"cannot recompute the hash: {exc}")]

    def settle(self, pending: _Pending, successor_link: str | None, successor_name: str) -> None:
        """Emit a record's problems now that its successor is known."""
        rec, computed, problems = pending
        if computed != rec.hash:
            self.bad_hashes.add(rec.seq)
        if computed is not None and computed != rec.hash:
            hash_problem = self._seq_changed(rec) or _hash_problem(rec, computed, successor_link, successor_name)
            if hash_problem.code is ProblemCode.SEQ_CHANGED:  # its broken links are explained by the move
                problems = [p for p in problems if p.code not in (ProblemCode.BROKEN_LINK, ProblemCode.INCIDENT_LINK)]
            problems = [hash_problem, *problems]
        self.add(problems)

    def _seq_changed(self, rec: StoredRecord) -> Problem | None:
        if self.index is None or self.diagnoses >= MAX_DIAGNOSES:
            return None
        self.diagnoses += 1
        candidates = set()
        before = self.index.seq_of_hash(rec.prev_hash)
        after = self.index.seq_linking_to(rec.hash)
        if before is not None:
            candidates.add(before + 1)
        if after is not None:
            candidates.add(after - 1)
        for seq in sorted(candidates - {rec.seq}):
            if replace(rec, seq=seq).recompute() == rec.hash:
                return _problem(
                    ProblemCode.SEQ_CHANGED,
                    rec,
                    f"written as seq {seq} but now stored as seq {rec.seq}: records were renumbered or reordered",
                )
        return None


def _problem(code: ProblemCode, rec: StoredRecord, detail: str, seq: int | None = None) -> Problem:
    return Problem(code=code, seq=rec.seq if seq is None else seq, incident_key=rec.incident_key, detail=detail)


def _hash_problem(rec: StoredRecord, computed: str, successor_link: str | None, successor_name: str) -> Problem:
    if successor_link == rec.hash:
        return _problem(
            ProblemCode.CONTENT_EDITED,
            rec,
            f"its fields (payload, actor, kind, created_at, ...) were changed after writing: they no longer hash "
            f"to the stored hash {rec.hash[:16]}, to which {successor_name} still links",
        )
    if successor_link == computed:
        return _problem(
            ProblemCode.HASH_EDITED,
            rec,
            f"its hash column was changed to {rec.hash[:16]}: the fields are intact and {successor_name} links "
            f"to their hash {computed[:16]}",
        )
    return _problem(
        ProblemCode.HASH_MISMATCH,
        rec,
        f"stored hash {rec.hash[:16]} does not match the recomputed {computed[:16]}, and {successor_name} "
        "links to neither: fields and hash were both changed",
    )


def check_ledger(
    records: Iterable[StoredRecord],
    head: ChainHead,
    incident_heads: Iterable[IncidentHead],
    index: ChainIndex | None = None,
) -> VerifyReport:
    """Verify the whole ledger: every hash, gap-free seq from 1, every link, the head and every incident head."""
    chk = _Checker(index)
    prev: StoredRecord | None = None
    pending: _Pending | None = None
    tips: dict[str, _Tip] = {}
    for rec in records:
        computed, problems = chk.recompute(rec)
        if pending is not None:
            adjacent = rec.seq == pending.record.seq + 1
            chk.settle(pending, rec.prev_hash if adjacent else None, f"record {rec.seq}")
        expected = prev.seq + 1 if prev else 1
        if rec.seq != expected:
            missing = f"records {expected}..{rec.seq - 1} are" if rec.seq - 1 > expected else f"record {expected} is"
            problems.append(
                Problem(
                    code=ProblemCode.MISSING_RECORDS,
                    seq=expected,
                    detail=f"{missing} missing before seq {rec.seq}: deleted from the middle of the chain",
                )
            )
        elif rec.prev_hash != (prev.hash if prev else GENESIS_HASH) and not (prev and prev.seq in chk.bad_hashes):
            problems.append(
                _problem(
                    ProblemCode.BROKEN_LINK,
                    rec,
                    f"prev_hash {rec.prev_hash[:16]} is not the hash of record {expected - 1}: that record was "
                    "rewritten (hash recomputed) or this link was edited",
                )
            )
        tip = tips.get(rec.incident_key)
        if rec.incident_prev_hash != (tip.hash if tip else GENESIS_HASH) and not (tip and tip.seq in chk.bad_hashes):
            problems.append(_incident_link_problem(rec, tip.seq if tip else None, index))
        tips[rec.incident_key] = _Tip(rec.seq, rec.hash, (tip.n if tip else 0) + 1)
        pending, prev = _Pending(rec, computed, problems), rec
    if pending is not None:
        at_head = head.seq == pending.record.seq
        chk.settle(pending, head.hash if at_head else None, "the chain head")
    chk.add(_check_head(prev, head, chk.bad_hashes))
    chk.add(_check_incident_heads(tips, {h.incident_key: h for h in incident_heads}, chk.bad_hashes))
    return VerifyReport(
        scope="ledger",
        checked=chk.checked,
        head_seq=head.seq,
        head_hash=head.hash,
        problems=chk.problems,
        more_problems=chk.more,
    )


def _incident_link_problem(rec: StoredRecord, prev_seq: int | None, index: ChainIndex | None) -> Problem:
    """Name the incident's missing predecessor when the global chain still knows where it was."""
    gone_seq = None
    if (
        index is not None
        and rec.incident_prev_hash != GENESIS_HASH
        and index.seq_of_hash(rec.incident_prev_hash) is None
    ):
        successor = index.seq_linking_to(rec.incident_prev_hash)
        gone_seq = successor - 1 if successor is not None else None
    if gone_seq is not None and gone_seq == prev_seq:
        return _problem(
            ProblemCode.INCIDENT_LINK,
            rec,
            f"the incident's previous record {prev_seq} was rewritten (hash recomputed): this record links to "
            "the hash it had when written",
        )
    if gone_seq is not None:
        between = f", between {prev_seq} and {rec.seq}" if prev_seq is not None else f", before {rec.seq}"
        return _problem(
            ProblemCode.INCIDENT_LINK,
            rec,
            f"the incident's previous record (seq {gone_seq}{between}) is missing: deleted",
            seq=gone_seq,
        )
    if prev_seq is None:
        return _problem(
            ProblemCode.INCIDENT_LINK,
            rec,
            "it is the incident's first record but does not link to genesis: the incident's earlier records "
            "were deleted, or this link was edited",
        )
    return _problem(
        ProblemCode.INCIDENT_LINK,
        rec,
        f"incident_prev_hash {rec.incident_prev_hash[:16]} is not the hash of the incident's previous record "
        f"{prev_seq}: a record of this incident was deleted, or {prev_seq} was rewritten",
    )


def _check_head(last: StoredRecord | None, head: ChainHead, bad_hashes: set[int]) -> list[Problem]:
    last_seq = last.seq if last else 0
    if head.seq > last_seq:
        span = f"records {last_seq + 1}..{head.seq} were" if head.seq > last_seq + 1 else f"record {head.seq} was"
        return [
            Problem(
                code=ProblemCode.TRUNCATED,
                seq=last_seq + 1,
                detail=f"the head says the chain ends at seq {head.seq} but the last record is {last_seq}: "
                f"{span} deleted from the end",
            )
        ]
    if last is not None and head.seq < last_seq:
        return [
            _problem(
                ProblemCode.HEAD_MISMATCH,
                last,
                f"records after the head (seq {head.seq}) exist up to seq {last_seq}: written around the ledger API, "
                "or the head was rolled back",
                seq=head.seq + 1,
            )
        ]
    if last is not None and head.hash != last.hash and last.seq not in bad_hashes:
        return [_problem(ProblemCode.HEAD_MISMATCH, last, f"the head hash {head.hash[:16]} is not this record's hash")]
    return []


def _check_incident_heads(tips: dict[str, _Tip], heads: dict[str, IncidentHead], bad_hashes: set[int]) -> list[Problem]:
    problems: list[Problem | None] = [
        _incident_head_problem(key, tips.get(key), head, bad_hashes) for key, head in heads.items()
    ]
    problems += [
        Problem(
            code=ProblemCode.INCIDENT_HEAD_MISMATCH,
            seq=tip.seq,
            incident_key=key,
            detail="the incident has records but no head row: its head row was deleted",
        )
        for key, tip in tips.items()
        if key not in heads
    ]
    found = [p for p in problems if p is not None]
    return sorted(found, key=lambda p: (p.seq or 0, p.incident_key or ""))


def _incident_head_problem(
    key: str, tip: _Tip | None, head: IncidentHead | None, bad_hashes: set[int]
) -> Problem | None:
    if head is None:
        return None
    if tip is None:
        return Problem(
            code=ProblemCode.INCIDENT_HEAD_MISMATCH,
            seq=head.seq,
            incident_key=key,
            detail=f"the incident head records {head.count} record(s) up to seq {head.seq}, but none exist: deleted",
        )
    if tip.seq < head.seq:
        return Problem(
            code=ProblemCode.INCIDENT_HEAD_MISMATCH,
            seq=head.seq,
            incident_key=key,
            detail=f"the incident's last record should be seq {head.seq} ({head.count} records) but it ends at "
            f"seq {tip.seq} ({tip.n} records): its last record(s) were deleted",
        )
    if (tip.seq, tip.n) == (head.seq, head.count) and tip.hash != head.hash and tip.seq in bad_hashes:
        return None  # the record's hash column was edited; already reported on the record
    if tip.seq == head.seq and tip.n < head.count:
        return Problem(
            code=ProblemCode.INCIDENT_HEAD_MISMATCH,
            seq=head.seq,
            incident_key=key,
            detail=f"the incident head counts {head.count} records but {tip.n} exist: record(s) of it were deleted",
        )
    if (tip.seq, tip.hash, tip.n) != (head.seq, head.hash, head.count):
        return Problem(
            code=ProblemCode.INCIDENT_HEAD_MISMATCH,
            seq=tip.seq,
            incident_key=key,
            detail=f"the incident head (seq {head.seq}, {head.count} records, hash {head.hash[:16]}) disagrees "
            f"with its records (seq {tip.seq}, {tip.n} records, hash {tip.hash[:16]})",
        )
    return None


def check_incident(
    incident_key: str,
    records: Iterable[StoredRecord],
    head: IncidentHead | None,
    index: ChainIndex | None = None,
    scope: str | None = None,
) -> VerifyReport:
    """Verify one incident through its own chain (incident_prev_hash) and head, without reading other incidents.

    Cannot notice an incident whose records *and* head row were all deleted: only the global chain can.
    """
    chk = _Checker(index)
    prev: StoredRecord | None = None
    pending: _Pending | None = None
    count = 0
    for rec in records:
        computed, problems = chk.recompute(rec)
        count += 1
        if pending is not None:
            chk.settle(pending, rec.incident_prev_hash, f"the incident's next record {rec.seq}")
        if rec.incident_key != incident_key:
            problems.append(_problem(ProblemCode.BAD_RECORD, rec, f"it belongs to incident {rec.incident_key!r}"))
        if prev is not None and rec.seq <= prev.seq:
            problems.append(_problem(ProblemCode.BROKEN_LINK, rec, f"it comes after seq {prev.seq}: out of order"))
        if rec.incident_prev_hash != (prev.hash if prev else GENESIS_HASH) and not (
            prev and prev.seq in chk.bad_hashes
        ):
            problems.append(_incident_link_problem(rec, prev.seq if prev else None, index))
        pending, prev = _Pending(rec, computed, problems), rec
    if pending is not None:
        at_head = head is not None and head.seq == pending.record.seq
        chk.settle(pending, head.hash if head is not None and at_head else None, "the incident head")
    tip = _Tip(prev.seq, prev.hash, count) if prev else None
    if head is None and tip is not None:
        chk.add(
            [
                Problem(
                    code=ProblemCode.INCIDENT_HEAD_MISMATCH,
                    seq=tip.seq,
                    incident_key=incident_key,
                    detail="the incident has records but no head row: its head row was deleted",
                )
            ]
        )
    head_problem = _incident_head_problem(incident_key, tip, head, chk.bad_hashes)
    if head_problem is not None:
        chk.add([head_problem])
    return VerifyReport(
        scope=scope or f"incident:{incident_key}",
        checked=chk.checked,
        head_seq=head.seq if head else 0,
        head_hash=head.hash if head else GENESIS_HASH,
        problems=chk.problems,
        more_problems=chk.more,
    )
