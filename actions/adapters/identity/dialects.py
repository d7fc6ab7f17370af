"""How each kind of directory disables an account, and whom it protects: the two dialects of the adapter.

The ownership rule, the holds and the decisions (lockout.py) are the same for both; a dialect says which
attributes to read, whether the entry is disabled, the modify that disables, keeps disabled or enables it, and
which accounts the directory itself says must never be touched.

- openldap-ppolicy: a permanent `pwdAccountLockedTime`, enforced only under a policy with `pwdLockout: TRUE`.
  slapd takes 0000-01-01 00:00:00 (and the epoch), whatever the fraction of a second, for a lock for good
  whatever `pwdLockoutDuration` says: a person writes `000001010000Z`, a disable of ours
  `00000101000000.<6 random digits>Z`, its mark, recorded in the holds value. Any other value is a time:
  ppolicy's own lockout after failed binds, which lifts itself after the policy's `pwdLockoutDuration` (when it
  is not 0), or a time still to come, which slapd ignores until then. Neither is a disable: a disable replaces
  it by the permanent lock, and the holds value records it so that the last holder's enable gives it back.
  Protected groups are read member by member (nested groups followed; posixGroup's memberUid compared with the
  entry's own uid, case-insensitively).
- active-directory: the ACCOUNTDISABLE bit (0x2) of `userAccountControl`, every other bit kept as read. The
  bit carries no value of ours, so the mark of a disable is the DC's own record of the write that last changed
  `userAccountControl` (replPropertyMetaData: the originating DC's invocation id and USN, the same on every DC),
  read back after the disable and recorded in the holds value. The
  domain's privileged groups (Administrators, Domain Admins, Schema and Enterprise Admins, found by their
  well-known SIDs, not their names) are always protected, with the configured groups; membership is asked of the
  directory with LDAP_MATCHING_RULE_IN_CHAIN (nested groups, resolved by the DC), for the account and for its
  primary group (found by SID from primaryGroupID: a primary group is not in the group's `member`).

A lock is ours only while its mark is the one our holds recorded: a lock lifted by hand and set again (by a
person, or ppolicy) has another, and no undo lifts it (lockout.py).

Every change is phrased as delete-the-value-read + add-the-new-one, so OpenLDAP refuses a decision taken on a
stale read. Samba's AD DC treats any userAccountControl change as a replace (it does not refuse a delete of a
value that is no longer there), so there the holds value (deleted by its exact text) is what catches a change
under our feet, and a decision that keeps the account disabled does not write the bit again (on a DC that
counts such a write as a change, it would move the mark); a person flipping the bit by hand in the same instant
as our write is the window left.
"""

from __future__ import annotations

import re
import secrets
import struct
import uuid
from datetime import UTC, datetime
from typing import Protocol

import ldap3
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_filter_chars

from autonomy_controller.actions.adapters.base import AdapterError
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory
from autonomy_controller.actions.adapters.identity.directory import Entry, Session, dn_key

Changes = dict[str, list[tuple[str, list[str]]]]
HOLDS_PREFIX = "autonomy-holds: "
"""The one value of the holds attribute that is ours (lockout.py)."""

LOCK_ATTRIBUTE = "pwdAccountLockedTime"
LOCKED_FOREVER = "000001010000Z"
"""The permanent lock as people (and the ppolicy documentation) write it; a disable of ours writes its own."""
FOR_GOOD = re.compile(r"^(0000010100|1970010100)(00){0,2}([.,]\d+)?Z$")
"""Values slapd's ppolicy reads as time 0 (lutil_tm2time's special case for year 0, and the epoch), fractions of
a second ignored: a lock for good whatever pwdLockoutDuration says."""
POLICY_ATTRIBUTE = "pwdPolicySubentry"
LOCKOUT_DURATION = "pwdLockoutDuration"
"""Seconds after which ppolicy lifts a lockout it set itself (0 or absent: never)."""

USER_ACCOUNT_CONTROL = "userAccountControl"
ACCOUNTDISABLE = 0x2
REPLICATION_METADATA = "replPropertyMetaData"
USER_ACCOUNT_CONTROL_ATTID = 0x00090008
"""userAccountControl (1.2.840.113556.1.4.8) in replPropertyMetaData: prefix 1.2.840.113556.1.4 is entry 9 of
the fixed prefix table every AD forest shares (MS-DRSR 5.16.4)."""
IN_CHAIN = "1.2.840.113556.1.4.1941"
"""LDAP_MATCHING_RULE_IN_CHAIN: the DC follows nested group membership itself."""
PRIVILEGED_RIDS = {512: "Domain Admins", 518: "Schema Admins", 519: "Enterprise Admins"}
"""Domain-relative RIDs of the groups an adapter never touches (Schema/Enterprise Admins: forest root only)."""
ADMINISTRATORS_SID = "S-1-5-32-544"
SINGLE_VALUED_ON_ACCOUNTS = frozenset({"description"})
"""Multi-valued in AD's schema, but the SAM keeps them to one value on accounts."""
REQUIRED = ("Domain Admins", "Administrators")
"""A domain in which these cannot be found is not read right: refuse everyone rather than protect nobody."""


class LockDialect(Protocol):
    name: str
    lock_name: str
    refused_as: str | None
    """What a bind refused because the account is disabled says (None: the directory does not tell)."""

    def attributes(self) -> list[str]: ...

    def kind(self) -> str:
        """An extra filter an account entry must match (empty: any entry with the user attribute)."""
        ...

    def accountless(self, session: Session) -> list[str]:
        """Naming contexts that hold no accounts: a search referring into them is still whole for a lookup."""
        ...

    def lock_of(self, entry: Entry) -> str | None:
        """The lock as read (a value to show and to compare), or None when the account is not disabled."""
        ...

    def lasting_lock(self, session: Session, entry: Entry) -> str | None:
        """lock_of, but None for a lock that is not a disable: one the directory lifts by itself, or one not yet
        in force (a disable replaces it, and the revert gives it back)."""
        ...

    def mint(self) -> str | None:
        """The mark of a lock about to be set, when the lock itself carries it (None: the directory's, read back
        once written, lock_mark)."""
        ...

    def lock_mark(self, session: Session, entry: Entry) -> str | None:
        """What tells the lock on the entry now from any other lock ever set on it (None: cannot be told)."""
        ...

    def lock(self, entry: Entry, mark: str | None) -> Changes: ...

    def still_locked(self, entry: Entry) -> Changes: ...

    def unlock(self, entry: Entry, restore: str | None) -> Changes:
        """Lift the lock read, putting back `restore` (the lock a disable replaced) if any."""
        ...

    def refuse_unenforced(self, session: Session, entry: Entry) -> None: ...

    def protecting_group(self, session: Session, entry: Entry) -> str | None: ...


class OpenLdapPpolicy:
    name: str = "openldap-ppolicy"
    lock_name: str = LOCK_ATTRIBUTE
    refused_as: str | None = None

    def __init__(self, config: IdentityDirectory) -> None:
        self.config = config

    def attributes(self) -> list[str]:
        return [LOCK_ATTRIBUTE, POLICY_ATTRIBUTE, "uid"]

    def kind(self) -> str:
        return ""

    def accountless(self, session: Session) -> list[str]:
        return []  # any reference may hold accounts: the search fails on it

    def lock_of(self, entry: Entry) -> str | None:
        values = entry.values(LOCK_ATTRIBUTE)
        return values[0] if values else None

    def lasting_lock(self, session: Session, entry: Entry) -> str | None:
        lock = self.lock_of(entry)
        if lock is None or locks_for_good(lock):
            return lock
        when = lock_time(lock)
        if when is not None and when > datetime.now(UTC):
            return None  # slapd ignores a lock time still to come: the account logs in until then
        policy = self._policy(session, entry)
        duration = policy.values(LOCKOUT_DURATION) if policy is not None else []
        if duration and duration[0].strip() not in ("", "0"):
            return None  # a time: ppolicy lifts it pwdLockoutDuration later, by itself
        return lock  # under a policy that never lifts a lockout (or none we can read): it stays until lifted

    def mint(self) -> str:
        """A permanent lock of our own: 0000-01-01 00:00:00 (for good, see FOR_GOOD) with a random fraction of a
        second, which tells it from a person's 000001010000Z and from every other disable of ours."""
        return "00000101000000." + "".join(secrets.choice("123456789") for _ in range(6)) + "Z"

    def lock_mark(self, session: Session, entry: Entry) -> str | None:
        return self.lock_of(entry)  # the value itself: ours is minted, unique

    def lock(self, entry: Entry, mark: str | None) -> Changes:
        """The permanent lock `mark`; a temporary one found in its place is deleted by its exact value."""
        assert mark is not None
        temporary = self.lock_of(entry)
        replaced = [(ldap3.MODIFY_DELETE, [temporary])] if temporary is not None else []
        return {LOCK_ATTRIBUTE: [*replaced, (ldap3.MODIFY_ADD, [mark])]}

    def still_locked(self, entry: Entry) -> Changes:
        """Assert the lock is the one we read (delete + add back its value): fails whole if it was lifted."""
        lock = self.lock_of(entry)
        assert lock is not None
        return {LOCK_ATTRIBUTE: [(ldap3.MODIFY_DELETE, [lock]), (ldap3.MODIFY_ADD, [lock])]}

    def unlock(self, entry: Entry, restore: str | None) -> Changes:
        lock = self.lock_of(entry)
        assert lock is not None
        given_back = [(ldap3.MODIFY_ADD, [restore])] if restore is not None else []
        return {LOCK_ATTRIBUTE: [(ldap3.MODIFY_DELETE, [lock]), *given_back]}

    def _policy_dn(self, entry: Entry) -> str | None:
        named = entry.values(POLICY_ATTRIBUTE)
        return named[0] if named else self.config.default_policy

    def _policy(self, session: Session, entry: Entry) -> Entry | None:
        """The password policy governing the entry, as read (None: none named, or no such entry)."""
        dn = self._policy_dn(entry)
        return session.read(dn, ["pwdLockout", LOCKOUT_DURATION]) if dn is not None else None

    def refuse_unenforced(self, session: Session, entry: Entry) -> None:
        """The lock only stops logins under a policy with pwdLockout TRUE: say so rather than claim a disable."""
        dn = self._policy_dn(entry)
        if dn is None:
            raise AdapterError(
                f"{entry.dn} has no password policy (no {POLICY_ATTRIBUTE}, no default_policy configured): "
                f"{LOCK_ATTRIBUTE} would not stop its logins"
            )
        policy = self._policy(session, entry)
        if policy is None or [v.upper() for v in policy.values("pwdLockout")] != ["TRUE"]:
            state = "does not exist" if policy is None else "does not set pwdLockout: TRUE"
            raise AdapterError(
                f"password policy {dn} of {entry.dn} {state}: slapd ignores {LOCK_ATTRIBUTE} without it, "
                "so a disable would not stop logins"
            )

    def protecting_group(self, session: Session, entry: Entry) -> str | None:
        return session.protecting_group(entry.dn, entry.values("uid"))


class ActiveDirectory:
    name: str = "active-directory"
    lock_name: str = f"{USER_ACCOUNT_CONTROL} ACCOUNTDISABLE"
    refused_as: str | None = "data 533"
    """AD's bind diagnostic for a disabled account (ERROR_ACCOUNT_DISABLED); a wrong password is "data 52e"."""

    def __init__(self, config: IdentityDirectory) -> None:
        self.config = config

    def attributes(self) -> list[str]:
        return [USER_ACCOUNT_CONTROL, "primaryGroupID"]

    def kind(self) -> str:
        return "(objectCategory=person)(objectClass=user)"

    def _root(self, session: Session) -> Entry | None:
        roots = session.search("", "(objectClass=*)", ["defaultNamingContext", "namingContexts"], scope=ldap3.BASE)
        return roots[0] if roots else None

    def accountless(self, session: Session) -> list[str]:
        """The DC's naming contexts other than its domain's (Configuration, Schema, application partitions such as
        the DNS zones): AD keeps security principals out of them. A reference to another domain still fails."""
        root = self._root(session)
        if root is None:
            return []
        domain = {dn_key(context) for context in root.values("defaultNamingContext")}
        return [context for context in root.values("namingContexts") if dn_key(context) not in domain]

    def _control(self, entry: Entry) -> int:
        values = entry.values(USER_ACCOUNT_CONTROL)
        try:
            return int(values[0])
        except (IndexError, ValueError):
            what = f"{entry.dn} has no readable {USER_ACCOUNT_CONTROL} ({values}): not an account"
            raise AdapterError(what) from None

    def lock_of(self, entry: Entry) -> str | None:
        control = self._control(entry)
        return str(control) if control & ACCOUNTDISABLE else None

    def lasting_lock(self, session: Session, entry: Entry) -> str | None:
        return self.lock_of(entry)  # ACCOUNTDISABLE never lifts itself (AD's lockout is lockoutTime, not this)

    def _set(self, entry: Entry, control: int) -> Changes:
        old = str(self._control(entry))
        return {USER_ACCOUNT_CONTROL: [(ldap3.MODIFY_DELETE, [old]), (ldap3.MODIFY_ADD, [str(control)])]}

    def mint(self) -> None:
        return None  # the bit carries no value of ours: the DC's record of the write marks it, read back

    def lock_mark(self, session: Session, entry: Entry) -> str | None:
        """The originating write that last changed userAccountControl, as the DC records it for replication
        (invocation id and USN of the DC where it was made: the same on every DC, and never reused)."""
        return change_stamp(session.binary(entry.dn, REPLICATION_METADATA), USER_ACCOUNT_CONTROL_ATTID)

    def lock(self, entry: Entry, mark: str | None) -> Changes:
        return self._set(entry, self._control(entry) | ACCOUNTDISABLE)

    def still_locked(self, entry: Entry) -> Changes:
        return {}  # Samba would not refuse it anyway (see the module's docstring); the holds value's CAS stays

    def unlock(self, entry: Entry, restore: str | None) -> Changes:
        return self._set(entry, self._control(entry) & ~ACCOUNTDISABLE)  # nothing is ever replaced on AD

    def refuse_unenforced(self, session: Session, entry: Entry) -> None:
        """AD enforces ACCOUNTDISABLE for every account: check that the entry is one, and that our holds value
        has room (a person's description of the account leaves none: the SAM keeps it single-valued)."""
        self._control(entry)
        holds = self.config.holds_attribute
        theirs = [value for value in entry.values(holds) if not value.startswith(HOLDS_PREFIX)]
        if holds.lower() in SINGLE_VALUED_ON_ACCOUNTS and theirs:
            raise AdapterError(
                f"{entry.dn} has a {holds} of its own, and AD keeps {holds} single-valued on accounts: there is no "
                "room to record who holds the disable, so nothing was applied. Set holds_attribute to a "
                "multi-valued attribute the organisation does not use (e.g. carLicense)"
            )

    def _domain(self, session: Session) -> tuple[str, str]:
        """The domain's naming context (the server's defaultNamingContext) and its SID."""
        root = self._root(session)
        context = root.values("defaultNamingContext") if root is not None else []
        raw = session.binary(context[0], "objectSid") if context else None
        if raw is None:
            raise AdapterError(f"{self.config.url} did not say its domain and SID: refusing to touch any account")
        return context[0], format_sid(raw)

    def privileged_groups(self, session: Session, context: str, domain_sid: str) -> list[str]:
        """The domain's privileged groups, found by well-known SID under the domain's naming context."""
        sids = {f"{domain_sid}-{rid}": name for rid, name in PRIVILEGED_RIDS.items()}
        sids[ADMINISTRATORS_SID] = "Administrators"
        query = "(|" + "".join(f"(objectSid={sid})" for sid in sids) + ")"
        query = f"(&(objectClass=group){query})"
        # groups with this domain's SIDs live in its own naming context: references under it (other partitions,
        # child domains) cannot hold them, so they are left out
        found = session.search(context, query, ["objectSid", "cn"], harmless=[context])
        names = {entry.values("cn")[0] if entry.values("cn") else "" for entry in found}
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise AdapterError(
                f"{', '.join(missing)} not found by SID in {self.config.url}: refusing to touch any account until "
                "the domain's privileged groups can be read (a missing deny-list must not mean nobody is protected)"
            )
        return [entry.dn for entry in found]

    def _primary_group(self, session: Session, entry: Entry, context: str, domain_sid: str) -> str | None:
        """The DN of the account's primary group (its SID: the domain's + primaryGroupID), None without one. Its
        membership is in no group's `member`, so the chain rule never sees it: it is asked about apart."""
        values = entry.values("primaryGroupID")
        if not values:
            return None
        sid = f"{domain_sid}-{values[0]}" if values[0].isdigit() else None
        query = f"(&(objectClass=group)(objectSid={sid}))"
        found = session.search(context, query, ["1.1"], harmless=[context]) if sid else []
        if len(found) != 1:
            raise AdapterError(
                f"the primary group ({values[0]}) of {entry.dn} cannot be found in {self.config.url}: refusing to "
                "touch the account (its memberships cannot all be checked)"
            )
        return found[0].dn

    def protecting_group(self, session: Session, entry: Entry) -> str | None:
        context, domain_sid = self._domain(session)
        primary = self._primary_group(session, entry, context, domain_sid)
        for group in [*self.privileged_groups(session, context, domain_sid), *self.config.protected_groups]:
            if session.read(group, ["1.1"]) is None:
                raise AdapterError(
                    f"protected group {group} does not exist in {self.config.url}: refusing to touch any account "
                    "until the enforcement file names groups that do (a missing deny-list must not mean nobody is "
                    "protected)"
                )
            chain = f"(memberOf:{IN_CHAIN}:={escape_filter_chars(group)})"
            if session.search(entry.dn, chain, ["1.1"], scope=ldap3.BASE):
                return group
            if primary is not None and (
                dn_key(primary) == dn_key(group) or session.search(primary, chain, ["1.1"], scope=ldap3.BASE)
            ):
                return group  # through the primary group: the group itself, or one nested in it
        return None


def locks_for_good(value: str) -> bool:
    """Whether slapd's ppolicy reads this pwdAccountLockedTime as a lock that never lifts itself."""
    return FOR_GOOD.match(value) is not None


def change_stamp(blob: bytes | None, attid: int) -> str | None:
    """`usn@invocation-id` of the originating write that last changed the attribute `attid`, read from an AD
    replPropertyMetaData value (MS-DRSR replPropertyMetaDataBlob, version 1: a 16-byte header, then 48 bytes per
    attribute); None when the blob is missing, malformed or does not name the attribute."""
    if blob is None or len(blob) < 16:
        return None
    version, _, count, _ = struct.unpack_from("<IIII", blob, 0)
    if version != 1 or len(blob) < 16 + 48 * count:
        return None
    for index in range(count):
        found, _, _, invocation, usn, _ = struct.unpack_from("<IIQ16sQQ", blob, 16 + 48 * index)
        if found == attid:
            return f"{usn}@{uuid.UUID(bytes_le=invocation)}"
    return None


def lock_time(value: str) -> datetime | None:
    """A pwdAccountLockedTime as a time (GeneralizedTime, UTC, fractions ignored); None when it is not one
    (slapd takes such a value for a lock for good, and year 0, 000001010000Z, is not one: locks_for_good)."""
    try:
        return datetime.strptime(value.split(".")[0].rstrip("Z")[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def dialect_of(config: IdentityDirectory) -> LockDialect:
    return ActiveDirectory(config) if config.dialect == "active-directory" else OpenLdapPpolicy(config)
