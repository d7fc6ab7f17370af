"""The identity adapters against real directories: OpenLDAP's slapd (tests/slapd.py) and Samba's Active
Directory DC (tests/samba.py), one per test session each. Disable, verify, retry, revert, owners, refusals.

Tests that hold for both dialects take `d` (parametrized: openldap, ad); the others are one dialect's own.
"Disabled" is checked twice: by reading the entry back as the directory's admin, and by a real bind with the
account's own password, made here independently of the adapter. Needs root (slapd and samba are installed on
first use, `controller/lab/directory_packages.py`) or them already installed, and root for Samba's network
namespace; otherwise the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from ldap3 import MODIFY_DELETE
from pydantic import ValidationError
from temporalio.testing import TimeSkipper

from autonomy_controller.actions.adapters import build_adapters
from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    ActionStatus,
    Adapter,
    AdapterError,
    Purpose,
    TransientAdapterError,
)
from autonomy_controller.actions.adapters.identity.adapters import (
    DisableUserAdapter,
    EnableUserAdapter,
    identity_adapters,
)
from autonomy_controller.actions.adapters.identity.config import IdentityDirectory, Secret, SecretError
from autonomy_controller.actions.adapters.identity.dialects import (
    HOLDS_PREFIX,
    LOCK_ATTRIBUTE,
    LOCKED_FOREVER,
    ActiveDirectory,
    locks_for_good,
)
from autonomy_controller.actions.adapters.identity.directory import DirectoryConflict, Entry
from autonomy_controller.actions.adapters.identity.lockout import Lockout
from autonomy_controller.actions.adapters.nftables.adapters import MisconfiguredAdapter
from autonomy_controller.actions.adapters.nftables.config import load_enforcement
from autonomy_controller.actions.adapters.nftables.ownership import Undo, owner_comment
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.lab.directory_packages import DirectoryPackagesMissing, ensure_samba, ensure_slapd
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Category, Level
from autonomy_controller.workflows.client import incident_handle
from autonomy_controller.workflows.contracts import ActionStatus as WorkflowStatus
from tests import samba as ad
from tests.doubles import FakeEnforcement
from tests.factories import guessed_login
from tests.harness import action_of, burst, running_loop
from tests.samba import Samba
from tests.slapd import ADMINS, DBAS, DEFAULT_POLICY, NOLOCK_POLICY, PEOPLE, SERVICE_DN, Slapd, make_ca
from tests.test_workflow import bounded_playbooks

pytestmark = pytest.mark.lab

KEY = "bruteforce:alice/run-1/a1"
OTHER_KEY = "credstuff:alice/run-9/a3"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    try:
        ensure_slapd(install=os.geteuid() == 0)
    except DirectoryPackagesMissing as exc:
        pytest.skip(f"the identity tests need a real slapd: {exc}")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def samba(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Samba]:
    if os.geteuid() != 0:
        pytest.skip("the Active Directory tests need root: Samba's DC runs in a network namespace of its own")
    try:
        ensure_samba()
    except DirectoryPackagesMissing as exc:
        pytest.skip(f"the Active Directory tests need Samba's AD DC: {exc}")
    server = Samba(tmp_path_factory.mktemp("samba"))
    try:
        server.start()
        print(f"\nSamba AD DC provisioned and started in {server.provision_seconds:.1f}s")
        yield server
    finally:
        server.close()


@dataclass
class Under:
    """A directory under test, either dialect: the same questions asked of each in its own terms."""

    dialect: str
    server: Slapd | Samba

    @property
    def slapd(self) -> Slapd:
        assert isinstance(self.server, Slapd)
        return self.server

    @property
    def samba(self) -> Samba:
        assert isinstance(self.server, Samba)
        return self.server

    def settings(self, **overrides: Any) -> IdentityDirectory:
        if isinstance(self.server, Slapd):
            return settings_for(self.server, **overrides)
        fields: dict[str, Any] = {
            "dialect": "active-directory",
            "url": self.server.tls_url,
            "ca_file": self.server.ca_file,
            "bind_dn": ad.SERVICE_DN,
            "password_file": self.server.service_password_file,
            "users_base": ad.USERS,
            "protected_groups": [ad.TIER0],
            "timeout_seconds": 5.0,
        }
        return IdentityDirectory.model_validate({**fields, **overrides})

    def with_probe(self, tmp_path: Path, uid: str, password: str) -> IdentityDirectory:
        secret = tmp_path / f"{uid}-password"
        secret.write_text(password)
        return self.settings(probe_accounts={uid: {"password_file": str(secret)}})

    def add_user(self, prefix: str = "u") -> tuple[str, str, str]:
        return self.server.add_user(prefix)

    def locked(self, dn: str) -> bool:
        if isinstance(self.server, Slapd):
            return locked_for_good(self.server.attribute(dn, LOCK_ATTRIBUTE))
        return self.server.disabled(dn)

    def holds(self, dn: str) -> list[str]:
        return self.server.attribute(dn, "description")

    def held(self, dn: str) -> dict[str, Any]:
        return held(self.holds(dn))

    def lock_by_hand(self, dn: str) -> None:
        if isinstance(self.server, Slapd):
            self.server.lock_by_hand(dn)
        else:
            self.server.disable_by_hand(dn)

    def lift_by_hand(self, dn: str) -> None:
        """What a person does by hand (ldapmodify, ADUC), not through `identity.enable_user`: the holds stay."""
        if isinstance(self.server, Slapd):
            connection = self.server.admin()
            assert connection.modify(dn, {LOCK_ATTRIBUTE: [(MODIFY_DELETE, [])]}), connection.result
            connection.unbind()
        else:
            self.server.set_control(dn, ad.NORMAL_ACCOUNT)

    def can_bind(self, dn: str, password: str) -> bool:
        return self.server.can_bind(dn, password)

    @property
    def protected(self) -> tuple[str, str, str]:
        """(a protected group, a group nested in it, the configured users_base's parent for a missing group)"""
        if isinstance(self.server, Slapd):
            return ADMINS, DBAS, PEOPLE
        return ad.TIER0, ad.TIER0_NESTED, ad.USERS


@pytest.fixture(params=["openldap", "ad"])
def d(request: pytest.FixtureRequest) -> Under:
    if request.param == "openldap":
        return Under("openldap-ppolicy", request.getfixturevalue("slapd"))
    return Under("active-directory", request.getfixturevalue("samba"))


@pytest.fixture
def user(d: Under) -> tuple[str, str, str]:
    return d.add_user()


def locked_for_good(values: list[str]) -> bool:
    """A pwdAccountLockedTime slapd keeps for good (a person's 000001010000Z, or a disable's own mark)."""
    return len(values) == 1 and locks_for_good(values[0])


def held(values: list[str]) -> dict[str, Any]:
    """Our one holds value among an attribute's values, parsed."""
    (value,) = [value for value in values if value.startswith(HOLDS_PREFIX)]
    parsed: dict[str, Any] = json.loads(value[len(HOLDS_PREFIX) :])
    return parsed


def settings_for(slapd: Slapd, **overrides: Any) -> IdentityDirectory:
    fields: dict[str, Any] = {
        "url": slapd.url,
        "bind_dn": SERVICE_DN,
        "password_file": slapd.service_password_file,
        "users_base": PEOPLE,
        "default_policy": DEFAULT_POLICY,
        "protected_groups": [ADMINS],
        "timeout_seconds": 2.0,
    }
    return IdentityDirectory.model_validate({**fields, **overrides})


def with_probe(slapd: Slapd, tmp_path: Path, uid: str, password: str) -> IdentityDirectory:
    secret = tmp_path / f"{uid}-password"
    secret.write_text(password)
    return settings_for(slapd, probe_accounts={uid: {"password_file": str(secret)}})


def request(
    action: str, uid: str, key: str = KEY, purpose: Purpose = "execute", undoes: str | None = None
) -> ActionRequest:
    return ActionRequest(
        incident_key=key.split("/")[0],
        action_id=key.rsplit("/", 1)[-1],
        action=action,
        params={"user": uid},
        idempotency_key=key,
        purpose=purpose,
        undoes=undoes,
    )


def disable(config: IdentityDirectory, uid: str, key: str = KEY) -> ActionOutcome:
    return DisableUserAdapter(config).execute(request("identity.disable_user", uid, key))


def revert(config: IdentityDirectory, uid: str, undoes: str = KEY) -> ActionOutcome:
    undo = request("identity.enable_user", uid, f"{undoes}/revert", purpose="revert", undoes=undoes)
    return EnableUserAdapter(config).execute(undo)


# -- disable, verify, retry, revert (both dialects) ---------------------------------------------------------


def test_disable_locks_the_account_and_verify_reads_it_back_and_tries_its_password(
    d: Under, tmp_path: Path, user: tuple[str, str, str]
) -> None:
    uid, dn, password = user
    config = d.with_probe(tmp_path, uid, password)
    assert d.can_bind(dn, password)

    outcome = disable(config, uid)

    assert outcome.status is ActionStatus.DONE
    assert outcome.evidence["mine"] is True and outcome.evidence["holders"] == [owner_comment(KEY)]
    assert outcome.evidence["dialect"] == d.dialect
    assert d.locked(dn)
    mark = outcome.evidence["lock_mark"]
    assert mark and d.held(dn) == {"holders": [owner_comment(KEY)], "lock": mark}
    if d.dialect == "openldap-ppolicy":  # the lock is its own mark, told from a person's
        assert d.slapd.attribute(dn, LOCK_ATTRIBUTE) == [mark] and mark != LOCKED_FOREVER
    assert not d.can_bind(dn, password)
    assert outcome.evidence["probe_bind_before_lock"] is True  # the probe's password, proven before the lock
    verdict = DisableUserAdapter(config).verify(request("identity.disable_user", uid), outcome)
    assert verdict.ok, verdict.detail
    assert verdict.evidence["probe_bind_works"] is False


def test_the_outcome_says_sessions_are_not_ended_and_recommends_the_follow_up(
    d: Under, user: tuple[str, str, str]
) -> None:
    outcome = disable(d.settings(), user[0])
    assert outcome.evidence["sessions_ended"] is False
    recommendations = " ".join(outcome.evidence["recommendations"])
    assert "password" in recommendations and "tokens" in recommendations
    assert "not ended" in outcome.detail


def test_verify_fails_when_the_account_is_not_disabled(d: Under, tmp_path: Path, user: tuple[str, str, str]) -> None:
    uid, _, password = user
    config = d.with_probe(tmp_path, uid, password)
    verdict = DisableUserAdapter(config).verify(
        request("identity.disable_user", uid), ActionOutcome(status=ActionStatus.DONE, detail="")
    )
    assert not verdict.ok
    assert verdict.evidence["probe_bind_works"] is True


def test_a_retry_with_the_same_key_applies_nothing_again(d: Under, user: tuple[str, str, str]) -> None:
    uid, dn, _ = user
    config = d.settings()
    assert disable(config, uid).status is ActionStatus.DONE
    first = d.held(dn)
    again = disable(config, uid)
    assert again.status is ActionStatus.ALREADY_DONE and again.evidence["mine"] is True
    assert d.held(dn) == first and first["holders"] == [owner_comment(KEY)]


def test_the_ttl_revert_enables_the_account_again(d: Under, tmp_path: Path, user: tuple[str, str, str]) -> None:
    uid, dn, password = user
    config = d.with_probe(tmp_path, uid, password)
    disable(config, uid)

    outcome = revert(config, uid)

    assert outcome.status is ActionStatus.DONE
    assert not d.locked(dn) and d.holds(dn) == []
    assert d.can_bind(dn, password)
    undo = request("identity.enable_user", uid, f"{KEY}/revert", purpose="revert", undoes=KEY)
    verdict = EnableUserAdapter(config).verify(undo, outcome)
    assert verdict.ok and verdict.evidence["probe_bind_works"] is True
    assert revert(config, uid).status is ActionStatus.ALREADY_DONE  # a retried revert changes nothing


# -- ownership (both dialects) --------------------------------------------------------------------------------


def test_an_account_a_person_disabled_stays_disabled_after_our_revert(d: Under, user: tuple[str, str, str]) -> None:
    uid, dn, password = user
    config = d.settings()
    d.lock_by_hand(dn)

    outcome = disable(config, uid)
    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["mine"] is False
    assert "outside the controller" in outcome.detail

    undone = revert(config, uid)
    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["left_in_place"] is True
    assert "outside the controller" in undone.detail
    assert d.locked(dn) and not d.can_bind(dn, password)
    undo = request("identity.enable_user", uid, f"{KEY}/revert", purpose="revert", undoes=KEY)
    assert EnableUserAdapter(config).verify(undo, undone).ok


def test_two_incidents_hold_an_account_until_the_last_lets_go(d: Under, user: tuple[str, str, str]) -> None:
    uid, dn, password = user
    config = d.settings()
    disable(config, uid, KEY)
    joined = disable(config, uid, OTHER_KEY)
    assert joined.status is ActionStatus.ALREADY_DONE and joined.evidence["mine"] is True
    assert set(joined.evidence["holders"]) == {owner_comment(KEY), owner_comment(OTHER_KEY)}

    first = revert(config, uid, KEY)
    assert first.status is ActionStatus.ALREADY_DONE and first.evidence["left_in_place"] is True
    assert owner_comment(OTHER_KEY) in first.detail
    assert not d.can_bind(dn, password)

    last = revert(config, uid, OTHER_KEY)
    assert last.status is ActionStatus.DONE and d.can_bind(dn, password)


def test_a_lock_a_person_set_again_after_lifting_ours_by_hand_survives_our_revert(
    d: Under, user: tuple[str, str, str]
) -> None:
    """Our holds stay on the entry when a person lifts our lock by hand; their own lock set later has another mark
    (slapd: another value than ours; AD: another write to userAccountControl), so the revert leaves it."""
    uid, dn, password = user
    config = d.settings()
    disable(config, uid)
    d.lift_by_hand(dn)
    d.lock_by_hand(dn)

    undone = revert(config, uid)

    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["changed_hands"] is True
    assert "a person must look" in undone.detail
    assert d.locked(dn) and not d.can_bind(dn, password) and d.holds(dn) == []


def test_a_plans_own_enable_lifts_a_lock_whoever_holds_it_and_names_them(d: Under, user: tuple[str, str, str]) -> None:
    uid, dn, password = user
    config = d.settings()
    d.lock_by_hand(dn)
    outcome = EnableUserAdapter(config).execute(request("identity.enable_user", uid, "restore:alice/run-2/a1"))
    assert outcome.status is ActionStatus.DONE and "overriding" in outcome.detail
    assert d.can_bind(dn, password) and not d.locked(dn)


def test_a_decision_on_a_stale_read_is_refused_by_the_directory(d: Under, user: tuple[str, str, str]) -> None:
    """The compare-and-swap: an undo decided on holds that another worker changed since must not land."""
    uid, dn, _ = user
    config = d.settings()
    disable(config, uid, KEY)
    lockout = Lockout(config)
    with lockout.directory.session() as session:
        stale = lockout._read(session, uid)
        disable(config, uid, OTHER_KEY)  # another incident joins after our read
        with pytest.raises(DirectoryConflict):
            lockout._enable(session, stale, Undo("revert", KEY))
    assert d.locked(dn)


# -- refusals: protected accounts (both dialects), unenforced policy -----------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["member", "nested-member"])
def test_a_member_of_a_protected_group_is_refused_by_the_adapter_itself(d: Under, nested: bool) -> None:
    protected, inner, _ = d.protected
    uid, dn, password = d.add_user("ops")
    d.server.add_member(inner if nested else protected, dn)
    config = d.settings()
    with pytest.raises(AdapterError, match=f"protected group {protected}"):
        disable(config, uid)
    assert not d.locked(dn) and d.can_bind(dn, password)
    d.lock_by_hand(dn)
    with pytest.raises(AdapterError, match="protected group"):
        EnableUserAdapter(config).execute(request("identity.enable_user", uid))
    assert d.locked(dn)


def test_a_protected_group_that_does_not_exist_refuses_everyone(d: Under, user: tuple[str, str, str]) -> None:
    config = d.settings(protected_groups=[f"cn=domain admins,ou=groups,{d.protected[2]}"])
    with pytest.raises(AdapterError, match="does not exist"):
        disable(config, user[0])
    assert not d.locked(user[1])


def test_an_account_under_a_policy_that_ignores_locks_is_refused(slapd: Slapd) -> None:
    uid, dn, _ = slapd.add_user(policy=NOLOCK_POLICY)
    with pytest.raises(AdapterError, match="pwdLockout"):
        disable(settings_for(slapd), uid)
    assert slapd.attribute(dn, LOCK_ATTRIBUTE) == []
    slapd.lock_by_hand(dn)  # lifting a lock needs no policy: an enable still works
    enabled = EnableUserAdapter(settings_for(slapd)).execute(request("identity.enable_user", uid))
    assert enabled.status is ActionStatus.DONE and slapd.attribute(dn, LOCK_ATTRIBUTE) == []


def test_an_unknown_account_is_an_error_naming_it(d: Under) -> None:
    config = d.settings()
    with pytest.raises(AdapterError, match=f"no account with {config.user_attribute}=nobody-here"):
        disable(config, "nobody-here")


# -- fail closed: directory down, wrong secret, TLS ----------------------------------------------------------


def test_a_directory_that_refuses_connections_fails_closed_naming_it(slapd: Slapd) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"ldap://127.0.0.1:{sock.getsockname()[1]}"
    config = settings_for(slapd, url=url)
    with pytest.raises(TransientAdapterError, match=url.replace(".", r"\.")):
        disable(config, "anyone")
    verdict = DisableUserAdapter(config).verify(
        request("identity.disable_user", "anyone"), ActionOutcome(status=ActionStatus.DONE, detail="")
    )
    assert not verdict.ok and url in verdict.detail


def test_a_directory_that_never_answers_fails_closed_within_the_timeout(slapd: Slapd) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts the TCP connection (the kernel does), never answers the bind
    url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
    try:
        with pytest.raises(TransientAdapterError, match="unreachable or did not answer"):
            disable(settings_for(slapd, url=url, timeout_seconds=0.5), "anyone")
    finally:
        silent.close()


def test_a_stopped_directory_fails_closed_and_nothing_is_applied(tmp_path: Path, slapd: Slapd) -> None:
    """The real thing going down: a second slapd, stopped before the action and started again to look."""
    other = Slapd(tmp_path / "other")
    other.start()
    try:
        uid, dn, password = other.add_user()
        config = settings_for(other)
        other.stop()
        with pytest.raises(TransientAdapterError, match="unreachable"):
            disable(config, uid)
        other.launch()
        assert other.attribute(dn, LOCK_ATTRIBUTE) == [] and other.can_bind(dn, password)
    finally:
        other.stop()


def test_a_wrong_service_password_is_permanent_and_never_shows_the_password(d: Under, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-4711\n")
    with pytest.raises(AdapterError) as raised:
        disable(d.settings(password_file=wrong), "anyone")
    assert not isinstance(raised.value, TransientAdapterError)
    assert str(wrong) in str(raised.value) and "4711" not in str(raised.value)


def test_the_secret_may_come_from_an_environment_variable(
    d: Under, user: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTONOMY_TEST_LDAP_SECRET", d.server.service_password)
    config = d.settings(password_file=None, password_env="AUTONOMY_TEST_LDAP_SECRET")
    assert disable(config, user[0]).status is ActionStatus.DONE
    monkeypatch.delenv("AUTONOMY_TEST_LDAP_SECRET")
    with pytest.raises(SecretError, match="AUTONOMY_TEST_LDAP_SECRET is unset"):
        disable(config, user[0])


def test_tls_with_the_directory_ca_works(slapd: Slapd) -> None:
    config = settings_for(slapd, url=slapd.tls_url, ca_file=slapd.ca_file)
    assert disable(config, slapd.add_user()[0]).status is ActionStatus.DONE


def test_tls_with_a_certificate_the_ca_file_does_not_vouch_for_fails_closed(
    d: Under, user: tuple[str, str, str], tmp_path: Path
) -> None:
    other_ca, _, _ = make_ca(tmp_path, "other-ca")
    url = d.slapd.tls_url if d.dialect == "openldap-ppolicy" else d.samba.tls_url
    config = d.settings(url=url, ca_file=other_ca)
    with pytest.raises(AdapterError) as raised:
        disable(config, user[0])
    assert not isinstance(raised.value, TransientAdapterError)  # a retry would not make the certificate valid
    assert not d.locked(user[1])


# -- configuration and wiring ---------------------------------------------------------------------------------


def test_plain_ldap_to_another_host_is_refused_by_the_config() -> None:
    fields = {"bind_dn": SERVICE_DN, "password_env": "X", "users_base": PEOPLE}
    with pytest.raises(ValidationError, match="in clear"):
        IdentityDirectory.model_validate({**fields, "url": "ldap://ldap.example.org"})
    assert IdentityDirectory.model_validate({**fields, "url": "ldap://ldap.example.org", "start_tls": True}).tls


def test_a_secret_is_named_once() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Secret.model_validate({"password_file": "/x", "password_env": "X"})
    with pytest.raises(ValidationError, match="exactly one"):
        Secret.model_validate({})


def test_the_enforcement_file_wires_both_identity_actions(
    slapd: Slapd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "enforcement.yaml"
    path.write_text(
        f"identity:\n  url: {slapd.url}\n  bind_dn: {SERVICE_DN}\n  password_file: {slapd.service_password_file}\n"
        f"  users_base: {PEOPLE}\n  default_policy: {DEFAULT_POLICY}\n"
    )
    monkeypatch.delenv("AUTONOMY_ENFORCEMENT_FILE", raising=False)
    with Ledger.from_url(f"sqlite:///{tmp_path}/ledger.db") as ledger:
        adapters = build_adapters(Settings(state_dir=tmp_path), ledger)
    assert isinstance(adapters["identity.disable_user"], DisableUserAdapter)
    assert isinstance(adapters["identity.enable_user"], EnableUserAdapter)
    path.write_text("identity:\n  url: ldap://127.0.0.1\n")
    assert all(isinstance(a, MisconfiguredAdapter) for a in identity_adapters(path))
    assert identity_adapters(tmp_path / "absent.yaml") == []


def test_concurrent_disables_by_two_incidents_both_end_up_holding(d: Under, user: tuple[str, str, str]) -> None:
    uid, dn, _ = user
    config = d.settings()
    outcomes: list[ActionOutcome] = []
    threads = [threading.Thread(target=lambda k=k: outcomes.append(disable(config, uid, k))) for k in (KEY, OTHER_KEY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.status for o in outcomes) == [ActionStatus.ALREADY_DONE, ActionStatus.DONE]
    held = Lockout(config)._read_only(uid).holders
    assert set(held) == {owner_comment(KEY), owner_comment(OTHER_KEY)}
    assert d.locked(dn)


# -- the loop: a real Temporal workflow running the real adapters ---------------------------------------------


@dataclass
class DirectoryEnforcement(FakeEnforcement):
    """The workflow tests' enforcement point, with identity.* on the real directory instead of the double."""

    directory: IdentityDirectory | None = None

    def adapters(self) -> dict[str, Adapter]:
        assert self.directory is not None
        real = {
            "identity.disable_user": DisableUserAdapter(self.directory),
            "identity.enable_user": EnableUserAdapter(self.directory),
        }
        return {**super().adapters(), **real}


async def test_the_loop_disables_a_guessed_account_and_the_ttl_revert_enables_it(
    slapd: Slapd, tmp_path: Path, config_copy: Settings
) -> None:
    """Brute force on a known, non-privileged account (the shipped playbook, bounded to an hour) at L4: the
    veto window passes, the real account is locked and verified, and the TTL revert unlocks it."""
    uid, dn, password = slapd.add_user(uid="grace")  # a known, non-privileged user (policies/identities/data.yaml)
    enforcement = DirectoryEnforcement(directory=with_probe(slapd, tmp_path, uid, password))
    async with running_loop(bounded_playbooks(tmp_path, config_copy), enforcement) as loop:
        # the tool's burst, and the login service's record of grace's password guessed (the sensor fact the
        # account needs before silence may lock it: policies/guardrails/entities.rego)
        alerts = [*burst("198.51.100.30", Category.BRUTE_FORCE, user=uid), guessed_login(uid, "198.51.100.30")]
        (key,) = await loop.submit(alerts, level=Level.L4)
        handle = incident_handle(loop.client, key)
        await loop.wait_for(
            key,
            lambda s: (
                bool(s.actions) and action_of(s, "identity.disable_user").status is WorkflowStatus.AWAITING_APPROVAL
            ),
        )
        await TimeSkipper(loop.client).fast_forward(handle, timedelta(minutes=31))
        await loop.wait_for(
            key, lambda s: action_of(s, "identity.disable_user").status is WorkflowStatus.AWAITING_REVERT
        )
        assert not slapd.can_bind(dn, password) and locked_for_good(slapd.attribute(dn, LOCK_ATTRIBUTE))
        await TimeSkipper(loop.client).fast_forward(handle, timedelta(hours=1, seconds=5))
        final = await loop.result(key)
    assert action_of(final, "identity.disable_user").status is WorkflowStatus.REVERTED
    assert slapd.can_bind(dn, password) and slapd.attribute(dn, LOCK_ATTRIBUTE) == []
    executions = [r.payload for r in loop.ledger.records(key, [RecordKind.EXECUTION])]
    assert any("not ended" in str(payload) for payload in executions)


def test_the_example_enforcement_file_is_valid() -> None:
    loaded = load_enforcement(REPO_ROOT / "examples" / "enforcement" / "identity.yaml")
    assert loaded is not None and loaded.identity is not None and loaded.identity.tls
    assert loaded.nftables is None


def test_a_users_base_that_does_not_exist_is_named(d: Under, user: tuple[str, str, str]) -> None:
    missing = f"ou=nobody,{d.protected[2].split(',', 1)[1]}"
    with pytest.raises(AdapterError, match=f"users_base {missing}"):
        disable(d.settings(users_base=missing), user[0])


# -- Active Directory's own: the domain's privileged groups, the stopped DC, the dialect's defaults ----------


@pytest.fixture
def dc(samba: Samba) -> Under:
    return Under("active-directory", samba)


@pytest.mark.parametrize("group", [ad.DOMAIN_ADMINS, "CN=Administrators,CN=Builtin," + ad.BASE])
def test_a_member_of_the_domains_privileged_groups_is_refused_without_any_configuration(dc: Under, group: str) -> None:
    """Domain Admins and Administrators are found by SID and protected even with no protected_groups at all (a
    Domain Admins member is reported as Administrators', into which Domain Admins is nested)."""
    uid, dn, password = dc.add_user("admin")
    dc.samba.add_member(group, dn)
    with pytest.raises(AdapterError, match=r"protected group CN=(Domain Admins|Administrators),"):
        disable(dc.settings(protected_groups=[]), uid)
    assert not dc.locked(dn) and dc.can_bind(dn, password)


def test_an_account_whose_primary_group_is_domain_admins_is_refused(dc: Under) -> None:
    """A primary group is not in the group's member attribute (nor in the chain rule's answer): asked apart."""
    uid, dn, password = dc.add_user("primary")
    dc.samba.add_member(ad.DOMAIN_ADMINS, dn)
    dc.samba.set_primary_group(dn, 512)
    assert dn not in dc.samba.attribute(ad.DOMAIN_ADMINS, "member")  # AD keeps the primary group out of `member`
    with pytest.raises(AdapterError, match=r"protected group CN=(Domain Admins|Administrators),"):
        disable(dc.settings(protected_groups=[]), uid)  # Domain Admins is nested in Administrators: either names it
    assert not dc.locked(dn) and dc.can_bind(dn, password)


def test_the_disable_keeps_every_other_userAccountControl_bit(dc: Under) -> None:
    uid, dn, _ = dc.add_user()
    dc.samba.set_control(dn, ad.NORMAL_ACCOUNT | 0x10000)  # DONT_EXPIRE_PASSWORD
    disable(dc.settings(), uid)
    assert dc.samba.attribute(dn, "userAccountControl") == [str(ad.NORMAL_ACCOUNT | 0x10000 | ad.ACCOUNTDISABLE)]
    revert(dc.settings(), uid)
    assert dc.samba.attribute(dn, "userAccountControl") == [str(ad.NORMAL_ACCOUNT | 0x10000)]


def test_a_stopped_domain_controller_fails_closed_and_nothing_is_applied(dc: Under) -> None:
    uid, dn, password = dc.add_user()
    config = dc.settings()
    dc.samba.stop()
    try:
        with pytest.raises(TransientAdapterError, match="unreachable"):
            disable(config, uid)
        verdict = DisableUserAdapter(config).verify(
            request("identity.disable_user", uid), ActionOutcome(status=ActionStatus.DONE, detail="")
        )
        assert not verdict.ok and dc.samba.tls_url in verdict.detail
    finally:
        dc.samba.launch()
    assert not dc.locked(dn) and dc.can_bind(dn, password)


def test_verify_on_ad_does_not_take_a_wrong_probe_password_for_a_disabled_account(dc: Under, tmp_path: Path) -> None:
    """AD says why a bind failed: "data 533" (disabled) proves the lock, "data 52e" (wrong password) does not."""
    uid, _, password = dc.add_user()
    right = dc.with_probe(tmp_path, uid, password)
    outcome = disable(right, uid)
    assert DisableUserAdapter(right).verify(request("identity.disable_user", uid), outcome).ok
    wrong = dc.with_probe(tmp_path, uid, password + "-not")
    verdict = DisableUserAdapter(wrong).verify(request("identity.disable_user", uid), outcome)
    assert not verdict.ok and "not as a disabled account" in verdict.detail


def test_a_directory_that_does_not_name_its_domain_protects_by_refusing_everyone(slapd: Slapd) -> None:
    """The AD dialect pointed at a directory without a domain SID (here slapd) cannot find Domain Admins."""
    config = settings_for(slapd)
    _, dn, _ = slapd.add_user()
    with Lockout(config).directory.session() as session, pytest.raises(AdapterError, match="refusing to touch"):
        ActiveDirectory(config).protecting_group(session, Entry(dn, {}))


def test_an_ad_account_with_a_description_of_its_own_is_not_disabled_and_the_error_says_why(dc: Under) -> None:
    """AD keeps description single-valued on accounts: our holds value cannot sit beside a person's text."""
    uid, dn, password = dc.add_user()
    dc.samba._replace(dn, "description", "Sales, 3rd floor")
    with pytest.raises(AdapterError, match="holds_attribute") as raised:
        disable(dc.settings(), uid)
    assert not isinstance(raised.value, TransientAdapterError)
    assert not dc.locked(dn) and dc.can_bind(dn, password)
    assert dc.holds(dn) == ["Sales, 3rd floor"]
    assert disable(dc.settings(holds_attribute="carLicense"), uid).status is ActionStatus.DONE
    assert dc.locked(dn) and dc.holds(dn) == ["Sales, 3rd floor"]


def test_start_tls_to_the_domain_controller_works_too(dc: Under) -> None:
    uid, dn, password = dc.add_user()
    config = dc.settings(url=f"ldap://{dc.samba.dc_ip}", start_tls=True)
    assert disable(config, uid).status is ActionStatus.DONE and not dc.can_bind(dn, password)


def test_the_active_directory_dialect_names_accounts_by_samaccountname() -> None:
    fields = {"url": "ldaps://dc.example.org", "bind_dn": "CN=x,DC=example", "password_env": "X", "users_base": "DC=x"}
    assert IdentityDirectory.model_validate({**fields, "dialect": "active-directory"}).user_attribute == (
        "sAMAccountName"
    )
    assert IdentityDirectory.model_validate(fields).user_attribute == "uid"
    chosen = {**fields, "dialect": "active-directory", "user_attribute": "userPrincipalName"}
    assert IdentityDirectory.model_validate(chosen).user_attribute == "userPrincipalName"


def test_the_active_directory_example_enforcement_file_is_valid() -> None:
    loaded = load_enforcement(REPO_ROOT / "examples" / "enforcement" / "identity-ad.yaml")
    assert loaded is not None and loaded.identity is not None and loaded.identity.tls
    assert loaded.identity.dialect == "active-directory"


# -- second adversarial review, AD's side (the slapd side: tests/test_review_identity2_directory.py) ------------
# Here and not in a module of its own: Samba's DC is one per test session and its namespace one per process.


@pytest.mark.parametrize("spelling", [str.upper, str.title], ids=["upper", "title"])
def test_a_domain_admin_named_in_another_case_is_still_refused(dc: Under, spelling: object) -> None:
    """sAMAccountName matches case-insensitively: the spelling the alert carries must not reach the deny-list."""
    assert callable(spelling)
    uid, dn, password = dc.add_user("admin")
    dc.samba.add_member(ad.DOMAIN_ADMINS, dn)
    with pytest.raises(AdapterError, match="protected group"):
        disable(dc.settings(protected_groups=[]), spelling(uid))
    assert not dc.locked(dn) and dc.can_bind(dn, password)


def test_a_groups_name_is_not_an_account(dc: Under) -> None:
    """Groups have a sAMAccountName too: naming one must never touch it (nor anything else)."""
    with pytest.raises(AdapterError, match="no account"):
        disable(dc.settings(), "tier0")


def test_accounts_are_found_with_the_domain_root_as_users_base(dc: Under) -> None:
    """A common layout: users_base is the domain itself (users in several OUs). AD refers the other naming
    contexts under it (Configuration, DNS zones); they hold no accounts, so the search is still whole for us."""
    uid, dn, password = dc.add_user("root")
    config = dc.settings(users_base=ad.BASE)
    assert disable(config, uid).status is ActionStatus.DONE
    assert dc.locked(dn) and not dc.can_bind(dn, password)
    assert revert(config, uid).status is ActionStatus.DONE
    assert dc.can_bind(dn, password)


def test_an_account_whose_primary_group_is_nested_in_a_protected_group_is_refused(dc: Under) -> None:
    """The chain rule follows `member`, and a primary group is not in it: a primary group nested in a protected
    group (tier0-dbas in tier0) must protect the account as a direct primary group does."""
    uid, dn, password = dc.add_user("primary")
    dc.samba.add_member(ad.TIER0_NESTED, dn)
    dc.samba.set_primary_group(dn, int(dc.samba.attribute(ad.TIER0_NESTED, "primaryGroupToken")[0]))
    with pytest.raises(AdapterError, match=f"protected group {ad.TIER0}"):
        disable(dc.settings(), uid)
    assert not dc.locked(dn) and dc.can_bind(dn, password)


# -- third review, AD's side (the slapd side: tests/test_review_identity3_directory.py) --------------------------


def test_the_mark_of_a_disable_on_ad_is_the_dcs_stamp_and_a_join_keeps_it(dc: Under) -> None:
    """The bit carries no value of ours: the mark is the DC's record of the write that set it, read back after
    the disable and recorded; a second incident joining writes no bit, so the mark stays and the last revert
    lifts the lock."""
    uid, dn, password = dc.add_user()
    config = dc.settings()
    mark = disable(config, uid, KEY).evidence["lock_mark"]
    invocation = mark.split("@")[1] if isinstance(mark, str) and "@" in mark else ""
    assert mark.split("@")[0].isdigit() and len(invocation) == 36, mark
    assert disable(config, uid, OTHER_KEY).evidence["lock_mark"] == mark
    assert dc.held(dn) == {"holders": sorted([owner_comment(KEY), owner_comment(OTHER_KEY)]), "lock": mark}
    assert revert(config, uid, KEY).evidence["left_in_place"] is True
    assert revert(config, uid, OTHER_KEY).status is ActionStatus.DONE and dc.can_bind(dn, password)


def test_any_write_to_user_account_control_since_ours_leaves_the_account_to_a_person_on_ad(dc: Under) -> None:
    """AD does not tell which bit a write changed: another bit set by a person since our disable moves the mark,
    and the revert cannot prove the disable is still ours (fail closed: it stays disabled, saying why)."""
    uid, dn, password = dc.add_user()
    config = dc.settings()
    disable(config, uid)
    dc.samba.set_control(dn, ad.NORMAL_ACCOUNT | ad.ACCOUNTDISABLE | 0x10000)  # DONT_EXPIRE_PASSWORD, by hand
    undone = revert(config, uid)
    assert undone.evidence["changed_hands"] is True and "a person must look" in undone.detail
    assert dc.locked(dn) and not dc.can_bind(dn, password)


def test_a_person_who_enables_ours_and_disables_again_on_ad_keeps_the_account_from_a_second_incident(
    dc: Under,
) -> None:
    """A second incident must not join (and so launder) a disable that changed hands: it answers "not ours"."""
    uid, dn, password = dc.add_user()
    config = dc.settings()
    disable(config, uid, KEY)
    dc.lift_by_hand(dn)
    dc.lock_by_hand(dn)
    second = disable(config, uid, OTHER_KEY)
    assert second.evidence["mine"] is False and second.evidence["stale_holds"] == [owner_comment(KEY)]
    assert revert(config, uid, OTHER_KEY).evidence["left_in_place"] is True
    assert revert(config, uid, KEY).evidence["changed_hands"] is True
    assert dc.locked(dn) and not dc.can_bind(dn, password) and dc.holds(dn) == []
