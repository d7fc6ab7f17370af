"""The action registry: every action the controller knows, with the metadata risk, policy and undo rely on.

An action missing from here cannot be proposed successfully: the guard denies unknown names. Adapters (which
really execute) live beside this module and are looked up by the same names.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from autonomy_controller.actions import params as p
from autonomy_controller.controller.models import ActionClass, ActionSpec, BlastRadius, TargetKind


class UnknownActionError(LookupError):
    pass


class InvalidParamsError(ValueError):
    """Params that fail the action's schema; `errors` names each bad field."""

    def __init__(self, action: str, errors: list[str]) -> None:
        super().__init__(f"invalid params for {action}: " + "; ".join(errors))
        self.action = action
        self.errors = errors


_LOOKUP_VERIFY = (
    "read-only; the answer's coverage (records read up to the ledger head, their time window) matches the ledger"
)


def _spec(**fields: Any) -> ActionSpec:
    return ActionSpec(**fields)


SPECS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in [
        _spec(
            name="network.block_ip",
            action_class=ActionClass.CONTAIN_NETWORK,
            description="Drop traffic from one address or network at the enforcement point (nftables set).",
            blast_radius=BlastRadius.SINGLE_ADDRESS,
            reversible=True,
            undo_action="network.unblock_ip",
            verify="the address is an element of the blocklist set; optional probe: source can no longer connect",
            target_kind=TargetKind.IP,
            target_param="ip",
            params_model=p.BlockIpParams,
        ),
        _spec(
            name="network.unblock_ip",
            action_class=ActionClass.RESTORE,
            description="Remove an address or network from the blocklist.",
            blast_radius=BlastRadius.SINGLE_ADDRESS,
            reversible=True,
            undo_action="network.block_ip",
            verify="the address is no longer an element of the blocklist set",
            target_kind=TargetKind.IP,
            target_param="ip",
            params_model=p.UnblockIpParams,
        ),
        _spec(
            name="host.isolate",
            action_class=ActionClass.CONTAIN_HOST,
            description="Cut a host off the network except for its management path.",
            blast_radius=BlastRadius.HOST,
            reversible=True,
            undo_action="host.release",
            verify="the isolation table is present for the host; optional probe: host unreachable",
            target_kind=TargetKind.HOST,
            target_param="host",
            params_model=p.HostParams,
        ),
        _spec(
            name="host.release",
            action_class=ActionClass.RESTORE,
            description="Lift a host's network isolation.",
            blast_radius=BlastRadius.HOST,
            reversible=True,
            undo_action="host.isolate",
            verify="the isolation table is gone for the host",
            target_kind=TargetKind.HOST,
            target_param="host",
            params_model=p.HostParams,
        ),
        _spec(
            name="identity.disable_user",
            action_class=ActionClass.CONTAIN_IDENTITY,
            description="Disable an account in the directory: new logins are refused; sessions it has are not ended.",
            blast_radius=BlastRadius.IDENTITY,
            reversible=True,
            undo_action="identity.enable_user",
            verify="the directory reports the account locked; optional probe: a bind with its password fails",
            target_kind=TargetKind.USER,
            target_param="user",
            params_model=p.UserParams,
        ),
        _spec(
            name="identity.enable_user",
            action_class=ActionClass.RESTORE,
            description="Re-enable a disabled account.",
            blast_radius=BlastRadius.IDENTITY,
            reversible=True,
            undo_action="identity.disable_user",
            verify="the directory reports the account unlocked; optional probe: a bind with its password works",
            target_kind=TargetKind.USER,
            target_param="user",
            params_model=p.UserParams,
        ),
        _spec(
            name="ticket.create",
            action_class=ActionClass.TICKET,
            description="Open a ticket in the incident queue.",
            blast_radius=BlastRadius.NONE,
            reversible=False,
            verify="the ticket exists in the queue with the same idempotency key",
            params_model=p.TicketParams,
        ),
        _spec(
            name="notify.webhook",
            action_class=ActionClass.NOTIFY,
            description="Post a message to a configured channel.",
            blast_radius=BlastRadius.NONE,
            reversible=False,
            verify="the webhook answered 2xx",
            params_model=p.WebhookParams,
        ),
        _spec(
            name="investigate.ip_reputation",
            action_class=ActionClass.INVESTIGATE,
            description="Read-only: what our own history (the ledger) says about an address: incidents, actions taken.",
            blast_radius=BlastRadius.NONE,
            reversible=True,
            verify=_LOOKUP_VERIFY,
            target_kind=TargetKind.IP,
            target_param="ip",
            params_model=p.IpLookupParams,
        ),
        _spec(
            name="investigate.related_alerts",
            action_class=ActionClass.INVESTIGATE,
            description="Read-only: other alerts from the same source across incidents (attacker tracking).",
            blast_radius=BlastRadius.NONE,
            reversible=True,
            verify=_LOOKUP_VERIFY,
            target_kind=TargetKind.IP,
            target_param="ip",
            params_model=p.IpLookupParams,
        ),
        _spec(
            name="investigate.host_activity",
            action_class=ActionClass.INVESTIGATE,
            description="Read-only: alerts the ledger holds for a host, by name or address (impact assessment).",
            blast_radius=BlastRadius.NONE,
            reversible=True,
            verify=_LOOKUP_VERIFY + "; the inventory still resolves the host as the answer did",
            target_kind=TargetKind.HOST,
            target_param="host",
            params_model=p.HostLookupParams,
        ),
    ]
}


FREE_TEXT_PARAMS: dict[str, frozenset[str]] = {
    "ticket.create": frozenset({"title", "body"}),
    "notify.webhook": frozenset({"message"}),
}
"""Params written for people (they may quote alert text or hold what an LLM wrote): playbooks may fill them from
free-text fields, the Claude planner flattens them, and the policy input leaves them out (it holds facts only)."""


def get_spec(name: str) -> ActionSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownActionError(f"unknown action {name!r}: not in the registry") from None


def class_of(name: str) -> str:
    """The registry's class name for an action; an unknown action (always denied) is counted as "unknown"."""
    spec = SPECS.get(name)
    return spec.action_class.value if spec is not None else "unknown"


def validate_params(spec: ActionSpec, params: dict[str, Any]) -> BaseModel:
    """Validate and normalise params against the action's schema, or raise naming every bad field."""
    try:
        return spec.params_model.model_validate(params)
    except ValidationError as exc:
        errors = [f"{'.'.join(str(part) for part in err['loc']) or '(params)'}: {err['msg']}" for err in exc.errors()]
        raise InvalidParamsError(spec.name, errors) from None
