"""Third review of identity containment, slapd's side: whose lock a revert lifts, and what a refused probe proves.

A revert lifts only a lock it can prove is ours: every disable writes a permanent lock of its own (slapd reads
0000-01-01 00:00:00 as for good whatever the fraction of a second; ours carries a random fraction, its mark) and
records that mark in the holds value. A lock lifted by hand and set again, by a person (whatever value) or by
ppolicy itself, has another mark: the revert lets go of its hold and leaves the lock, saying why. On OpenLDAP a
refused bind does not say why, so the probe password must be shown to work by a bind before the lock. AD's side
(the DC's replication stamp as the mark) is at the end of tests/test_identity.py, where Samba's DC lives.
"""

from __future__ import annotations

import datetime
import json
import struct
import time
import uuid
from pathlib import Path

import ldap3
import pytest

from autonomy_controller.actions.adapters.base import ActionStatus, TransientAdapterError
from autonomy_controller.actions.adapters.identity.adapters import DisableUserAdapter, EnableUserAdapter
from autonomy_controller.actions.adapters.identity.dialects import (
    HOLDS_PREFIX,
    LOCK_ATTRIBUTE,
    LOCKED_FOREVER,
    USER_ACCOUNT_CONTROL_ATTID,
    change_stamp,
    locks_for_good,
)
from autonomy_controller.actions.adapters.nftables.ownership import owner_comment
from tests.slapd import Slapd
from tests.test_identity import KEY, OTHER_KEY, disable, held, request, revert, settings_for, slapd, with_probe
from tests.test_review_identity2_directory import NOTHING_DONE, guess_wrong, lockout_policy

pytestmark = pytest.mark.lab

__all__ = ["slapd"]  # the session's slapd fixture, shared with tests/test_identity.py


def lift_by_hand(server: Slapd, dn: str) -> None:
    """What a person does with ldapmodify: delete the lock, leaving the holds value where it is."""
    connection = server.admin()
    try:
        assert connection.modify(dn, {LOCK_ATTRIBUTE: [(ldap3.MODIFY_DELETE, [])]}), connection.result
    finally:
        connection.unbind()


# -- our lock: permanent, and our own ---------------------------------------------------------------------------


def test_our_lock_is_for_good_under_a_policy_that_lifts_lockouts_and_each_disable_has_its_own(slapd: Slapd) -> None:
    """The mark must not cost the lock its permanence: under a policy whose pwdLockoutDuration lifts ppolicy's own
    lockouts after 2 s, our lock stays (and failed binds against it leave it as it is)."""
    policy = lockout_policy(slapd, duration=2)
    accounts = [slapd.add_user("marked", policy=policy) for _ in range(2)]
    config = settings_for(slapd)
    marks = [disable(config, uid).evidence["lock_mark"] for uid, _, _ in accounts]
    assert marks[0] != marks[1] and LOCKED_FOREVER not in marks and all(locks_for_good(mark) for mark in marks)
    uid, dn, password = accounts[0]
    guess_wrong(slapd, dn, 3)
    time.sleep(3)  # past the policy's lockout duration
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [marks[0]] and not slapd.can_bind(dn, password)
    assert revert(config, uid).status is ActionStatus.DONE and slapd.can_bind(dn, password)


@pytest.mark.parametrize(
    "value",
    [LOCKED_FOREVER, "19700101000000Z", "00000101000000.5Z", "20200101000000Z"],
    ids=["ppolicy-docs", "epoch", "year-0-fraction", "past-time"],
)
def test_a_lock_a_person_set_again_after_lifting_ours_survives_our_revert_whatever_its_value(
    slapd: Slapd, value: str
) -> None:
    """Any value a person may write for a lasting lock (the default policy never lifts a lockout): not ours."""
    uid, dn, password = slapd.add_user("relocked")
    config = settings_for(slapd)
    disable(config, uid)
    lift_by_hand(slapd, dn)
    slapd.lock_by_hand(dn, value)

    undone = revert(config, uid)

    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["changed_hands"] is True
    assert "a person must look" in undone.detail and value in undone.detail
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [value] and not slapd.can_bind(dn, password)
    assert slapd.attribute(dn, "description") == []
    verdict = EnableUserAdapter(config).verify(
        request("identity.enable_user", uid, f"{KEY}/revert", purpose="revert", undoes=KEY), undone
    )
    assert verdict.ok, verdict.detail  # left in place, as the outcome said


def test_ppolicys_own_lockout_after_ours_was_lifted_by_hand_survives_our_revert(slapd: Slapd) -> None:
    """Lifted by hand, then the guessing goes on and ppolicy locks the account for good itself: not ours."""
    policy = lockout_policy(slapd, duration=0)
    uid, dn, password = slapd.add_user("guessed", policy=policy)
    config = settings_for(slapd)
    disable(config, uid)
    lift_by_hand(slapd, dn)
    guess_wrong(slapd, dn, 2)
    lockout = slapd.attribute(dn, LOCK_ATTRIBUTE)
    assert lockout and not locks_for_good(lockout[0])  # a time, for good under this policy

    undone = revert(config, uid)

    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["changed_hands"] is True
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == lockout and not slapd.can_bind(dn, password)


def test_a_lock_a_person_scheduled_after_lifting_ours_is_kept_and_our_stale_hold_tidied(slapd: Slapd) -> None:
    """A lock dated in the future is not in force: nothing to enable, and the person's schedule stays."""
    uid, dn, _ = slapd.add_user("scheduled")
    config = settings_for(slapd)
    disable(config, uid)
    lift_by_hand(slapd, dn)
    later = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).strftime("%Y%m%d%H%M%SZ")
    slapd.lock_by_hand(dn, later)

    assert revert(config, uid).status is ActionStatus.ALREADY_DONE
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [later] and slapd.attribute(dn, "description") == []


def test_another_incident_does_not_join_a_lock_that_changed_hands_and_neither_revert_lifts_it(slapd: Slapd) -> None:
    """Joining would launder the person's lock into ours: the second disable answers "not ours" instead."""
    uid, dn, password = slapd.add_user("relocked")
    config = settings_for(slapd)
    disable(config, uid, KEY)
    lift_by_hand(slapd, dn)
    slapd.lock_by_hand(dn)

    second = disable(config, uid, OTHER_KEY)

    assert second.status is ActionStatus.ALREADY_DONE and second.evidence["mine"] is False
    assert second.evidence["stale_holds"] == [owner_comment(KEY)] and "a person must look" in second.detail
    assert held(slapd.attribute(dn, "description"))["holders"] == [owner_comment(KEY)]  # nothing written
    assert revert(config, uid, OTHER_KEY).evidence["left_in_place"] is True
    assert revert(config, uid, KEY).evidence["changed_hands"] is True
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [LOCKED_FOREVER] and not slapd.can_bind(dn, password)


def test_two_holders_of_a_lock_that_changed_hands_both_let_go_and_leave_it(slapd: Slapd) -> None:
    uid, dn, password = slapd.add_user("relocked")
    config = settings_for(slapd)
    disable(config, uid, KEY)
    disable(config, uid, OTHER_KEY)
    lift_by_hand(slapd, dn)
    slapd.lock_by_hand(dn)

    first = revert(config, uid, KEY)
    assert first.evidence["changed_hands"] is True
    assert held(slapd.attribute(dn, "description"))["holders"] == [owner_comment(OTHER_KEY)]
    assert revert(config, uid, OTHER_KEY).evidence["changed_hands"] is True
    assert slapd.attribute(dn, "description") == []
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [LOCKED_FOREVER] and not slapd.can_bind(dn, password)


def test_a_hold_that_names_no_mark_proves_nothing_and_the_revert_leaves_the_lock(slapd: Slapd) -> None:
    """A holds value without a mark (as written before marks, or by hand) cannot tell whose the lock is."""
    uid, dn, password = slapd.add_user("unmarked")
    slapd.lock_by_hand(dn)
    connection = slapd.admin()
    unmarked = HOLDS_PREFIX + json.dumps([owner_comment(KEY)])
    assert connection.modify(dn, {"description": [(ldap3.MODIFY_ADD, [unmarked])]}), connection.result
    connection.unbind()

    undone = revert(settings_for(slapd), uid)

    assert undone.evidence["changed_hands"] is True and "name no mark" in undone.detail
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [LOCKED_FOREVER] and not slapd.can_bind(dn, password)


def test_a_plans_own_enable_still_lifts_a_lock_that_changed_hands(slapd: Slapd) -> None:
    """An explicit enable is a decision to lift whatever lock is there: the marks do not stop it."""
    uid, dn, password = slapd.add_user("relocked")
    config = settings_for(slapd)
    disable(config, uid)
    lift_by_hand(slapd, dn)
    slapd.lock_by_hand(dn)
    outcome = EnableUserAdapter(config).execute(request("identity.enable_user", uid, "restore:alice/run-2/a1"))
    assert outcome.status is ActionStatus.DONE and slapd.can_bind(dn, password)
    assert slapd.attribute(dn, "description") == []


# -- the probe: its password shown to work before the lock -------------------------------------------------


def test_the_probe_password_is_proven_before_the_lock_and_verify_passes(slapd: Slapd, tmp_path: Path) -> None:
    uid, _, password = slapd.add_user("probe")
    config = with_probe(slapd, tmp_path, uid, password)
    outcome = disable(config, uid)
    assert outcome.evidence["probe_bind_before_lock"] is True
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), outcome)
    assert verdict.ok and verdict.evidence["probe_bind_works"] is False, verdict.detail


def test_verify_without_a_bind_before_the_lock_on_record_fails(slapd: Slapd, tmp_path: Path) -> None:
    """Right password, locked account, but no outcome saying the password worked before: the refusal proves
    nothing on slapd, so verify fails (and says why) rather than pass on a guess."""
    uid, _, password = slapd.add_user("probe")
    config = with_probe(slapd, tmp_path, uid, password)
    disable(config, uid)
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), NOTHING_DONE)
    assert not verdict.ok and "not shown to work before the lock" in verdict.detail


def test_an_account_a_person_locked_before_us_cannot_prove_its_probe(slapd: Slapd, tmp_path: Path) -> None:
    """Already locked: the probe's password cannot be tried before the lock, so its refusal proves nothing."""
    uid, dn, password = slapd.add_user("probe")
    slapd.lock_by_hand(dn)
    config = with_probe(slapd, tmp_path, uid, password)
    outcome = disable(config, uid)
    assert outcome.evidence["mine"] is False and outcome.evidence["probe_bind_before_lock"] is False
    assert "already disabled" in outcome.evidence["probe_before_lock"]
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), outcome)
    assert not verdict.ok and "already disabled" in verdict.detail


def test_an_account_without_a_probe_records_none_and_verify_reads_the_lock_back(slapd: Slapd) -> None:
    uid, _, _ = slapd.add_user("plain")
    config = settings_for(slapd)
    outcome = disable(config, uid)
    assert outcome.evidence["probe_bind_before_lock"] is None
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), outcome)
    assert verdict.ok and verdict.evidence["probe_bind_works"] is None


# -- the parts read without a server --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "for_good"),
    [
        (LOCKED_FOREVER, True),
        ("00000101000000Z", True),
        ("00000101000000.123456Z", True),
        ("19700101000000Z", True),
        ("00000101000001Z", False),  # a second past year 0: a time, which ppolicy's duration lifts
        ("20260101000000Z", False),
        ("000001010000", False),
    ],
)
def test_which_lock_values_slapd_keeps_for_good(value: str, for_good: bool) -> None:
    assert locks_for_good(value) is for_good


def metadata(*entries: tuple[int, int, uuid.UUID, int]) -> bytes:
    """A replPropertyMetaData value: (attid, version, originating invocation id, originating USN) per attribute."""
    blob = struct.pack("<IIII", 1, 0, len(entries), 0)
    for attid, version, invocation, usn in entries:
        blob += struct.pack("<IIQ16sQQ", attid, version, 13441054032, invocation.bytes_le, usn, usn + 7)
    return blob


def test_the_dcs_stamp_of_the_last_write_to_user_account_control_is_read_from_its_metadata() -> None:
    invocation = uuid.uuid4()
    blob = metadata((0x0000000D, 4, uuid.uuid4(), 4100), (USER_ACCOUNT_CONTROL_ATTID, 6, invocation, 4002))
    assert change_stamp(blob, USER_ACCOUNT_CONTROL_ATTID) == f"4002@{invocation}"
    assert change_stamp(blob, 0x00090009) is None  # not there
    assert change_stamp(blob[:-1], USER_ACCOUNT_CONTROL_ATTID) is None  # cut short
    assert change_stamp(b"\x02" + blob[1:], USER_ACCOUNT_CONTROL_ATTID) is None  # a version we do not know
    assert change_stamp(None, USER_ACCOUNT_CONTROL_ATTID) is None


def plant_pending_hold(server: Slapd, dn: str) -> None:
    """What a disable that stopped between its write and recording the lock's mark (AD) leaves behind."""
    connection = server.admin()
    pending = HOLDS_PREFIX + json.dumps({"holders": [owner_comment(KEY)], "lock": "pending"})
    assert connection.modify(dn, {"description": [(ldap3.MODIFY_ADD, [pending])]}), connection.result
    connection.unbind()


def test_a_lock_whose_mark_was_never_recorded_is_not_joined_nor_lifted(slapd: Slapd) -> None:
    """Another disable waits for the mark a moment, then fails naming why (the activity tries again later); the
    revert cannot prove the lock is its own, so it leaves it to a person."""
    uid, dn, password = slapd.add_user("pending")
    slapd.lock_by_hand(dn)
    plant_pending_hold(slapd, dn)
    config = settings_for(slapd)

    with pytest.raises(TransientAdapterError, match="had not yet recorded the mark"):
        disable(config, uid, OTHER_KEY)
    assert held(slapd.attribute(dn, "description"))["holders"] == [owner_comment(KEY)]

    undone = revert(config, uid)
    assert undone.evidence["changed_hands"] is True and "did not record its mark" in undone.detail
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == [LOCKED_FOREVER] and not slapd.can_bind(dn, password)
