"""The contract between the workflow and the things that change the world (firewalls, tickets, webhooks).

An adapter does one action and checks it: `execute` applies the effect, `verify` reads it back. Both take the
same ActionRequest, whose `idempotency_key` (workflow id + run + action id) is what makes a retried activity
harmless: an adapter must apply an effect at most once per key, and answer ALREADY_DONE when asked again.
Undo is not a method: it is the registry's `undo_action`, run through that action's own adapter.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field


class ActionRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_key: str
    action_id: str
    action: str = Field(description="registry name, e.g. ticket.create")
    params: dict[str, Any] = Field(description="validated and canonical (actions.registry.validate_params)")
    idempotency_key: str = Field(description="workflow id + run + action id: at most one effect per key")


class ActionStatus(StrEnum):
    DONE = "done"
    ALREADY_DONE = "already_done"
    """The effect for this idempotency key exists already (a retry after a crash): nothing was applied again."""
    FAILED = "failed"


class ActionOutcome(BaseModel):
    status: ActionStatus
    detail: str
    reference: str | None = Field(default=None, description="what an operator looks up: ticket id, HTTP status")
    evidence: dict[str, Any] = Field(default_factory=dict)


class VerifyOutcome(BaseModel):
    ok: bool
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class AdapterError(Exception):
    """A permanent failure (bad config, rejected request): retrying will not help; the action fails."""


class TransientAdapterError(AdapterError):
    """A failure worth retrying (connection refused, 5xx, timeout): the activity's retry policy applies."""


class Adapter(Protocol):
    """One action's executor. Blocking I/O is fine: activities run adapters in a worker thread."""

    action: str

    def execute(self, request: ActionRequest) -> ActionOutcome: ...

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome: ...
