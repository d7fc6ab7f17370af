"""Disabling and re-enabling accounts, and who holds each lock, the same way for every dialect (dialects.py).

An account is disabled when the dialect says so: OpenLDAP's `pwdAccountLockedTime: 000001010000Z` (ppolicy's
permanent lock) under a policy with `pwdLockout: TRUE`, or Active Directory's userAccountControl ACCOUNTDISABLE
bit. The incidents holding the lock are recorded on the entry
itself, in one value of the configured holds attribute (`autonomy-holds: ["<owner comment>", ...]`, or an
object that also names the lock not in force a disable replaced, to be given back; owner
comments as nftables uses them), so any worker and any operator reading the entry sees who holds it.

The ownership rule, as for the blocklist: a lock with no holds value was set by a person (or another tool) and
no undo ever lifts it; an undo removes only its own hold and lifts the lock only when it was the last one; an
explicit enable (a person's or a plan's action of its own) lifts it whoever holds it and says whom it overrode.

LDAP has no transactions across reads, so every decision is written as one modify that fails whole when the
entry changed since it was read: the old holds value is deleted by its exact text, and a lock that must still
be there is deleted and added back (the dialect's `still_locked`). A conflict means: read again, decide again
(DirectoryConflict).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ldap3

from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionStatus,
    AdapterError,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory, Secret
from autonomy_controller.actions.adapters.identity.dialects import HOLDS_PREFIX, Changes, LockDialect, dialect_of
from autonomy_controller.actions.adapters.identity.dialects import (
    LOCK_ATTRIBUTE as LOCK_ATTRIBUTE,  # the lab's tests read them here
)
from autonomy_controller.actions.adapters.identity.dialects import LOCKED_FOREVER as LOCKED_FOREVER
from autonomy_controller.actions.adapters.identity.directory import Directory, DirectoryConflict, Entry, Session
from autonomy_controller.actions.adapters.nftables.ownership import Undo, owner_comment

DECIDE_ATTEMPTS = 3
SESSIONS_NOTE = (
    "sessions the account already has are not ended: a disabled account cannot log in again, but applications "
    "keep the sessions and tokens they issued"
)
RECOMMENDATIONS = (
    "reset the account's password (the guessed or stolen one must not work after re-enabling)",
    "revoke the account's tokens and end its sessions in the applications that trust this directory",
)


@dataclass(frozen=True)
class Account:
    """One account as read for a decision: its lock, the holds value(s) of ours, and who holds it."""

    name: str
    entry: Entry
    holds_attribute: str
    lock: str | None
    """The lock as the dialect read it (None: not disabled)."""

    @property
    def dn(self) -> str:
        return self.entry.dn

    @property
    def hold_values(self) -> list[str]:
        return [v for v in self.entry.values(self.holds_attribute) if v.startswith(HOLDS_PREFIX)]

    def _holds(self) -> list[tuple[list[str], str | None]]:
        """Each holds value of ours as (holders, the lock our disable replaced): a list of owner comments, or
        {"holders": [...], "replaced": "<lock>"} when the disable replaced a lock that was not in force."""
        parsed: list[tuple[list[str], str | None]] = []
        for value in self.hold_values:
            try:
                held = json.loads(value[len(HOLDS_PREFIX) :])
            except ValueError:
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} is not ours to parse") from None
            listed, replaced = (held.get("holders"), held.get("replaced")) if isinstance(held, dict) else (held, None)
            if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} is not a list of holders")
            if replaced is not None and not isinstance(replaced, str):
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} names no lock it replaced")
            parsed.append((listed, replaced))
        return parsed

    @property
    def holders(self) -> list[str]:
        """Owner comments of the incidents holding the lock (several values, e.g. edited by hand, are merged)."""
        found: list[str] = []
        for listed, _ in self._holds():
            found.extend(item for item in listed if item not in found)
        return found

    @property
    def replaced(self) -> str | None:
        """The lock (not in force) our disable replaced, to be given back when the last holder lets go."""
        replaced = {lock for _, lock in self._holds() if lock is not None}
        if len(replaced) > 1:
            several = sorted(replaced)
            raise AdapterError(f"{self.dn}: our holds name several locks replaced ({several}): which to give back?")
        return replaced.pop() if replaced else None

    def describe_holders(self) -> str:
        return describe(self.holders)


def describe(holders: list[str]) -> str:
    """Who holds a lock, for details: the incidents' owner comments, or nobody of ours (a person's lock)."""
    if holders:
        return "incident key(s) " + ", ".join(repr(holder) for holder in holders)
    return "a lock set outside the controller (no holds recorded: a person or another tool)"


def holds_change(account: Account, holders: list[str], replaced: str | None = None) -> Changes:
    """Replace our holds value(s) by one naming `holders` and the lock the disable `replaced` (none: just
    delete): deleting the exact old text makes the modify fail if another worker changed the holds since we read
    them."""
    operations: list[tuple[str, list[str]]] = []
    if account.hold_values:
        operations.append((ldap3.MODIFY_DELETE, account.hold_values))
    if holders:
        held: Any = sorted(holders) if replaced is None else {"holders": sorted(holders), "replaced": replaced}
        operations.append((ldap3.MODIFY_ADD, [HOLDS_PREFIX + json.dumps(held)]))
    return {account.holds_attribute: operations} if operations else {}


class Lockout:
    """disable / enable / verify one account in the configured directory."""

    def __init__(self, config: IdentityDirectory) -> None:
        self.config = config
        self.directory = Directory(config)
        self.dialect: LockDialect = dialect_of(config)
        self.lock_name = self.dialect.lock_name

    # -- reading ---------------------------------------------------------------------------------------------

    def _read(self, session: Session, user: str) -> Account:
        attributes = [*self.dialect.attributes(), self.config.holds_attribute, self.config.user_attribute]
        entry = session.find_user(user, attributes, self.dialect.kind(), self.dialect.accountless(session))
        return Account(user, entry, self.config.holds_attribute, self.dialect.lasting_lock(session, entry))

    def _still_locked(self, account: Account) -> Changes:
        """Assert the lock is the one we read: the modify fails whole if it was lifted meanwhile."""
        return self.dialect.still_locked(account.entry)

    def _unlock(self, account: Account) -> Changes:
        """Lift the lock we read (giving back the one our disable replaced) and every hold: fails whole if the
        holds (or, where checked, the lock) changed."""
        return {**self.dialect.unlock(account.entry, account.replaced), **holds_change(account, [])}

    def _refuse_protected(self, session: Session, account: Account, verb: str) -> None:
        """Defence in depth: whatever got a plan this far, members of a protected group are not touched."""
        group = self.dialect.protecting_group(session, account.entry)
        if group is not None:
            raise AdapterError(
                f"refused to {verb} {account.name} ({account.dn}): it is a member of the protected group {group}, "
                "which the identity adapter never touches whatever a plan says"
            )

    def _decide(self, user: str, verb: str, decide: Callable[[Session, Account], ActionOutcome]) -> ActionOutcome:
        """Read, refuse what must not be touched, decide and write; again when the entry changed meanwhile."""
        conflicts: list[str] = []
        with self.directory.session() as session:
            for _ in range(DECIDE_ATTEMPTS):
                account = self._read(session, user)
                self._refuse_protected(session, account, verb)
                if verb == "disable":  # unlocking needs no policy; claiming a lock stops logins does
                    self.dialect.refuse_unenforced(session, account.entry)
                try:
                    return decide(session, account)
                except DirectoryConflict as exc:
                    conflicts.append(str(exc))
        raise TransientAdapterError(
            f"{user}'s entry in {self.config.url} changed under every one of {DECIDE_ATTEMPTS} attempts to {verb} "
            f"it ({'; '.join(conflicts)}): nothing applied, try again"
        )

    def _evidence(self, account: Account, **more: Any) -> dict[str, Any]:
        where = {"directory": self.config.url, "dialect": self.dialect.name}
        return {**where, "dn": account.dn, "account": account.name, **more}

    # -- disable ---------------------------------------------------------------------------------------------

    def disable(self, user: str, idempotency_key: str) -> ActionOutcome:
        return self._decide(user, "disable", lambda session, account: self._disable(session, account, idempotency_key))

    def _disable(self, session: Session, account: Account, idempotency_key: str) -> ActionOutcome:
        mine = owner_comment(idempotency_key)
        if account.lock is None:  # holds without a lock were ended by whoever enabled it: start afresh, unread
            replaced = self.dialect.lock_of(account.entry)  # a lock not in force (lifting itself, or not yet due)
            changes = {**self.dialect.lock(account.entry), **holds_change(account, [mine], replaced)}
            session.modify(account.dn, changes, f"disable {account.dn}")
            what = f"disabled {account.name}"
            if replaced is not None:
                what += f" (replacing a lock not in force, {replaced}, given back when the last holder lets go)"
            return self._disabled(account, ActionStatus.DONE, what, [mine], mine=True)
        holders = account.holders
        if mine in holders:
            return self._disabled(
                account, ActionStatus.ALREADY_DONE, f"{account.name} is already disabled by this key", holders, True
            )
        if not holders:
            return self._disabled(
                account,
                ActionStatus.ALREADY_DONE,
                f"{account.name} is already disabled by {account.describe_holders()}; left as it is, and no undo of "
                "the controller will ever enable it",
                [],
                mine=False,
            )
        # another incident holds it: join, so that the lock stays until the last holder lets go
        joined = holds_change(account, [*holders, mine], account.replaced)
        session.modify(account.dn, {**self._still_locked(account), **joined}, "join")
        return self._disabled(
            account,
            ActionStatus.ALREADY_DONE,
            f"{account.name} is already disabled by {account.describe_holders()}; this key now holds it too, and "
            "it is enabled again only when the last holder lets go",
            [*holders, mine],
            mine=True,
        )

    def _disabled(
        self, account: Account, status: ActionStatus, what: str, holders: list[str], mine: bool
    ) -> ActionOutcome:
        return ActionOutcome(
            status=status,
            detail=f"{what} ({account.dn} in {self.config.url}: {self.lock_name} set, new logins refused); "
            f"{SESSIONS_NOTE}: recommended next: {'; '.join(RECOMMENDATIONS)}",
            reference=f"{self.config.url} {account.dn}",
            evidence=self._evidence(
                account,
                holders=holders,
                mine=mine,
                sessions_ended=False,
                recommendations=list(RECOMMENDATIONS),
            ),
        )

    # -- enable ----------------------------------------------------------------------------------------------

    def enable(self, user: str, undo: Undo | None) -> ActionOutcome:
        return self._decide(user, "enable", lambda session, account: self._enable(session, account, undo))

    def _enable(self, session: Session, account: Account, undo: Undo | None) -> ActionOutcome:
        holders = account.holders
        if account.lock is None:
            if undo is not None and undo.comment in holders:  # a stale hold of ours: tidy it away
                tidied = holds_change(account, [h for h in holders if h != undo.comment], account.replaced)
                session.modify(account.dn, tidied, "tidy")
            return ActionOutcome(
                status=ActionStatus.ALREADY_DONE,
                detail=f"{account.name} ({account.dn}) is not disabled: nothing to enable",
                reference=f"{self.config.url} {account.dn}",
                evidence=self._evidence(account, holders=[]),
            )
        if undo is None:  # an action of its own: lifting the lock is the decision, whoever holds it
            session.modify(account.dn, self._unlock(account), f"enable {account.dn}")
            return self._enabled(account, f"enabled {account.name}, overriding {account.describe_holders()}")
        if undo.comment not in holders:
            return self._left_in_place(account, undo, holders, let_go=False)
        others = [holder for holder in holders if holder != undo.comment]
        if others:
            let_go = holds_change(account, others, account.replaced)
            session.modify(account.dn, {**self._still_locked(account), **let_go}, "let go")
            return self._left_in_place(account, undo, others, let_go=True)
        session.modify(account.dn, self._unlock(account), f"enable {account.dn}")
        return self._enabled(account, f"enabled {account.name} again ({undo.purpose} of {undo.comment!r})")

    def _enabled(self, account: Account, what: str) -> ActionOutcome:
        return ActionOutcome(
            status=ActionStatus.DONE,
            detail=f"{what} ({account.dn} in {self.config.url}: {self.lock_name} removed)",
            reference=f"{self.config.url} {account.dn}",
            evidence=self._evidence(account, overrode=account.holders, holders=[]),
        )

    def _left_in_place(self, account: Account, undo: Undo, holders: list[str], let_go: bool) -> ActionOutcome:
        """An undo that leaves the account disabled: someone else holds it (and maybe it let go of its own hold)."""
        held_by = describe(holders)
        why = (
            f"this {undo.purpose} let go of its hold, but {held_by} still hold(s) it"
            if let_go
            else f"it is held by {held_by}, and an undo never enables an account someone else holds; "
            f"{undo.missing('hold')}"
        )
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"left {account.name} disabled: {why}",
            reference=f"{self.config.url} {account.dn}",
            evidence=self._evidence(account, left_in_place=True, holders=holders, undoes=undo.comment),
        )

    # -- verify ----------------------------------------------------------------------------------------------

    def _probe_secret(self, account: Account) -> Secret | None:
        """The configured probe password of the account found, however the request spelt its name (the
        directory matched it case-insensitively: so is the account's own name here)."""
        names = {value.casefold() for value in account.entry.values(self.config.user_attribute)}
        names.add(account.name.casefold())
        matches = [secret for name, secret in self.config.probe_accounts.items() if name.casefold() in names]
        return matches[0] if matches else None

    def _probe(self, account: Account, disabled: bool) -> bool | None:
        """Whether a bind with the account's own (configured, known) password works; None without a probe. A
        refusal of an account read as disabled must be the directory's "disabled" answer where it gives one."""
        secret = self._probe_secret(account)
        if secret is None:
            return None
        return self.directory.bind_works(account.dn, secret, self.dialect.refused_as if disabled else None)

    def _read_only(self, user: str) -> Account:
        with self.directory.session() as session:
            return self._read(session, user)

    def _read_enforced(self, user: str) -> tuple[Account, str | None]:
        """The account, and why its lock would not stop logins (None: it would), as the disable checks it."""
        with self.directory.session() as session:
            account = self._read(session, user)
            try:
                self.dialect.refuse_unenforced(session, account.entry)
            except AdapterError as exc:
                return account, str(exc)
            return account, None

    def verify_disabled(self, user: str, idempotency_key: str) -> VerifyOutcome:
        """Read back: the lock is set (and, if this key holds it, its hold is recorded); a configured probe
        account's bind with its right password fails."""
        try:
            account, unenforced = self._read_enforced(user)
            login = self._probe(account, disabled=account.lock is not None)
        except AdapterError as exc:
            return VerifyOutcome(ok=False, detail=f"could not verify {user} is disabled: {exc}")
        evidence = self._evidence(account, lock=account.lock, holders=account.holders, probe_bind_works=login)
        problems = []
        if account.lock is None:
            problems.append(f"{self.lock_name} is not set (or set to lift itself)")
        if unenforced is not None:
            problems.append(unenforced)
        if login:
            problems.append("a bind with its password still works")
        if problems:
            return VerifyOutcome(ok=False, detail=f"{user} is not disabled: {'; '.join(problems)}", evidence=evidence)
        how = "a bind with its password failed" if login is False else "no probe account configured for a bind"
        return VerifyOutcome(
            ok=True,
            detail=f"{user} is disabled ({self.lock_name} {account.lock}, held by {account.describe_holders()}; "
            f"{how}; this key {'holds' if owner_comment(idempotency_key) in account.holders else 'does not hold'} it)",
            evidence=evidence,
        )

    def verify_enabled(self, user: str, undo: Undo | None, outcome: ActionOutcome | None) -> VerifyOutcome:
        """The lock is gone and a probe bind works; or, after an undo that left the account to its other
        holders, the undone execution's hold is gone and the lock stays."""
        try:
            account = self._read_only(user)
            login = self._probe(account, disabled=False) if account.lock is None else None
        except AdapterError as exc:
            return VerifyOutcome(ok=False, detail=f"could not verify {user} is enabled: {exc}")
        evidence = self._evidence(account, lock=account.lock, holders=account.holders, probe_bind_works=login)
        if undo is not None and undo.comment in account.holders:
            return VerifyOutcome(ok=False, detail=f"{user} still carries this undo's hold", evidence=evidence)
        if account.lock is not None:
            left = outcome is not None and outcome.evidence.get("left_in_place") is True
            if undo is not None and left:
                return VerifyOutcome(
                    ok=True,
                    detail=f"{user} stays disabled, held by {account.describe_holders()}: left in place as said",
                    evidence=evidence,
                )
            return VerifyOutcome(
                ok=False, detail=f"{user} is still disabled ({account.describe_holders()})", evidence=evidence
            )
        if login is False:
            return VerifyOutcome(
                ok=False, detail=f"{user}'s lock is gone but a bind with its password fails", evidence=evidence
            )
        return VerifyOutcome(ok=True, detail=f"{user} is enabled ({self.lock_name} absent)", evidence=evidence)
