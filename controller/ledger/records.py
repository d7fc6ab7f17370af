"""What callers get back from the ledger: immutable records, not live ORM rows.

Returning frozen pydantic values (instead of SQLModel rows bound to a session) means a record cannot be
edited and "saved" by accident, and it can cross a Temporal activity boundary through the pydantic converter.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autonomy_controller.controller.ledger.canonical import format_ts, record_hash


class RecordKind(StrEnum):
    """One kind per step of an incident's life (docs/architecture.md, "The loop"), plus observations and the
    transcript store."""

    ALERT = "alert"
    ACCESS = "access"
    """An access-log line (controller/ledger/observations.py): what a server answered, an observation, not an alert. Kept
    under `_access:<address>`, never signalled: it opens no case, it is evidence for the source's case."""
    PLAN = "plan"
    DECISION = "decision"
    APPROVAL = "approval"
    """A vote (accepted or refused), an approval timeout, or an escalation."""
    PREFLIGHT = "preflight"
    """The last check before an action runs: fresh level (kill switch, shadow), circuit breaker, budget."""
    EXECUTION = "execution"
    VERIFICATION = "verification"
    COMPENSATION = "compensation"
    REVERT = "revert"
    REPORT = "report"
    LEVEL_CHANGE = "level_change"
    """The controller lowered levels itself (circuit breaker open)."""
    TRANSCRIPT = "transcript"
    """An LLM request/response pair, kept out of workflow history for size and secrecy."""


REQUIRED_PAYLOAD_KEYS: dict[RecordKind, frozenset[str]] = {
    RecordKind.DECISION: frozenset({"verdict", "policy_revision", "risk"}),
}
"""Keys an auditor relies on: a decision without its policy revision and risk cannot be tied to a policy.

`risk` may be null (a fail-closed deny before scoring), but it must be present. GuardDecision.model_dump()
satisfies this.
"""


class LedgerRecord(BaseModel):
    """One append-only, hash-chained record. `seq` is the id to pass through workflow history."""

    model_config = ConfigDict(frozen=True)

    seq: int = Field(ge=1, description="global, gap-free position in the one ledger-wide chain")
    incident_key: str
    kind: RecordKind
    actor: str = Field(description="who or what wrote it: guard, planner:claude, user:alice, workflow:<id>")
    payload: dict[str, Any]
    created_at: datetime
    prev_hash: str = Field(description="hash of record seq-1 (any incident), or GENESIS_HASH")
    incident_prev_hash: str = Field(description="hash of this incident's previous record, or GENESIS_HASH")
    idempotency_key: str | None = None
    hash: str

    def hash_fields(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "incident_key": self.incident_key,
            "kind": self.kind.value,
            "actor": self.actor,
            "payload": self.payload,
            "created_at": format_ts(self.created_at),
            "prev_hash": self.prev_hash,
            "incident_prev_hash": self.incident_prev_hash,
            "idempotency_key": self.idempotency_key,
        }

    def computed_hash(self) -> str:
        return record_hash(self.hash_fields())

    def to_json_dict(self) -> dict[str, Any]:
        """The export form: exactly the hashed fields plus `hash`, so an export is checkable on its own."""
        return {**self.hash_fields(), "hash": self.hash}


class ChainHead(BaseModel):
    """The last record's seq and hash, kept in its own row so deleting the tail of the chain is detectable.

    Publish it elsewhere (a ticket, a log pipeline) to anchor the chain against someone able to rewrite
    the whole database.
    """

    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str


class IncidentHead(BaseModel):
    """Per-incident head: lets one incident (or its export) be verified without reading the whole ledger."""

    model_config = ConfigDict(frozen=True)

    incident_key: str
    seq: int
    hash: str
    count: int
