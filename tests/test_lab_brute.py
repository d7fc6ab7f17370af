"""The brute-force scenario on the lab, end to end (issue 17): password guessing against a real login service,
its auth log into the loop, and at L3 the guessed account locked in the real directory only where policy lets.

Real: slapd (tests/slapd.py, on loopback for the adapter and on an ldapi:// socket for the login service inside
the victim namespace), the login service (controller/lab/login.py) binding to it for every attempt, the guessing
client in the attacker namespace, the auth-log ingest (controller/ingest/auth_log.py), the policy, the identity
adapter and nft in the victim namespace. The lab starts only what this needs: the namespaces, nginx (the
block's verification probes it) and the login service; no Suricata, no background services.

Needs root (namespaces, nft) and slapd (installed on first use when root); otherwise every test skips, saying why.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from autonomy_controller.actions.adapters.identity.lockout import LOCK_ATTRIBUTE, locks_for_good
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.lab import Lab, LabConfig
from autonomy_controller.controller.lab.directory_packages import DirectoryPackagesMissing, ensure_slapd
from autonomy_controller.controller.lab.loop import BLOCK, LabLoop, action_of, lab_loop
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.trail import build_trail, render_markdown
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionStatus, ApprovalVote, IncidentStatus, VoteChoice
from autonomy_controller.workflows.operations import workflow_histories
from tests.slapd import ADMINS, DEFAULT_POLICY, PEOPLE, SERVICE_DN, Slapd
from tests.test_lab_e2e import _lab_available, prefix, sweep_stale

pytestmark = pytest.mark.lab

ATTACKER = "198.51.100.66"
CASE = f"src:{ATTACKER}"
DISABLE = "identity.disable_user"
WORDS = ["123456", "password", "letmein", "qwerty"]
"""The guessing client's word list, all wrong: the account's real password is appended where it should work."""


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    _lab_available()
    try:
        ensure_slapd(install=True)
    except DirectoryPackagesMissing as exc:
        pytest.skip(f"the brute-force scenario needs a real slapd: {exc}")
    short = Path(tempfile.mkdtemp(prefix="bf-"))  # a unix socket path has a 108-byte limit
    server = Slapd(tmp_path_factory.mktemp("slapd"), ldapi=short / "ldapi")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        (short / "ldapi").unlink(missing_ok=True)
        short.rmdir()


@pytest.fixture(scope="module")
def accounts(directory: Slapd) -> dict[str, tuple[str, str]]:
    """(dn, password) by uid: frank and alice regular accounts, admin a privileged one (in the protected group),
    grace a bystander who logs in from the benign side (policies/identities/data.yaml knows all four)."""
    made = {uid: directory.add_user(uid=uid)[1:] for uid in ("frank", "alice", "admin", "grace")}
    directory.add_member(ADMINS, made["admin"][0])
    return made


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory, directory: Slapd, accounts: dict[str, tuple[str, str]]
) -> Iterator[Lab]:
    sweep_stale("brute")
    root = tmp_path_factory.mktemp("lab")
    lab = Lab(LabConfig(root=root, prefix=prefix("brute")))
    probe = root / "frank-password"
    probe.write_text(accounts["frank"][1] + "\n")
    lab.directory = {
        "url": directory.url,
        "bind_dn": SERVICE_DN,
        "password_file": str(directory.service_password_file),
        "users_base": PEOPLE,
        "default_policy": DEFAULT_POLICY,
        "protected_groups": [ADMINS],
        "probe_accounts": {"frank": {"password_file": str(probe)}},
    }
    try:
        lab.network.up()
        lab.waf.start()
        lab.login.start(directory.ldapi_url, PEOPLE)
        yield lab
    finally:
        report = lab.down()
        assert not report.leftovers, report.leftovers


@pytest.fixture
async def loop(lab: Lab, directory: Slapd, tmp_path: Path) -> AsyncIterator[LabLoop]:
    """A fresh loop (its own Temporal, ledger and follow offsets) on an empty auth log, no blocks, no locks."""
    lab.clear_blocks()
    os.truncate(lab.login.auth_log, 0)
    async with lab_loop(lab, Settings(state_dir=tmp_path / "var")) as running:
        yield running
    lab.clear_blocks()


def guess(lab: Lab, user: str, *passwords: str, source: str = "attacker") -> list[int | None]:
    netns = {"attacker": lab.topology.attacker, "benign": lab.topology.benign}[source]
    return [a["status"] for a in lab.login.guess(netns, lab.topology.target_for(netns), user, passwords)]


def login_lines(lab: Lab) -> list[str]:
    return lab.login.auth_log.read_text().splitlines()


async def vote(loop: LabLoop, approver: str, action: str = DISABLE) -> None:
    state = action_of(await loop.status(CASE), action)
    assert state is not None
    ballot = ApprovalVote(action_id=state.action_id, approver=approver, choice=VoteChoice.APPROVE, comment="seen")
    await cast_vote(loop.client, loop.ledger, CASE, ballot)


async def trail_markdown(loop: LabLoop) -> str:
    histories = await workflow_histories(loop.address, CASE)
    return render_markdown(build_trail(CASE, loop.ledger.records(CASE), histories, loop.ledger.verify(CASE)))


REVERT = ActionStatus.AWAITING_REVERT


def state(status: IncidentStatus, action: str) -> ActionStatus | None:
    found = action_of(status, action)
    return found.status if found else None


def pending(status: IncidentStatus) -> set[str]:
    return {a.action for a in status.actions if a.status is ActionStatus.AWAITING_APPROVAL}


async def test_l3_guessed_regular_account_is_locked_after_approval_and_the_source_blocked(
    loop: LabLoop, directory: Slapd, accounts: dict[str, tuple[str, str]]
) -> None:
    lab = loop.lab
    dn, password = accounts["frank"]
    _, grace_password = accounts["grace"]
    assert guess(lab, "grace", grace_password, source="benign") == [204], "a person logs in at the first try"
    assert guess(lab, "frank", *WORDS, password) == [401, 401, 401, 401, 204], "the guessing succeeds"

    added = await loop.ingest_once(level=Level.L3, expect=3, logs=[lab.login.auth_log])
    assert added == {CASE: 3}, "failures 3 and 4 and the success; nothing for grace or the first two failures"
    waiting = await loop.wait_for(CASE, lambda s: len(pending(s)) == 2)
    assert pending(waiting) == {DISABLE, BLOCK}, "L3: identity containment is approved by iam-admins; so is a block "
    "on triage short of malicious at 0.8 (three alerts cap its confidence)"
    assert directory.can_bind(dn, password), "nothing applied while the approvals are pending"

    await vote(loop, "bob", BLOCK)  # soc-oncall
    await vote(loop, "dave")  # iam-admins
    # Both bounded: the disable for 4 h (time to reset the password), the block for an hour; the TTL reverts wait.
    done = await loop.wait_for(CASE, lambda s: state(s, DISABLE) is REVERT and state(s, BLOCK) is REVERT)
    disable = action_of(done, DISABLE)
    assert disable is not None and disable.ttl_seconds == 14400 and disable.revert_at is not None, disable
    assert locks_for_good(*directory.attribute(dn, LOCK_ATTRIBUTE)) and not directory.can_bind(dn, password)
    assert guess(lab, "frank", password, source="benign") == [401], "the login service now refuses the account"
    assert guess(lab, "grace", grace_password, source="benign") == [204], "... and still lets its owner-less peers in"
    assert lab.blocked_addresses() == [ATTACKER]
    assert guess(lab, "grace", grace_password) == [None], "the source is blocked: no answer at all"

    report = loop.report_markdown(CASE)
    for expected in (
        "auth-guessed",  # the rule of the alert that says the guessing succeeded
        "the guessing succeeded",  # triage's login-outcome factor, from the login service's own counts
        f"{DISABLE} verify (execute): ok",
        f"{BLOCK} verify (execute): ok",
        "effective L3",
    ):
        assert expected in report, expected
    trail = await trail_markdown(loop)
    assert "dave" in trail and DISABLE in trail and "sessions" in trail, trail
    assert "TTL timer of 4 h 0 min" in trail and "pending: fires at" in trail, "the disable's revert is on the trail"
    executions = [r.payload for r in loop.ledger.records(CASE, [RecordKind.EXECUTION])]
    assert any("not ended" in str(p) for p in executions if p.get("request", {}).get("action") == DISABLE)
    assert loop.ledger.verify(CASE).ok


async def test_l3_a_guessed_privileged_account_is_never_locked_even_with_iam_approvals(
    loop: LabLoop, directory: Slapd, accounts: dict[str, tuple[str, str]]
) -> None:
    """`admin` is privileged (policy: two iam-admins) and in the directory's protected group (the adapter
    refuses it whatever got through): approved by two, the account stays usable and the refusal is recorded."""
    lab = loop.lab
    dn, password = accounts["admin"]
    assert guess(lab, "admin", "") == [401], "an empty password is refused, never an anonymous bind"
    assert guess(lab, "admin", *WORDS, password)[-1] == 204

    await loop.ingest_once(level=Level.L3, expect=3, logs=[lab.login.auth_log])
    waiting = await loop.wait_for(CASE, lambda s: DISABLE in pending(s))
    disable = action_of(waiting, DISABLE)
    assert disable is not None and any("iam-admins" in m for m in disable.missing), disable
    await vote(loop, "dave")
    await asyncio.sleep(1)
    assert state(await loop.status(CASE), DISABLE) is ActionStatus.AWAITING_APPROVAL, "one of two is not enough"
    await vote(loop, "erin")
    final = await loop.wait_for(CASE, lambda s: state(s, DISABLE) is ActionStatus.FAILED)
    assert "protected" in (action_of(final, DISABLE) or disable).detail
    assert directory.attribute(dn, LOCK_ATTRIBUTE) == [] and directory.can_bind(dn, password)
    assert "protected" in loop.report_markdown(CASE)


async def test_l3_long_guessing_that_succeeded_blocks_the_source_alone_and_waits_for_iam_on_the_account(
    loop: LabLoop, directory: Slapd, accounts: dict[str, tuple[str, str]]
) -> None:
    """Enough guessing and then a success: triage says malicious past L3's bar (the login factor at full value,
    eleven alerts), so the one-hour block runs alone; the account's disable still waits for iam-admins (L3).
    (It runs before the test whose guessing never succeeds: the login service's run of failures from the source
    goes on across tests until a success ends it.)"""
    lab = loop.lab
    dn, password = accounts["alice"]  # frank is locked by the first test (its TTL revert is hours away)
    assert guess(lab, "alice", *WORDS, *WORDS, *WORDS, password)[-1] == 204
    await loop.ingest_once(level=Level.L3, expect=11, logs=[lab.login.auth_log])
    status = await loop.wait_for(CASE, lambda s: state(s, BLOCK) is REVERT and DISABLE in pending(s))
    block = action_of(status, BLOCK)
    assert block is not None and block.verdict == "execute" and not block.votes, block
    assert lab.blocked_addresses() == [ATTACKER]
    assert directory.can_bind(dn, password), "nothing done to the account before iam-admins approve"


async def test_l3_guessing_that_never_succeeded_locks_no_account_and_a_person_blocks_the_source(
    loop: LabLoop, directory: Slapd, accounts: dict[str, tuple[str, str]]
) -> None:
    """Failures alone are low-severity alerts (never the account playbook), and triage's login factor counts
    them for at most half: suspicious, so at L3 the source's block waits for soc-oncall, and runs once approved."""
    lab = loop.lab
    dn, password = accounts["grace"]
    assert guess(lab, "grace", *WORDS, *WORDS) == [401] * 8
    await loop.ingest_once(level=Level.L3, expect=6, logs=[lab.login.auth_log])
    status = await loop.wait_for(CASE, lambda s: BLOCK in pending(s))
    assert status.playbook == "brute-force-source" and action_of(status, DISABLE) is None, status
    await vote(loop, "bob", BLOCK)
    await loop.wait_for(CASE, lambda s: state(s, BLOCK) is REVERT)
    assert lab.blocked_addresses() == [ATTACKER]
    assert directory.can_bind(dn, password), "the account is untouched"
    report = loop.report_markdown(CASE)
    assert "failed logins in a row from this source and none succeeded" in report, report
