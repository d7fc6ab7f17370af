"""Talking to the directory over LDAP (ldap3): one connection per operation, every failure named.

What this module knows is LDAP, not policy: find an account, read a group, apply one modify (LDAP applies a
modify to an entry whole or not at all), try a bind. A directory that cannot be reached or does not answer in
time is a TransientAdapterError naming the URL (the activity retries, then the action fails with that reason);
a refused service bind or a malformed answer is permanent. Values go into filters escaped (ldap3 escapes
nothing on its own in filter text), so a user name cannot become filter syntax.

Referrals are never followed (ldap3 would bind to the host a referral names with the service password, in clear
if the referral says ldap://) and an answer that refers part of itself elsewhere is an error: the part not shown
might hold a second account of the name, or the account's protected group.
"""

from __future__ import annotations

import math
import ssl
import urllib.parse
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from autonomy_controller.actions.adapters.base import AdapterError, TransientAdapterError
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory, Secret

INVALID_CREDENTIALS = 49
REFERRAL = 10
CONFLICT_RESULTS = {16: "noSuchAttribute", 19: "constraintViolation", 20: "attributeOrValueExists"}
"""Results of a modify whose delete-exact-value or add met a changed entry: read again and decide again
(constraintViolation: a second value added to a single-valued attribute, e.g. two disables' own locks at once)."""
GROUP_MEMBER_ATTRIBUTES = ("member", "uniqueMember", "memberUid")
MAX_GROUP_DEPTH = 8


def dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN compared as LDAP does for these purposes: names and values case-insensitively, spacing ignored."""
    try:
        return tuple((name.lower(), value.lower()) for name, value, _ in parse_dn(dn, strip=True))
    except ldap_errors.LDAPException:
        return (("", dn.lower()),)


def _referred_dn(uri: str) -> tuple[tuple[str, str], ...]:
    """The DN an LDAP URL refers to (its path), compared as dn_key does."""
    return dn_key(urllib.parse.unquote(urllib.parse.urlsplit(uri).path.lstrip("/")))


def _within(dn: tuple[tuple[str, str], ...], context: tuple[tuple[str, str], ...]) -> bool:
    return bool(context) and dn[len(dn) - len(context) :] == context


class DirectoryConflict(Exception):
    """A modify refused because the entry changed since it was read. Never leaves the package."""


@dataclass(frozen=True)
class Entry:
    dn: str
    attributes: dict[str, list[str]]

    def values(self, name: str) -> list[str]:
        """An attribute's values, matched case-insensitively as LDAP names are."""
        for key, values in self.attributes.items():
            if key.lower() == name.lower():
                return values
        return []


class Directory:
    """One configured directory: `session()` opens a bound connection for a read-decide-write."""

    def __init__(self, config: IdentityDirectory) -> None:
        self.config = config

    def _server(self) -> ldap3.Server:
        tls = None
        if self.config.tls:
            ca = str(self.config.ca_file) if self.config.ca_file is not None else None
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca, version=ssl.PROTOCOL_TLS_CLIENT)
        return ldap3.Server(
            self.config.url,
            use_ssl=self.config.url.startswith("ldaps://"),
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=self.config.timeout_seconds,
        )

    def _open(self, user: str, secret: str) -> ldap3.Connection:
        """A connection bound as `user`; raises when the directory is unreachable (bind failure: see callers)."""
        connection = ldap3.Connection(
            self._server(),
            user=user,
            password=secret,
            auto_bind=ldap3.AUTO_BIND_NONE,
            auto_referrals=False,  # never send the service password to a host the directory names
            receive_timeout=math.ceil(self.config.timeout_seconds),  # ldap3 packs it as whole seconds (SO_RCVTIMEO)
            raise_exceptions=False,
            read_only=False,
        )
        try:
            connection.open()
            if self.config.start_tls and not self.config.url.startswith("ldaps://"):
                connection.start_tls()
            connection.bind()
        except ldap_errors.LDAPException as exc:
            connection.unbind()
            raise self.unreachable(exc) from None
        return connection

    def unreachable(self, exc: Exception) -> AdapterError:
        """A TLS failure is a configuration problem (permanent); anything else on the wire is worth a retry."""
        text = str(exc) or type(exc).__name__
        if isinstance(exc, ldap_errors.LDAPStartTLSError) or "certificate" in text.lower() or "ssl" in text.lower():
            return AdapterError(f"TLS with the directory {self.config.url} failed: {text}")
        return TransientAdapterError(f"the directory {self.config.url} is unreachable or did not answer: {text}")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A connection bound as the configured service account, closed afterwards whatever happens."""
        connection = self._open(self.config.bind_dn, self.config.reveal())
        try:
            if not connection.bound:
                raise AdapterError(
                    f"the directory {self.config.url} refused the bind as {self.config.bind_dn} "
                    f"({connection.result.get('description')}): check the password in {self.config.where}"
                )
            yield Session(self, connection)
        finally:
            connection.unbind()

    def bind_works(self, dn: str, secret: Secret, refused_as: str | None = None) -> bool:
        """Whether `dn` can log in with `secret` now: True, False (invalid credentials, which is also what a
        locked account answers), or an error when the directory gives any other answer or none. With
        `refused_as`, a refusal counts only when its diagnostic says so (AD's "data 533": account disabled; its
        "data 52e", a wrong password, would prove nothing about the lock)."""
        connection = self._open(dn, secret.reveal())
        try:
            if connection.bound:
                return True
            if connection.result.get("result") == INVALID_CREDENTIALS:
                message = str(connection.result.get("message") or "")
                if refused_as is not None and refused_as not in message:
                    raise AdapterError(
                        f"bind as {dn} to {self.config.url} was refused, but not as a disabled account is "
                        f"({message.strip()}): is the probe account's configured password right?"
                    )
                return False
            raise AdapterError(f"bind as {dn} to {self.config.url} answered {connection.result.get('description')}")
        finally:
            connection.unbind()


class Session:
    """A bound connection's operations: search, read, modify. Every call checks the answer it got."""

    def __init__(self, directory: Directory, connection: ldap3.Connection) -> None:
        self.directory, self.connection = directory, connection
        self.url = directory.config.url

    def _check(self, ok: bool, what: str) -> None:
        if ok:
            return
        result = self.connection.result or {}
        if result.get("type") is None and result.get("result") is None:  # no answer at all: the wire failed
            raise TransientAdapterError(f"the directory {self.url} did not answer {what}")
        if result.get("result") == REFERRAL:
            raise AdapterError(
                f"{what} on {self.url}: the directory refers it to {result.get('referrals')}; referrals are not "
                "followed (configure the server that holds the entries)"
            )
        raise AdapterError(f"{what} on {self.url} failed: {result.get('description')} {result.get('message') or ''}")

    def _run(self, call: Any, what: str) -> bool:
        try:
            return bool(call())
        except ldap_errors.LDAPException as exc:
            raise self.directory.unreachable(exc) from None

    def find_user(self, name: str, attributes: list[str], kind: str = "", accountless: Collection[str] = ()) -> Entry:
        """The one entry under users_base whose user attribute equals `name` (and that matches the filter `kind`,
        e.g. AD's person objects); none or several is an error, and so is an answer referring part of users_base
        elsewhere, except into the naming contexts `accountless` (which hold no accounts: see _answer)."""
        config = self.directory.config
        query = f"({config.user_attribute}={escape_filter_chars(name)})"
        query = f"(&{kind}{query})" if kind else query
        ok = self._run(
            lambda: self.connection.search(
                config.users_base, query, search_scope=ldap3.SUBTREE, attributes=attributes, size_limit=2
            ),
            f"the search for {config.user_attribute}={name}",
        )
        result = self.connection.result or {}
        if result.get("description") == "noSuchObject":
            raise AdapterError(f"users_base {config.users_base} does not exist in {self.url}")
        if not ok and result.get("description") not in ("success", "sizeLimitExceeded"):  # none, several: below
            self._check(ok, f"the search for {config.user_attribute}={name}")
        what = f"the search for {config.user_attribute}={name}"
        found = [self._entry(item) for item in self._answer(what, accountless)]
        if len(found) < 2 and result.get("description") == "sizeLimitExceeded":  # the server's own limit, not ours
            raise AdapterError(
                f"the directory {self.url} stopped the search for {config.user_attribute}={name} at its size limit "
                f"after {len(found)} entry(ies): whether the name is one account's cannot be told, nothing done"
            )
        if not found:
            raise AdapterError(f"no account with {config.user_attribute}={name} under {config.users_base}")
        if len(found) > 1:
            raise AdapterError(
                f"{config.user_attribute}={name} matches several entries under {config.users_base} "
                f"({found[0].dn}, {found[1].dn}, ...): refusing to guess which account is meant"
            )
        return found[0]

    def read(self, dn: str, attributes: list[str]) -> Entry | None:
        """One entry by DN, or None when there is no such entry."""
        ok = self._run(
            lambda: self.connection.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=attributes),
            f"reading {dn}",
        )
        if not ok:
            if (self.connection.result or {}).get("description") == "noSuchObject":
                return None
            self._check(ok, f"reading {dn}")
        entries = [self._entry(item) for item in self._answer(f"reading {dn}")]
        return entries[0] if entries else None

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]], what: str) -> None:
        """One atomic modify; DirectoryConflict when a value it deletes is gone or one it adds is there."""
        ok = self._run(lambda: self.connection.modify(dn, changes), what)
        if not ok and (self.connection.result or {}).get("result") in CONFLICT_RESULTS:
            raise DirectoryConflict(str(self.connection.result.get("description")))
        self._check(ok, what)

    def search(
        self,
        base: str,
        query: str,
        attributes: list[str],
        scope: str = ldap3.SUBTREE,
        harmless: Collection[str] = (),
    ) -> list[Entry]:
        """The entries `query` finds (none when `base` itself does not exist); values are text. References into
        the subtrees `harmless` (which cannot hold what is asked) are left out; any other fails the search."""
        return [self._entry(item) for item in self._search_raw(base, query, attributes, scope, harmless)]

    def _search_raw(
        self, base: str, query: str, attributes: list[str], scope: str, harmless: Collection[str] = ()
    ) -> list[dict[str, Any]]:
        what = f"the search for {query} under {base or 'the root DSE'}"
        ok = self._run(lambda: self.connection.search(base, query, search_scope=scope, attributes=attributes), what)
        if not ok and (self.connection.result or {}).get("description") not in ("success", "noSuchObject"):
            self._check(ok, what)
        return self._answer(what, harmless)

    def _answer(self, what: str, harmless: Collection[str] = ()) -> list[dict[str, Any]]:
        """The entries of the last search; one that refers part of its scope to another server is not whole,
        unless the part is inside one of the subtrees `harmless`, which cannot hold what is asked (for an account:
        AD's Configuration, Schema and DNS partitions)."""
        response = self.connection.response or []
        uris = [uri for item in response if item.get("type") == "searchResRef" for uri in item.get("uri") or []]
        subtrees = [dn_key(dn) for dn in harmless]
        elsewhere = [uri for uri in uris if not any(_within(_referred_dn(uri), tree) for tree in subtrees)]
        if elsewhere:
            raise AdapterError(
                f"{what} on {self.url}: the directory refers part of the answer to {elsewhere}; a partial answer is "
                "not taken as whole (the part not shown may hold another entry of that name, or a membership)"
            )
        return [item for item in response if item.get("type") == "searchResEntry"]

    def binary(self, dn: str, attribute: str) -> bytes | None:
        """One binary value (e.g. objectSid) of the entry `dn`, as it is on the wire."""
        for item in self._search_raw(dn, "(objectClass=*)", [attribute], ldap3.BASE):
            for key, values in (item.get("raw_attributes") or {}).items():
                if key.lower() == attribute.lower() and values:
                    return bytes(values[0])
        return None

    @staticmethod
    def _entry(item: dict[str, Any]) -> Entry:
        raw = item.get("raw_attributes") or {}
        attributes = {
            key: [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in values]
            for key, values in raw.items()
        }
        return Entry(dn=str(item["dn"]), attributes=attributes)

    def protecting_group(self, dn: str, uids: list[str]) -> str | None:
        """The configured protected group that has `dn` (or, for posixGroup, one of the entry's own `uids`) as a
        member, directly or through nested groups; None when none does. A protected group that cannot be read
        fails closed. uids are compared case-insensitively: a protected `Admin` also covers `admin`."""
        folded = {uid.casefold() for uid in uids}
        for group in self.directory.config.protected_groups:
            if self._member_of(group, dn_key(dn), folded, depth=0, seen=set(), protected=group):
                return group
        return None

    def _member_of(
        self,
        group: str,
        dn: tuple[tuple[str, str], ...],
        uids: set[str],
        depth: int,
        seen: set[tuple[Any, ...]],
        protected: str,
    ) -> bool:
        key = dn_key(group)
        if key in seen:  # a cycle: already asked
            return False
        if depth > MAX_GROUP_DEPTH:  # a deny-list cut short protects nobody below the cut: cannot tell, refuse
            raise AdapterError(
                f"protected group {protected} nests groups more than {MAX_GROUP_DEPTH} deep (down to {group}): "
                "whether the account is a member cannot be told, so it is not touched"
            )
        seen.add(key)
        entry = self.read(group, list(GROUP_MEMBER_ATTRIBUTES))
        if entry is None:
            if depth > 0:  # a dangling member reference of a protected group: nothing to follow
                return False
            raise AdapterError(
                f"protected group {group} does not exist in {self.url}: refusing to touch any account until the "
                "enforcement file names groups that do (a missing deny-list must not mean nobody is protected)"
            )
        members = entry.values("member") + entry.values("uniqueMember")
        if any(dn_key(member) == dn for member in members):
            return True
        if uids & {member.casefold() for member in entry.values("memberUid")}:
            return True
        # nested groups: a member that is itself a group (a user entry read here has no member attributes)
        return any(self._member_of(member, dn, uids, depth + 1, seen, protected) for member in members)
