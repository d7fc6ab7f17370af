"""Adversarial review of identity containment against a real slapd, with other layouts and other names.

Each test here failed before its fix (or is a strict xfail naming a product decision): names an attacker
controls, state the controller did not create (ppolicy's own temporary lockouts), directories that refer part
of the answer elsewhere. The server is the product's throwaway slapd (controller/lab/directory_server.py),
one per test session, as in tests/test_identity.py; every test makes its own accounts and groups.
"""

from __future__ import annotations

import datetime
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ldap3
import pytest

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionStatus, AdapterError
from autonomy_controller.actions.adapters.identity.adapters import DisableUserAdapter
from autonomy_controller.actions.adapters.identity.dialects import HOLDS_PREFIX, LOCK_ATTRIBUTE, LOCKED_FOREVER
from autonomy_controller.actions.adapters.nftables.ownership import owner_comment
from autonomy_controller.controller.lab.login import Counts
from autonomy_controller.controller.lab.login import Directory as LoginDirectory
from tests.slapd import NOLOCK_POLICY, PEOPLE, SERVICE_DN, SUFFIX, Slapd
from tests.test_identity import KEY, OTHER_KEY, disable, held, locked_for_good, request, revert, settings_for, slapd

pytestmark = pytest.mark.lab

__all__ = ["slapd"]  # the session's slapd fixture, shared with tests/test_identity.py

GROUPS = f"ou=groups,{SUFFIX}"
NOTHING_DONE = ActionOutcome(status=ActionStatus.DONE, detail="")
POLICIES = f"ou=policies,{SUFFIX}"


def add_entry(server: Slapd, dn: str, classes: list[str], attributes: dict[str, str | list[str]]) -> None:
    connection = server.admin()
    try:
        assert connection.add(dn, classes, attributes), connection.result
    finally:
        connection.unbind()


def posix_group(server: Slapd, *member_uids: str) -> str:
    """A protected posixGroup of its own, naming its members by uid (memberUid) as NIS-style directories do."""
    name = f"ops-{secrets.token_hex(3)}"
    dn = f"cn={name},{GROUPS}"
    gid = str(20000 + secrets.randbelow(10000))
    add_entry(server, dn, ["posixGroup"], {"cn": name, "gidNumber": gid, "memberUid": list(member_uids)})
    return dn


def lockout_policy(server: Slapd, duration: int, max_failure: int = 2) -> str:
    """A password policy that locks an account after `max_failure` failed binds, for `duration` s (0: for good)."""
    name = f"lockout-{secrets.token_hex(3)}"
    dn = f"cn={name},{POLICIES}"
    attributes: dict[str, str | list[str]] = {
        "cn": name,
        "pwdAttribute": "userPassword",
        "pwdLockout": "TRUE",
        "pwdMaxFailure": str(max_failure),
        "pwdLockoutDuration": str(duration),
    }
    add_entry(server, dn, ["pwdPolicy", "device"], attributes)
    return dn


def guess_wrong(server: Slapd, dn: str, times: int) -> None:
    """What a brute force does before it succeeds: failed binds, until ppolicy locks the account itself."""
    for _ in range(times):
        assert not server.can_bind(dn, "not-the-password")


# -- names an attacker controls -------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", [str.upper, str.title], ids=["upper", "title"])
def test_a_posix_group_member_named_in_another_case_is_still_protected(slapd: Slapd, spelling: object) -> None:
    """uid matches case-insensitively, so `ADMIN-…` finds the account `admin-…`: the memberUid check must compare
    the entry's own uid, not the spelling the alert carried, or a protected account is disabled."""
    uid, dn, password = slapd.add_user("admin")
    group = posix_group(slapd, uid)
    config = settings_for(slapd, protected_groups=[group])
    assert callable(spelling)
    with pytest.raises(AdapterError, match=f"protected group {group}"):
        disable(config, spelling(uid))
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [] and slapd.can_bind(dn, password)


def test_a_posix_group_member_named_by_mail_is_still_protected(slapd: Slapd) -> None:
    """With accounts named by `mail`, memberUid still lists uids: the name the alert gave is not a uid at all."""
    uid, dn, password = slapd.add_user("dba")
    mail = f"{uid}@example.org"
    connection = slapd.admin()
    assert connection.modify(dn, {"mail": [(ldap3.MODIFY_ADD, [mail])]}), connection.result
    connection.unbind()
    group = posix_group(slapd, uid)
    config = settings_for(slapd, protected_groups=[group], user_attribute="mail")
    with pytest.raises(AdapterError, match=f"protected group {group}"):
        disable(config, mail)
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [] and slapd.can_bind(dn, password)


@pytest.mark.parametrize(
    "name",
    [
        *("*", "a*", "x)(uid=*", "x\\2a", "x\x00", "x,ou=people", "x+cn=y", '"x"', "#x", " x", "x ", "x\n"),
        *("\uff41dmin", "\u0131", "\u0130", "x" * 200),  # fullwidth a, dotless i, dotted capital I; too long
    ],
)
def test_a_name_with_filter_or_dn_syntax_is_refused_before_the_directory_is_asked(slapd: Slapd, name: str) -> None:
    """Whatever the alert's `user` holds, it never becomes filter or DN syntax: refused, nothing locked."""
    _, dn, _ = slapd.add_user("x")
    with pytest.raises(AdapterError, match="user"):
        disable(settings_for(slapd), name)
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == []


@contextmanager
def own_slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = Slapd(tmp_path / "own")
    try:
        server.start()
        yield server
    finally:
        server.delete()


def reconfigure(server: Slapd, directive: str) -> None:
    """Restart `server` with one more directive in its database section."""
    server.stop()
    conf = server.root / "slapd.conf"
    conf.write_text(conf.read_text() + directive + "\n")
    server.launch()


def test_a_read_only_directory_fails_closed_naming_why(tmp_path: Path) -> None:
    with own_slapd(tmp_path) as server:
        uid, dn, password = server.add_user()
        reconfigure(server, "readonly on")
        with pytest.raises(AdapterError, match="unwillingToPerform"):
            disable(settings_for(server), uid)
        assert server.attribute(dn, LOCK_ATTRIBUTE) == [] and server.can_bind(dn, password)


def test_a_name_two_accounts_share_is_refused_when_the_directory_answers_only_one_entry(tmp_path: Path) -> None:
    """A directory whose size limit for our service account is 1 stops after the first match (sizeLimitExceeded):
    one entry seen is not "exactly one"; the first must never be taken."""
    with own_slapd(tmp_path) as server:
        reconfigure(server, f'limits dn.exact="{SERVICE_DN}" size=1')
        uid, dns = f"dup-{secrets.token_hex(3)}", []
        for ou in ("east", "west"):
            add_entry(server, f"ou={ou},{PEOPLE}", ["organizationalUnit"], {"ou": ou})
            dns.append(f"uid={uid},ou={ou},{PEOPLE}")
            add_entry(server, dns[-1], ["inetOrgPerson"], {"cn": uid, "sn": uid, "uid": uid, "userPassword": "x"})
        with pytest.raises(AdapterError, match="size limit"):
            disable(settings_for(server), uid)
        assert all(server.attribute(dn, LOCK_ATTRIBUTE) == [] for dn in dns)


def test_a_member_nested_deeper_than_the_adapter_follows_is_refused_not_disabled(slapd: Slapd) -> None:
    """Group nesting past the depth the adapter follows must not read as "not a member": it cannot tell, so it
    refuses (a deny-list cut short protects nobody below the cut)."""
    uid, dn, password = slapd.add_user("deep")
    inner = dn
    for level in range(12):  # protected -> g11 -> ... -> g0 -> the account
        group = f"cn=deep-{secrets.token_hex(3)}-{level},{GROUPS}"
        slapd.add_group(group, [inner])
        inner = group
    with pytest.raises(AdapterError, match=inner):
        disable(settings_for(slapd, protected_groups=[inner]), uid)
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [] and slapd.can_bind(dn, password)


def test_the_probe_account_is_found_whatever_the_case_of_the_alerts_name(slapd: Slapd, tmp_path: Path) -> None:
    """verify's bind test must not be skipped because the alert spelt the account in capitals."""
    uid, _, password = slapd.add_user("probe")
    secret = tmp_path / "probe-password"
    secret.write_text(password)
    config = settings_for(slapd, probe_accounts={uid: {"password_file": str(secret)}})
    outcome = disable(config, uid.upper())
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid.upper()), outcome)
    assert verdict.ok, verdict.detail
    assert verdict.evidence["probe_bind_works"] is False


# -- state the controller did not create: ppolicy's own lockouts ---------------------------------------------


def test_a_temporary_lockout_is_not_taken_for_a_disable(slapd: Slapd) -> None:
    """Failed guesses make ppolicy lock the account for pwdLockoutDuration: a lock that lifts itself. Answering
    "already disabled by a person" would leave the guessed account usable a few seconds later."""
    policy = lockout_policy(slapd, duration=2)
    uid, dn, password = slapd.add_user("guessed", policy=policy)
    guess_wrong(slapd, dn, 2)
    temporary = slapd.attribute(dn, LOCK_ATTRIBUTE)
    assert temporary and temporary != [LOCKED_FOREVER]
    config = settings_for(slapd)

    before = DisableUserAdapter(config).verify(request("identity.disable_user", uid), NOTHING_DONE)
    assert not before.ok, before.detail  # a lock that lifts itself is not a disable

    outcome = disable(config, uid)
    assert outcome.status is ActionStatus.DONE and outcome.evidence["mine"] is True
    assert locked_for_good(slapd.attribute(dn, LOCK_ATTRIBUTE))
    time.sleep(3)  # past the policy's lockout duration
    assert not slapd.can_bind(dn, password)

    assert revert(config, uid).status is ActionStatus.DONE
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == temporary  # the lockout it replaced, given back (now expired)
    assert slapd.can_bind(dn, password)


def test_a_lock_dated_in_the_future_is_not_a_disable_and_our_revert_puts_it_back(slapd: Slapd) -> None:
    """slapd ignores a pwdAccountLockedTime still in the future (a person scheduling a lock): the account logs in.
    Taking it for a person's disable would leave it usable; our revert must give the person's schedule back."""
    uid, dn, password = slapd.add_user("scheduled")
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    slapd.lock_by_hand(dn, later)
    assert slapd.can_bind(dn, password)  # not yet in effect
    config = settings_for(slapd)
    assert not DisableUserAdapter(config).verify(request("identity.disable_user", uid), NOTHING_DONE).ok

    outcome = disable(config, uid)
    assert outcome.status is ActionStatus.DONE and outcome.evidence["mine"] is True
    assert later in outcome.detail
    assert locked_for_good(slapd.attribute(dn, LOCK_ATTRIBUTE)) and not slapd.can_bind(dn, password)

    assert revert(config, uid).status is ActionStatus.DONE
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [later] and slapd.attribute(dn, "description") == []
    assert slapd.can_bind(dn, password)


def test_the_lock_a_disable_replaced_is_kept_across_holders_and_given_back_by_the_last(slapd: Slapd) -> None:
    uid, dn, password = slapd.add_user("scheduled")
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    slapd.lock_by_hand(dn, later)
    config = settings_for(slapd)
    disable(config, uid, KEY)
    assert set(disable(config, uid, OTHER_KEY).evidence["holders"]) == {owner_comment(KEY), owner_comment(OTHER_KEY)}

    assert revert(config, uid, KEY).evidence["left_in_place"] is True
    assert locked_for_good(slapd.attribute(dn, LOCK_ATTRIBUTE)) and not slapd.can_bind(dn, password)
    assert revert(config, uid, OTHER_KEY).status is ActionStatus.DONE
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [later]


@pytest.mark.parametrize("planted", ["not json", "[1, 2]", '{"holders": "x"}'])
def test_a_holds_value_planted_on_an_enabled_account_does_not_stop_its_disable(slapd: Slapd, planted: str) -> None:
    """Where accounts may write their own description, the attacker holding one can plant a malformed holds
    value before we act: an enabled account's holds are void (whoever enabled it ended them), so they are
    replaced, never parsed into a refusal that leaves the account usable."""
    uid, dn, password = slapd.add_user("planted")
    connection = slapd.admin()
    assert connection.modify(dn, {"description": [(ldap3.MODIFY_ADD, [HOLDS_PREFIX + planted])]}), connection.result
    connection.unbind()
    config = settings_for(slapd)

    assert disable(config, uid).status is ActionStatus.DONE
    assert held(slapd.attribute(dn, "description"))["holders"] == [owner_comment(KEY)]
    assert len(slapd.attribute(dn, "description")) == 1
    assert not slapd.can_bind(dn, password)


def test_a_lockout_for_good_is_the_directorys_and_our_revert_leaves_it(slapd: Slapd) -> None:
    """Under a policy without pwdLockoutDuration ppolicy's lockout lasts until a person lifts it: it is not ours."""
    policy = lockout_policy(slapd, duration=0)
    uid, dn, password = slapd.add_user("guessed", policy=policy)
    guess_wrong(slapd, dn, 2)
    lock = slapd.attribute(dn, LOCK_ATTRIBUTE)
    config = settings_for(slapd)

    outcome = disable(config, uid)
    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["mine"] is False
    undone = revert(config, uid)
    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["left_in_place"] is True
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == lock and not slapd.can_bind(dn, password)


def test_an_account_renamed_while_disabled_is_not_confused_with_the_one_now_named_so(slapd: Slapd) -> None:
    """Renamed while disabled, and a new account given the old name (a person's, already locked by them): our
    revert finds the new account, which carries no hold of ours, and leaves it; the renamed one stays locked."""
    uid, dn, password = slapd.add_user("renamed")
    config = settings_for(slapd)
    disable(config, uid)
    new_uid = f"{uid}-old"
    connection = slapd.admin()
    assert connection.modify_dn(dn, f"uid={new_uid}", delete_old_dn=True), connection.result
    connection.unbind()
    moved = f"uid={new_uid},{PEOPLE}"
    _, successor, successor_password = slapd.add_user(uid=uid)
    slapd.lock_by_hand(successor)

    undone = revert(config, uid)

    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["left_in_place"] is True
    assert slapd.attribute(successor, LOCK_ATTRIBUTE) == [LOCKED_FOREVER]
    assert not slapd.can_bind(successor, successor_password) and not slapd.can_bind(moved, password)


def test_an_account_moved_to_another_ou_while_disabled_is_still_reverted(slapd: Slapd) -> None:
    uid, dn, password = slapd.add_user("moved")
    config = settings_for(slapd)
    disable(config, uid)
    ou = f"ou=moved-{secrets.token_hex(3)},{PEOPLE}"
    add_entry(slapd, ou, ["organizationalUnit"], {"ou": ou.split(",")[0][3:]})
    connection = slapd.admin()
    assert connection.modify_dn(dn, f"uid={uid}", new_superior=ou), connection.result
    connection.unbind()

    assert revert(config, uid).status is ActionStatus.DONE
    assert slapd.can_bind(f"uid={uid},{ou}", password)


def test_an_account_deleted_while_disabled_fails_the_revert_naming_it(slapd: Slapd) -> None:
    uid, dn, _ = slapd.add_user("deleted")
    config = settings_for(slapd)
    disable(config, uid)
    connection = slapd.admin()
    assert connection.delete(dn), connection.result
    connection.unbind()
    with pytest.raises(AdapterError, match=f"no account with uid={uid}"):
        revert(config, uid)


def test_verify_does_not_pass_a_lock_the_accounts_policy_ignores(slapd: Slapd) -> None:
    """pwdAccountLockedTime is read back, but under a policy without pwdLockout slapd does not honour it: the
    account still logs in, so "the lock is set" is not "disabled"."""
    uid, dn, password = slapd.add_user("nolock", policy=NOLOCK_POLICY)
    slapd.lock_by_hand(dn)
    assert slapd.can_bind(dn, password)  # the lock is there and means nothing
    verdict = DisableUserAdapter(settings_for(slapd)).verify(request("identity.disable_user", uid), NOTHING_DONE)
    assert not verdict.ok and "pwdLockout" in verdict.detail


# -- directories that answer in part: referrals ---------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port that records whatever a client sends it (another host a referral might name)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = sock.accept()
            except OSError:
                return
            client.settimeout(1)
            try:
                received.append(client.recv(65536))
            except OSError:
                pass
            finally:
                client.close()

    threading.Thread(target=serve, daemon=True).start()
    yield sock.getsockname()[1], received
    sock.close()


MANAGE_DSA_IT = ("2.16.840.1.113730.3.4.2", True, None)
"""Lets the admin write referral objects as plain entries."""


def split_base(server: Slapd, port: int) -> tuple[str, str]:
    """An OU of its own holding a referral to `port` (another server holding part of it): (the OU, the referral)."""
    name = secrets.token_hex(3)
    base, elsewhere = f"ou=split-{name},{SUFFIX}", f"ou=elsewhere,ou=split-{name},{SUFFIX}"
    add_entry(server, base, ["organizationalUnit"], {"ou": f"split-{name}"})
    connection = server.admin()
    ref = f"ldap://127.0.0.1:{port}/{elsewhere}"
    ok = connection.add(elsewhere, ["referral", "extensibleObject"], {"ou": "elsewhere", "ref": ref}, [MANAGE_DSA_IT])
    assert ok, connection.result
    connection.unbind()
    return base, elsewhere


def test_a_referral_is_not_followed_with_the_service_password(slapd: Slapd, listener: tuple[int, list[bytes]]) -> None:
    """A users_base the directory refers elsewhere: ldap3 followed it and bound there with the service password,
    in clear (the config's "TLS off loopback" rule bypassed), and would have taken that host's answer."""
    port, received = listener
    _, elsewhere = split_base(slapd, port)
    with pytest.raises(AdapterError, match="refer"):
        disable(settings_for(slapd, users_base=elsewhere), "anyone")
    time.sleep(0.2)
    assert not any(slapd.service_password.encode() in data for data in received)
    assert received == []  # not even a connection: the other host is not asked anything


def test_an_answer_that_refers_part_of_users_base_elsewhere_is_not_taken_as_whole(
    slapd: Slapd, listener: tuple[int, list[bytes]]
) -> None:
    """The other server may hold a second account of that name: one entry shown is not "exactly one"."""
    base, _ = split_base(slapd, listener[0])
    uid, password = f"split-{secrets.token_hex(3)}", secrets.token_hex(10)
    dn = f"uid={uid},{base}"
    add_entry(slapd, dn, ["inetOrgPerson"], {"cn": uid, "sn": uid, "uid": uid, "userPassword": password})
    with pytest.raises(AdapterError, match="refer"):
        disable(settings_for(slapd, users_base=base), uid)
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [] and slapd.can_bind(dn, password)


# -- findings that needed a product decision (strict xfails until issue 17's third review) --------------------


def test_a_lock_a_person_set_after_lifting_ours_by_hand_survives_our_revert(slapd: Slapd) -> None:
    """Decided: our lock carries a mark of its own (a random fraction of slapd's permanent time) recorded in the
    holds; a person's lock (000001010000Z) is another, so the revert lets go of its hold and leaves the lock,
    saying why (a person must look)."""
    uid, dn, password = slapd.add_user("relocked")
    config = settings_for(slapd)
    disable(config, uid)
    connection = slapd.admin()
    assert connection.modify(dn, {LOCK_ATTRIBUTE: [(ldap3.MODIFY_DELETE, [])]}), connection.result  # lifted by hand
    connection.unbind()
    slapd.lock_by_hand(dn)  # and locked again by a person, for a reason of their own

    undone = revert(config, uid)

    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["left_in_place"] is True
    assert undone.evidence["changed_hands"] is True and "a person must look" in undone.detail
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [LOCKED_FOREVER] and not slapd.can_bind(dn, password)
    assert slapd.attribute(dn, "description") == []  # our hold let go: the lock is the person's alone


def test_verify_on_openldap_does_not_take_a_wrong_probe_password_for_a_locked_account(
    slapd: Slapd, tmp_path: Path
) -> None:
    """Decided: the disable binds with the probe's password before the lock and records it; a refusal after the
    lock proves the lock only when that bind worked."""
    uid, dn, _ = slapd.add_user("probe")
    secret = tmp_path / "wrong-password"
    secret.write_text("not-its-password")
    config = settings_for(slapd, probe_accounts={uid: {"password_file": str(secret)}})
    outcome = disable(config, uid)
    assert outcome.status is ActionStatus.DONE and locked_for_good(slapd.attribute(dn, LOCK_ATTRIBUTE))
    assert outcome.evidence["probe_bind_before_lock"] is False and str(secret) in outcome.evidence["probe_before_lock"]
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), outcome)
    assert not verdict.ok
    assert "not shown to work before the lock" in verdict.detail and verdict.evidence["probe_bind_works"] is False


# -- the lab's login service: whose failures count ------------------------------------------------------------


def test_the_login_services_failures_against_an_account_count_whatever_the_spelling(slapd: Slapd) -> None:
    """slapd binds `uid=ADMIN` as `uid=admin`: guessing under a new spelling each time must not reset the account's
    failures, or the success is logged with none before it and the "guessing succeeded" alert never comes."""
    uid, _, password = slapd.add_user("victim")
    directory = LoginDirectory(slapd.url, PEOPLE)
    counts = Counts()
    spellings = [uid, uid.upper(), uid.title()]
    for n, typed in enumerate(spellings):
        assert directory.check(typed, "not-the-password") is False
        counts.record("198.51.100.66", typed, False, float(n))
    assert directory.check(uid.swapcase(), password) is True  # the directory takes any case: the same account
    assert counts.record("198.51.100.66", uid.swapcase(), True, 10.0) == (0, len(spellings))
