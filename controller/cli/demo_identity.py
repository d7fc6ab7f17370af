"""The demo's identity containment: people of iam-admins approving account disables, and what the directory did.

The shipped levels never disable an account on the machine's word alone (contain_identity is `approve` up to
L4), so a demo that approves nothing shows every disable waiting. Here the identities data's iam-admins play
their part: each disable waiting on them is approved with a **signed** vote through the path `autonomy approve
--key` takes (workflows/operations.vote: the workflow's vote update, the worker verifying the token against a
keys file that requires signatures, the ledger marking the vote signed). The keys are throwaway Ed25519 pairs
made for the run, and the demo's keys file is its own (a user's AUTONOMY_APPROVER_KEYS_FILE is never used).
Nothing is bypassed: policy decides who may vote and how many votes an action needs (a privileged account
needs two of iam-admins), pre-flight checks the votes again, and the adapter refuses members of the directory's
protected group whoever approved.

Only where the demo has a directory (root, slapd installed): without one the disables are left waiting.
After each level the directory itself is asked, apart from the controller: is the account locked, and does a
bind with its own password fail?
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ldap3.utils.dn import escape_rdn
from temporalio.client import Client

from autonomy_controller.actions.adapters.identity.dialects import LOCK_ATTRIBUTE
from autonomy_controller.controller.approver_keys import ApproverSecret, generate_key
from autonomy_controller.controller.lab.directory_server import PEOPLE, Slapd
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.workflows.approvals import VoteRefused
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, IncidentStatus
from autonomy_controller.workflows.operations import LoopError, vote

DISABLE = "identity.disable_user"
IAM_GROUP = "iam-admins"
"""The approver group of contain_identity in policies/identities/data.yaml (class_approvers)."""
COMMENT = "autonomy demo: scripted iam-admins approval (signed), to show the directory's side"
MAX_VOTES = 3
"""Votes the demo casts on one action at most (a privileged account's quorum is 2)."""


class DemoApprovers:
    """Throwaway signing keys for the iam-admins members, and a keys file of the demo's own requiring them."""

    def __init__(self, root: Path, names: Iterable[str]) -> None:
        self.secrets: dict[str, ApproverSecret] = {name: generate_key(name) for name in sorted(set(names))}
        self.keys_file = root / "approver_keys.yaml"
        document: dict[str, Any] = {"require_signed": True, "approvers": {}}
        for secret in self.secrets.values():
            document["approvers"].update(secret.config_entry()["approvers"])
        header = (
            "# Written by `autonomy demo`: public halves of throwaway keys made for this run; votes must be signed.\n"
        )
        self.keys_file.write_text(header + yaml.safe_dump(document, sort_keys=False))

    def secret(self, name: str) -> ApproverSecret | None:
        return self.secrets.get(name)


def iam_admins(identities_file: Path) -> list[str]:
    """The members of iam-admins in the identities data (empty when the file or the group is missing)."""
    try:
        document = yaml.safe_load(identities_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []
    groups = document.get("approver_groups") if isinstance(document, dict) else None
    group = groups.get(IAM_GROUP) if isinstance(groups, dict) else None
    members = group.get("members") if isinstance(group, dict) else None
    return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []


@contextmanager
def demo_approver_keys(root: Path, identities_file: Path, directory: Slapd | None) -> Iterator[DemoApprovers | None]:
    """The demo's approvers, with AUTONOMY_APPROVER_KEYS_FILE pointing the worker at their keys for the run;
    None (and no keys file) when there is no directory to disable accounts in."""
    names = iam_admins(identities_file)
    if directory is None or not names:
        yield None
        return
    approvers = DemoApprovers(root, names)
    saved = os.environ.get("AUTONOMY_APPROVER_KEYS_FILE")
    os.environ["AUTONOMY_APPROVER_KEYS_FILE"] = str(approvers.keys_file)
    try:
        yield approvers
    finally:
        if saved is None:
            os.environ.pop("AUTONOMY_APPROVER_KEYS_FILE", None)
        else:
            os.environ["AUTONOMY_APPROVER_KEYS_FILE"] = saved


async def approve_disables(
    client: Client, ledger: Ledger, statuses: dict[str, IncidentStatus], approvers: DemoApprovers
) -> int:
    """Cast signed approvals on every identity disable waiting on iam-admins, one member after another until
    the action leaves awaiting_approval (quorum reached) or no member the demo holds a key for may still vote.
    Returns the votes accepted; a refused vote is in the ledger (the workflow's or the CLI path's record)."""
    accepted = 0
    for key, status in statuses.items():
        for action in status.actions:
            if action.action != DISABLE or action.status is not ActionStatus.AWAITING_APPROVAL:
                continue
            state: ActionState = action
            for _ in range(MAX_VOTES):
                voter = next((name for name in state.waiting_on if approvers.secret(name)), None)
                if voter is None or state.status is not ActionStatus.AWAITING_APPROVAL:
                    break
                try:
                    result = await vote(
                        client, ledger, key, state.action_id, voter, "approve", COMMENT, approvers.secret(voter)
                    )
                except (VoteRefused, LoopError):
                    break
                accepted += 1
                state = result.state
    return accepted


@dataclass(frozen=True)
class IdentityOutcome:
    """One identity disable as the demo shows it: the controller's account and the directory's own answer."""

    incident: str
    action_id: str
    account: str
    status: ActionStatus
    approvers: tuple[str, ...]
    signed: bool
    detail: str
    """The verification's words (read back + bind), or why it did not run."""
    revert_at: str | None
    locked: bool | None
    """Asked of the directory by the demo after the level: the lock attribute is set (None: not asked)."""
    bind_refused: bool | None
    """Asked of the directory by the demo: a bind with the account's own password fails."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "action_id": self.action_id,
            "account": self.account,
            "status": self.status.value,
            "approvers": list(self.approvers),
            "signed": self.signed,
            "detail": self.detail,
            "revert_at": self.revert_at,
            "directory": {"locked": self.locked, "bind_refused": self.bind_refused},
        }


def _verification(ledger: Ledger, key: str, action_id: str) -> str | None:
    """The controller's verification of the disable, from its ledger record: what was read back and whether the
    account's own bind failed (the adapter's evidence), in a few words."""
    found = [
        r.payload
        for r in ledger.records(key, [RecordKind.VERIFICATION])
        if r.payload.get("action_id") == action_id and r.payload.get("purpose") == "execute"
    ]
    if not found:
        return None
    last = found[-1]
    evidence = last.get("evidence") if isinstance(last.get("evidence"), dict) else {}
    if not last.get("ok") or not evidence:
        return str(last.get("detail"))
    holders = evidence.get("holders") or []
    works = evidence.get("probe_bind_works")
    bind = (
        "no bind tried"
        if works is None
        else "a bind with its password WORKS"
        if works
        else "a bind with its password failed"
    )
    return f"read back: {LOCK_ATTRIBUTE} {evidence.get('lock')}, {len(holders)} incident hold(s); {bind}"


def probe_password_file(directory: Slapd, account: str) -> Path:
    """Where the demo keeps an account's password: the adapter's probe account (its verification binds with it)
    and the demo's own check read it."""
    return directory.root / f"probe-{account}"


def _directory_answer(directory: Slapd | None, account: str) -> tuple[bool | None, bool | None]:
    """The directory's own answer, apart from the controller: the lock set, a bind with the password refused."""
    if directory is None or not (secret := probe_password_file(directory, account)).is_file():
        return None, None
    dn = f"uid={escape_rdn(account)},{PEOPLE}"
    locked = bool(directory.attribute(dn, LOCK_ATTRIBUTE))
    return locked, not directory.can_bind(dn, secret.read_text().strip())


def identity_outcomes(
    ledger_url: str, statuses: dict[str, IncidentStatus], directory: Slapd | None
) -> list[IdentityOutcome]:
    """Every identity disable of a level, once its incidents rest, with the directory's answer."""
    found: list[IdentityOutcome] = []
    with Ledger.from_url(ledger_url) as ledger:
        for key, status in statuses.items():
            for action in status.actions:
                if action.action != DISABLE or not action.target:
                    continue
                locked, refused = _directory_answer(directory, action.target)
                ran = action.status in (ActionStatus.VERIFIED, ActionStatus.AWAITING_REVERT)
                found.append(
                    IdentityOutcome(
                        incident=key,
                        action_id=action.action_id,
                        account=action.target,
                        status=action.status,
                        approvers=tuple(v.approver for v in action.votes if v.choice.value == "approve"),
                        signed=bool(action.votes) and all(v.signed for v in action.votes),
                        detail=(_verification(ledger, key, action.action_id) if ran else None) or action.detail,
                        revert_at=action.revert_at.isoformat(timespec="seconds") if action.revert_at else None,
                        locked=locked,
                        bind_refused=refused,
                    )
                )
    return found
