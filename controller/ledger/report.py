"""What `verify` tells an auditor: whether the chain holds and, if not, the first bad record and why."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class ProblemCode(StrEnum):
    CONTENT_EDITED = "content_edited"
    """The record's fields changed after writing: its stored hash no longer matches, yet the next record
    (or the head) still links to that stored hash — so the hash is the original and the content is not."""
    HASH_EDITED = "hash_edited"
    """Only the hash column changed: the next record links to the hash recomputed from the intact fields."""
    HASH_MISMATCH = "hash_mismatch"
    """Stored and recomputed hash differ and the next link matches neither (fields and hash both changed)."""
    SEQ_CHANGED = "seq_changed"
    """The record was renumbered (reordered): its hash matches the same fields under another seq."""
    MISSING_RECORDS = "missing_records"
    """A gap in seq: records in the middle of the chain were deleted."""
    BROKEN_LINK = "broken_link"
    """prev_hash does not equal the previous record's hash: the predecessor was rewritten, or this link edited."""
    INCIDENT_LINK = "incident_link"
    """incident_prev_hash does not equal the hash of the incident's previous record."""
    TRUNCATED = "truncated"
    """The head says the chain is longer than the records: the tail was deleted."""
    HEAD_MISMATCH = "head_mismatch"
    """The head row disagrees with the last record (head edited, or records written around the API)."""
    INCIDENT_HEAD_MISMATCH = "incident_head_mismatch"
    """An incident's head row disagrees with its records (its last records deleted, or the head edited)."""
    BAD_RECORD = "bad_record"
    """A stored field cannot even be decoded (e.g. payload is not JSON)."""


class Problem(BaseModel):
    code: ProblemCode
    seq: int | None = Field(description="the bad (or first missing) record; None when no record can be named")
    incident_key: str | None = None
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "ledger"
        incident = f" (incident {self.incident_key})" if self.incident_key else ""
        return f"{where}{incident}: {self.code.value}: {self.detail}"


MAX_PROBLEMS = 100
"""One tampering usually shows several symptoms; the first ones name it, the rest would only flood a report."""


class VerifyReport(BaseModel):
    scope: str = Field(description="'ledger' for the whole chain, else 'incident:<key>' or 'export:<key>'")
    checked: int = Field(description="records whose hash was recomputed")
    head_seq: int
    head_hash: str
    problems: list[Problem] = Field(default_factory=list)
    more_problems: bool = Field(default=False, description=f"problems beyond the first {MAX_PROBLEMS} were dropped")

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        if self.ok:
            return (
                f"{self.scope}: OK, {self.checked} records verified, head seq {self.head_seq} ({self.head_hash[:16]})"
            )
        more = "+" if self.more_problems else ""
        return f"{self.scope}: TAMPERED, {len(self.problems)}{more} problem(s); first: {self.first_problem}"
