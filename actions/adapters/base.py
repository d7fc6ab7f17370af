"""The contract between the workflow and the things that change the world (firewalls, tickets, webhooks).

An adapter does one action and checks it: `execute` applies the effect, `verify` reads it back. Both take the
same ActionRequest, whose `idempotency_key` (workflow id + run + action id) is what makes a retried activity
harmless: an adapter must apply an effect at most once per key, and answer ALREADY_DONE when asked again.
Undo is not a method: it is the registry's `undo_action`, run through that action's own adapter, with `purpose`
saying that it is an undo and `undoes` naming the execution it reverses (adapters never parse keys for that).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

Purpose = Literal["execute", "compensate", "revert"]
"""Why the workflow runs an adapter: the action itself, or an undo of it (compensation after a failed
verification, TTL revert). Same values as workflows.contracts.ExecuteRequest.purpose."""
UNDO_PURPOSES: tuple[Purpose, ...] = ("compensate", "revert")


class ActionRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_key: str
    action_id: str
    action: str = Field(description="registry name, e.g. ticket.create")
    params: dict[str, Any] = Field(description="validated and canonical (actions.registry.validate_params)")
    idempotency_key: str = Field(description="workflow id + run + action id: at most one effect per key")
    purpose: Purpose = Field(
        default="execute",
        description="execute: an action of its own (a plan's, a person's); compensate / revert: an undo of `undoes`",
    )
    undoes: str | None = Field(
        default=None,
        description="for compensate / revert: the idempotency key the undone execution ran with, so an adapter "
        "can tell the effect that execution created from one somebody else holds",
    )

    @model_validator(mode="after")
    def _undo_names_what_it_undoes(self) -> ActionRequest:
        """An undo that does not say which execution it reverses could only guess whose effect to remove, and an
        action of its own that names one would be ambiguous: both are refused where the request is built.
        The defaults (execute, nothing undone) keep every caller that predates these fields valid."""
        if self.purpose in UNDO_PURPOSES and not self.undoes:
            raise ValueError(f"a {self.purpose} request must name the execution it undoes (undoes)")
        if self.purpose == "execute" and self.undoes is not None:
            raise ValueError("an execute request undoes nothing: set purpose to compensate or revert, or drop undoes")
        return self

    @property
    def is_undo(self) -> bool:
        return self.purpose in UNDO_PURPOSES


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
