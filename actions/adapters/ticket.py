"""ticket.create: a local ticket queue, one JSON file per ticket, named after the action's idempotency key.

A directory is the queue so that the loop works with no ticketing service, and so that idempotency is a
property of the file system: the ticket file for a key is created at most once (see `create_if_absent`),
which makes a retried or concurrently duplicated activity answer ALREADY_DONE with the same ticket id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autonomy_controller.actions.adapters._common import (
    check_action,
    create_if_absent,
    key_digest,
    parse_params,
    read_json,
    utc_now_iso,
)
from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    AdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.params import TicketParams

ACTION = "ticket.create"


def ticket_id(idempotency_key: str) -> str:
    """The operator-facing id: stable per key, so a retry names the same ticket."""
    return f"TKT-{key_digest(idempotency_key)[:12]}"


def ticket_path(tickets_dir: Path, idempotency_key: str) -> Path:
    """The full digest names the file (the 12-hex id is for humans; the file name must not collide)."""
    return tickets_dir / f"{key_digest(idempotency_key)}.json"


def list_tickets(tickets_dir: Path) -> list[dict[str, Any]]:
    """Every ticket in the queue, oldest first. An unreadable ticket file raises (naming it) instead of being
    skipped: a queue listing that silently hides a ticket is worse than one that fails."""
    if not tickets_dir.is_dir():
        return []
    tickets = [read_json(path) for path in sorted(tickets_dir.glob("*.json")) if not path.name.startswith(".")]
    return sorted(tickets, key=lambda t: (str(t.get("created_at", "")), str(t.get("id", ""))))


class TicketAdapter:
    """Opens tickets as files in `tickets_dir` (created on first use)."""

    action: str = ACTION

    def __init__(self, tickets_dir: Path) -> None:
        self.tickets_dir = tickets_dir

    def execute(self, request: ActionRequest) -> ActionOutcome:
        check_action(request, ACTION)
        params = parse_params(request, TicketParams)
        self.tickets_dir.mkdir(parents=True, exist_ok=True)
        path = ticket_path(self.tickets_dir, request.idempotency_key)
        ticket = {
            "id": ticket_id(request.idempotency_key),
            "incident_key": request.incident_key,
            "action_id": request.action_id,
            "idempotency_key": request.idempotency_key,
            "title": params.title,
            "severity": params.severity.value,
            "body": params.body,
            "created_at": utc_now_iso(),
            "status": "open",
        }
        if create_if_absent(path, ticket):
            return ActionOutcome(
                status=ActionStatus.DONE,
                detail=f"opened ticket {ticket['id']} ({params.severity.value}): {params.title}",
                reference=ticket["id"],
                evidence={"path": str(path), "ticket_id": ticket["id"]},
            )
        existing = self._existing(path, request.idempotency_key)
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"ticket {existing['id']} already exists for this idempotency key (opened {existing['created_at']})",
            reference=str(existing["id"]),
            evidence={"path": str(path), "ticket_id": existing["id"]},
        )

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        """Read the ticket back from the queue: it must parse and name this key (and the id the outcome gave)."""
        path = ticket_path(self.tickets_dir, request.idempotency_key)
        evidence: dict[str, Any] = {"path": str(path)}
        try:
            ticket = read_json(path)
        except FileNotFoundError:
            return VerifyOutcome(
                ok=False, detail=f"no ticket file for this key in {self.tickets_dir}", evidence=evidence
            )
        except AdapterError as exc:
            return VerifyOutcome(ok=False, detail=str(exc), evidence=evidence)
        evidence["ticket_id"] = ticket.get("id")
        if ticket.get("idempotency_key") != request.idempotency_key:
            return VerifyOutcome(
                ok=False,
                detail=f"{path.name} names another idempotency key: the ticket was replaced",
                evidence=evidence,
            )
        if outcome.reference is not None and ticket.get("id") != outcome.reference:
            return VerifyOutcome(
                ok=False,
                detail=f"ticket id is {ticket.get('id')!r}, execution reported {outcome.reference!r}",
                evidence=evidence,
            )
        return VerifyOutcome(
            ok=True, detail=f"ticket {ticket.get('id')} is in the queue ({ticket.get('status')})", evidence=evidence
        )

    def _existing(self, path: Path, idempotency_key: str) -> dict[str, Any]:
        """The ticket that beat us to the name; a different key under the same digest is refused, not reused."""
        ticket = read_json(path)
        if ticket.get("idempotency_key") != idempotency_key or "id" not in ticket:
            raise AdapterError(f"{path} exists but does not belong to idempotency key {idempotency_key!r}")
        return ticket
