"""Disabling and re-enabling accounts, and who holds each lock, the same way for every dialect (dialects.py).

An account is disabled when the dialect says so: OpenLDAP's permanent `pwdAccountLockedTime` under a policy
with `pwdLockout: TRUE`, or Active Directory's userAccountControl ACCOUNTDISABLE bit. The incidents holding the
lock are recorded on the entry itself, in one value of the configured holds attribute
(`autonomy-holds: {"holders": ["<owner comment>", ...], "lock": "<mark>"}`, with `"replaced": "<lock>"` when the
disable replaced a lock not in force, to be given back; owner comments as nftables uses them), so any worker and
any operator reading the entry sees who holds it.

The ownership rule, as for the blocklist: a lock with no holds value was set by a person (or another tool) and
no undo ever lifts it; an undo removes only its own hold and lifts the lock only when it was the last one; an
explicit enable (a person's or a plan's action of its own) lifts it whoever holds it and says whom it overrode.
A hold counts only for the lock it recorded: the holds name the lock's mark (dialects.py: our own lock value on
OpenLDAP, the DC's record of the write on AD), and a lock with another mark (ours lifted by hand, then a person
locked the account again) is not ours whatever the holds say: it is left for a person, and the reason recorded.

LDAP has no transactions across reads, so every decision is written as one modify that fails whole when the
entry changed since it was read: the old holds value is deleted by its exact text, and a lock that must still
be there is deleted and added back (the dialect's `still_locked`). A conflict means: read again, decide again
(DirectoryConflict).
"""

from __future__ import annotations

import json
import time
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
from autonomy_controller.actions.adapters.identity.dialects import locks_for_good as locks_for_good
from autonomy_controller.actions.adapters.identity.directory import Directory, DirectoryConflict, Entry, Session
from autonomy_controller.actions.adapters.nftables.ownership import Undo, owner_comment

DECIDE_ATTEMPTS = 3
PENDING = "pending"
"""The mark of a lock whose mark the directory gives only once written (AD): the disable records it next."""
PENDING_WAIT_SECONDS = 0.25
"""How long a disable waits for another one to record its lock's mark before reading the entry again."""
SESSIONS_NOTE = (
    "sessions the account already has are not ended: a disabled account cannot log in again, but applications "
    "keep the sessions and tokens they issued"
)
RECOMMENDATIONS = (
    "reset the account's password (the guessed or stolen one must not work after re-enabling)",
    "revoke the account's tokens and end its sessions in the applications that trust this directory",
)


@dataclass(frozen=True)
class Probe:
    """A disable's bind as the probe account before the lock: whether it worked (None: no probe), and how."""

    works: bool | None
    detail: str


@dataclass(frozen=True)
class Held:
    """One holds value of ours, parsed: who holds the lock, its mark, the lock not in force it replaced."""

    holders: list[str]
    mark: str | None = None
    replaced: str | None = None


@dataclass(frozen=True)
class Account:
    """One account as read for a decision: its lock, the holds value(s) of ours, and who holds it."""

    name: str
    entry: Entry
    holds_attribute: str
    lock: str | None
    """The lock as the dialect read it (None: not disabled)."""
    mark: str | None = None
    """The mark of the lock on the entry now (dialects.py; None: not disabled, or it cannot be told)."""

    @property
    def dn(self) -> str:
        return self.entry.dn

    @property
    def hold_values(self) -> list[str]:
        return [v for v in self.entry.values(self.holds_attribute) if v.startswith(HOLDS_PREFIX)]

    def _holds(self) -> list[Held]:
        """Each holds value of ours: {"holders": [...], "lock": "<mark>"} (and "replaced": "<lock>" when the
        disable replaced a lock that was not in force), or a bare list of holders (written before marks: it
        proves no lock)."""
        parsed: list[Held] = []
        for value in self.hold_values:
            try:
                held = json.loads(value[len(HOLDS_PREFIX) :])
            except ValueError:
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} is not ours to parse") from None
            fields = held if isinstance(held, dict) else {"holders": held}
            listed, mark, replaced = fields.get("holders"), fields.get("lock"), fields.get("replaced")
            if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} is not a list of holders")
            if replaced is not None and not isinstance(replaced, str):
                raise AdapterError(f"{self.dn}: {self.holds_attribute} value {value!r} names no lock it replaced")
            parsed.append(Held(listed, mark if isinstance(mark, str) else None, replaced))
        return parsed

    @property
    def holders(self) -> list[str]:
        """Owner comments of the incidents holding the lock (several values, e.g. edited by hand, are merged)."""
        found: list[str] = []
        for held in self._holds():
            found.extend(item for item in held.holders if item not in found)
        return found

    @property
    def recorded_mark(self) -> str | None:
        """The mark of the lock our holds were written for; None when they name none, or not one alike."""
        marks = {held.mark for held in self._holds()}
        return marks.pop() if len(marks) == 1 else None

    @property
    def ours(self) -> bool:
        """Whether our holds are for the lock on the entry now: set by a disable of ours, never lifted since."""
        return self.lock is not None and self.mark is not None and self.recorded_mark == self.mark

    @property
    def pending(self) -> bool:
        """Whether the disable that set the lock has yet to record its mark (or stopped before it did)."""
        return self.lock is not None and self.recorded_mark == PENDING

    @property
    def replaced(self) -> str | None:
        """The lock (not in force) our disable replaced, to be given back when the last holder lets go."""
        replaced = {held.replaced for held in self._holds() if held.replaced is not None}
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


def holds_value(holders: list[str], mark: str | None, replaced: str | None = None) -> str:
    """Our one value of the holds attribute: who holds the lock marked `mark`, and the lock it `replaced`."""
    held: dict[str, Any] = {"holders": sorted(holders)}
    if mark is not None:
        held["lock"] = mark
    if replaced is not None:
        held["replaced"] = replaced
    return HOLDS_PREFIX + json.dumps(held)


def holds_change(account: Account, holders: list[str], mark: str | None = None, replaced: str | None = None) -> Changes:
    """Replace our holds value(s) by one naming `holders`, the lock's `mark` and the lock the disable `replaced`
    (no holders: just delete): deleting the exact old text makes the modify fail if another worker changed the
    holds since we read them."""
    operations: list[tuple[str, list[str]]] = []
    if account.hold_values:
        operations.append((ldap3.MODIFY_DELETE, account.hold_values))
    if holders:
        operations.append((ldap3.MODIFY_ADD, [holds_value(holders, mark, replaced)]))
    return {account.holds_attribute: operations} if operations else {}


class Lockout:
    """disable / enable / verify one account in the configured directory."""

    def __init__(self, config: IdentityDirectory) -> None:
        self.config = config
        self.directory = Directory(config)
        self.dialect: LockDialect = dialect_of(config)
        self.lock_name = self.dialect.lock_name

    # -- reading ---------------------------------------------------------------------------------------------

    def _attributes(self) -> list[str]:
        return [*self.dialect.attributes(), self.config.holds_attribute, self.config.user_attribute]

    def _read(self, session: Session, user: str) -> Account:
        entry = session.find_user(user, self._attributes(), self.dialect.kind(), self.dialect.accountless(session))
        return self._account(session, user, entry)

    def _account(self, session: Session, user: str, entry: Entry) -> Account:
        lock = self.dialect.lasting_lock(session, entry)
        mark = self.dialect.lock_mark(session, entry) if lock is not None else None
        return Account(user, entry, self.config.holds_attribute, lock, mark)

    def _still_locked(self, account: Account) -> Changes:
        """Assert the lock is the one we read: the modify fails whole if it was lifted meanwhile."""
        return self.dialect.still_locked(account.entry)

    def _unlock(self, account: Account) -> Changes:
        """Lift the lock we read (giving back the one our disable replaced, if the lock is still ours) and every
        hold: fails whole if the holds (or, where checked, the lock) changed."""
        replaced = account.replaced if account.ours else None
        return {**self.dialect.unlock(account.entry, replaced), **holds_change(account, [])}

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
        probe = self._probe_before_lock(user)
        return self._decide(
            user, "disable", lambda session, account: self._disable(session, account, idempotency_key, probe)
        )

    def _disable(self, session: Session, account: Account, idempotency_key: str, probe: Probe) -> ActionOutcome:
        mine = owner_comment(idempotency_key)
        if account.lock is None:  # holds without a lock were ended by whoever enabled it: start afresh, unread
            return self._lock(session, account, mine, probe)
        holders = account.holders
        if account.pending and mine not in holders:  # another disable is recording its mark: wait, read again
            time.sleep(PENDING_WAIT_SECONDS)
            raise DirectoryConflict(f"{describe(holders)} had not yet recorded the mark of the lock set")
        if holders and not account.ours:
            return self._disabled(
                account,
                ActionStatus.ALREADY_DONE,
                f"{account.name} is already disabled, but not by the lock {describe(holders)} set: "
                f"{self._changed_hands(account)}; left as it is, and no undo of the controller will ever enable it",
                [],
                mine=False,
                probe=probe,
                stale=holders,
            )
        if mine in holders:
            return self._disabled(
                account,
                ActionStatus.ALREADY_DONE,
                f"{account.name} is already disabled by this key",
                holders,
                True,
                probe=probe,
            )
        if not holders:
            return self._disabled(
                account,
                ActionStatus.ALREADY_DONE,
                f"{account.name} is already disabled by {account.describe_holders()}; left as it is, and no undo of "
                "the controller will ever enable it",
                [],
                mine=False,
                probe=probe,
            )
        # another incident holds it: join, so that the lock stays until the last holder lets go
        joined = holds_change(account, [*holders, mine], account.mark, account.replaced)
        session.modify(account.dn, {**self._still_locked(account), **joined}, "join")
        return self._disabled(
            account,
            ActionStatus.ALREADY_DONE,
            f"{account.name} is already disabled by {account.describe_holders()}; this key now holds it too, and "
            "it is enabled again only when the last holder lets go",
            [*holders, mine],
            mine=True,
            probe=probe,
        )

    def _lock(self, session: Session, account: Account, mine: str, probe: Probe) -> ActionOutcome:
        """Set a lock of ours and the hold naming its mark (the lock a disable replaced, if any, recorded)."""
        replaced = self.dialect.lock_of(account.entry)  # a lock not in force (lifting itself, or not yet due)
        mark = self.dialect.mint()
        written = mark if mark is not None else PENDING
        changes = {**self.dialect.lock(account.entry, mark), **holds_change(account, [mine], written, replaced)}
        session.modify(account.dn, changes, f"disable {account.dn}")
        what = f"disabled {account.name}"
        if replaced is not None:
            what += f" (replacing a lock not in force, {replaced}, given back when the last holder lets go)"
        if mark is None:
            mark = self._mark_written(session, account.dn, mine, replaced)
        if mark is None:
            what += (
                f"; the lock's mark could not be read back and recorded ({self.dialect.name}): no undo of the "
                "controller can prove the lock is ours, so none will lift it, a person must"
            )
        return self._disabled(account, ActionStatus.DONE, what, [mine], mine=True, probe=probe, mark=mark)

    def _mark_written(self, session: Session, dn: str, mine: str, replaced: str | None) -> str | None:
        """Where the directory marks the lock (AD): read the mark of the lock just written and record it in our
        hold, replacing the value just written by its exact text. None when it cannot be read, or the entry
        changed in between (then whose lock it is cannot be told: no undo will lift it)."""
        entry = session.read(dn, self._attributes())
        if entry is None:
            return None
        written = self._account(session, dn, entry)
        if written.lock is None or written.hold_values != [holds_value([mine], PENDING, replaced)] or not written.mark:
            return None
        try:
            session.modify(dn, holds_change(written, [mine], written.mark, replaced), f"mark the lock of {dn}")
        except DirectoryConflict:
            return None
        return written.mark

    def _changed_hands(self, account: Account) -> str:
        """Why a lock our holds name is not ours, for details: the marks that differ."""
        recorded = account.recorded_mark
        if recorded == PENDING:
            return (
                f"the disable that set it ({self.lock_name} {account.lock}) did not record its mark (it stopped "
                "between its write and the read back), so it cannot be proven ours: a person must look"
            )
        if recorded is None:
            return (
                f"the holds of ours on it name no mark of the lock they were written for ({self.lock_name} "
                f"{account.lock}), so it cannot be proven ours: a person must look"
            )
        return (
            f"the lock on it ({self.lock_name} {account.lock}, mark {account.mark}) is not the one our holds recorded "
            f"(mark {recorded}): ours was lifted outside the controller and the account locked again since, so it "
            "is not ours to lift: a person must look"
        )

    def _disabled(
        self,
        account: Account,
        status: ActionStatus,
        what: str,
        holders: list[str],
        mine: bool,
        probe: Probe,
        mark: str | None = None,
        stale: list[str] | None = None,
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
                lock_mark=mark if mark is not None else account.mark,
                stale_holds=stale or [],
                sessions_ended=False,
                recommendations=list(RECOMMENDATIONS),
                probe_bind_before_lock=probe.works,
                probe_before_lock=probe.detail,
            ),
        )

    # -- enable ----------------------------------------------------------------------------------------------

    def enable(self, user: str, undo: Undo | None) -> ActionOutcome:
        return self._decide(user, "enable", lambda session, account: self._enable(session, account, undo))

    def _enable(self, session: Session, account: Account, undo: Undo | None) -> ActionOutcome:
        holders = account.holders
        if account.lock is None:
            if undo is not None and undo.comment in holders:  # a stale hold of ours: tidy it away
                rest = [h for h in holders if h != undo.comment]
                session.modify(account.dn, holds_change(account, rest, account.recorded_mark, account.replaced), "tidy")
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
        if not account.ours:  # the lock changed hands since our holds were written: let go, never lift it
            let_go = holds_change(account, others, account.recorded_mark, account.replaced)
            session.modify(account.dn, {**self._still_locked(account), **let_go}, "let go")
            return self._left_in_place(account, undo, [], let_go=True, why=self._changed_hands(account))
        if others:
            let_go = holds_change(account, others, account.mark, account.replaced)
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

    def _left_in_place(
        self, account: Account, undo: Undo, holders: list[str], let_go: bool, why: str | None = None
    ) -> ActionOutcome:
        """An undo that leaves the account disabled: someone else holds it (and maybe it let go of its own hold),
        or the lock is not the one its hold was for (`why`)."""
        held_by = describe(holders)
        if why is not None:
            why = f"this {undo.purpose} let go of its hold, but {why}"
        elif let_go:
            why = f"this {undo.purpose} let go of its hold, but {held_by} still hold(s) it"
        else:
            why = (
                f"it is held by {held_by}, and an undo never enables an account someone else holds; "
                f"{undo.missing('hold')}"
            )
        return ActionOutcome(
            status=ActionStatus.ALREADY_DONE,
            detail=f"left {account.name} disabled: {why}",
            reference=f"{self.config.url} {account.dn}",
            evidence=self._evidence(
                account,
                left_in_place=True,
                holders=holders,
                undoes=undo.comment,
                changed_hands=account.holders != [] and not account.ours,
                lock_mark=account.mark,
            ),
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

    def _probe_before_lock(self, user: str) -> Probe:
        """Prove the probe account's configured password by a bind that works before the lock: where a refused
        bind does not say why (slapd), only then does a refusal after the lock show the lock, and not a wrong
        password. Never stops the disable: verify reads the answer (Probe) from the outcome."""
        if not self.config.probe_accounts:
            return Probe(None, "no probe account configured")
        with self.directory.session() as session:
            account = self._read(session, user)
        secret = self._probe_secret(account)
        if secret is None:
            return Probe(None, "no probe account configured for this account")
        if account.lock is not None:
            return Probe(False, "the account was already disabled: its password could not be tried before the lock")
        try:
            works = self.directory.bind_works(account.dn, secret)
        except TransientAdapterError:
            raise
        except AdapterError as exc:
            return Probe(False, f"the bind before the lock failed: {exc}")
        if works:
            return Probe(True, "a bind with the probe's configured password worked before the lock")
        return Probe(False, f"a bind with the probe's configured password ({secret.where}) failed before the lock")

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

    def _unproven_refusal(self, outcome: ActionOutcome | None) -> str | None:
        """Why a refused probe bind proves nothing here (None: it proves the lock). Where the directory says
        why it refused (AD's "data 533"), bind_works checked it; elsewhere the password must have been shown to
        work before the lock, at execute time."""
        if self.dialect.refused_as is not None:
            return None
        evidence = outcome.evidence if outcome is not None else {}
        if evidence.get("probe_bind_before_lock") is True:
            return None
        how = evidence.get("probe_before_lock") or "the disable recorded no bind before the lock"
        return (
            f"a bind with the probe's password was refused, but {self.dialect.name} refuses a wrong password the "
            f"same way, and the password was not shown to work before the lock ({how}): the refusal proves nothing"
        )

    def verify_disabled(self, user: str, idempotency_key: str, outcome: ActionOutcome | None = None) -> VerifyOutcome:
        """Read back: the lock is set (and, if this key holds it, its hold is recorded); a configured probe
        account's bind with its right password fails, that password shown to work before the lock where the
        directory does not say why a bind was refused."""
        try:
            account, unenforced = self._read_enforced(user)
            login = self._probe(account, disabled=account.lock is not None)
        except AdapterError as exc:
            return VerifyOutcome(ok=False, detail=f"could not verify {user} is disabled: {exc}")
        evidence = self._evidence(
            account, lock=account.lock, holders=account.holders, ours=account.ours, probe_bind_works=login
        )
        problems = []
        if account.lock is None:
            problems.append(f"{self.lock_name} is not set (or set to lift itself)")
        if unenforced is not None:
            problems.append(unenforced)
        if login:
            problems.append("a bind with its password still works")
        unproven = self._unproven_refusal(outcome) if login is False else None
        if unproven is not None:
            problems.append(unproven)
        if problems:
            return VerifyOutcome(ok=False, detail=f"{user} is not disabled: {'; '.join(problems)}", evidence=evidence)
        how = "a bind with its password failed" if login is False else "no probe account configured for a bind"
        holds = owner_comment(idempotency_key) in account.holders and account.ours
        return VerifyOutcome(
            ok=True,
            detail=f"{user} is disabled ({self.lock_name} {account.lock}, held by {account.describe_holders()}; "
            f"{how}; this key {'holds' if holds else 'does not hold'} it)",
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
