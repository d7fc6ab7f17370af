"""Signed approvals: Ed25519 tokens bound to one vote, verified by the worker, marked in the ledger.

The pure tests pin each refusal reason down; the loop tests run real votes through a real dev server and
worker: a signed vote counts and is recorded as signed with its key, a forged or misbound one is refused by the
worker, recorded with its reason and leaves no trace in the count, an unsigned one is marked unsigned, and with
require_signed an unsigned one is refused. The CLI test goes through keygen, the config and `approve --key`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from typer.testing import CliRunner

from autonomy_controller.controller.approver_keys import (
    SIGNING_CONTEXT,
    ApproverKeys,
    ApproverKeysError,
    ApproverSecret,
    Ballot,
    RefusalCode,
    TokenRefused,
    generate_key,
    load_approver_keys,
    load_configured,
    load_secret,
    sign_token,
    verify_token,
    verify_vote,
)
from autonomy_controller.controller.cli import keys as keys_cli
from autonomy_controller.controller.cli import loop as loop_cli
from autonomy_controller.controller.cli.trail import collect_trail
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.decision.levels import OnTimeout
from autonomy_controller.controller.decision.runtime import load_policy_bundle
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind
from autonomy_controller.controller.ledger.outcomes import outcomes
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.scorecards import build_approver_cards
from autonomy_controller.controller.oversight.trail import StepKind, Trail, build_trail
from autonomy_controller.workflows.approvals import VoteRefused, check_ballot, check_vote
from autonomy_controller.workflows.client import cast_vote, incident_handle, incident_status
from autonomy_controller.workflows.contracts import (
    ActionState,
    ActionStatus,
    ApprovalGroup,
    ApprovalSpec,
    ApprovalVote,
    VoteChoice,
)
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.incident import IncidentWorkflow
from autonomy_controller.workflows.operations import workflow_histories
from tests.harness import Loop, action_of, alert, awaiting, edit_yaml, running_loop
from tests.test_cli import TRUST, BackgroundWorker, alert_lines

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
BALLOT = Ballot("sqli:198.51.100.66", "run-1", "a1", "approve", "bob")


@pytest.fixture(autouse=True)
def keys_file_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's AUTONOMY_APPROVER_KEYS_FILE must not leak into tests: each test writes its own."""
    monkeypatch.delenv("AUTONOMY_APPROVER_KEYS_FILE", raising=False)


@pytest.fixture(scope="module")
def bob() -> ApproverSecret:
    return generate_key("bob")


@pytest.fixture(scope="module")
def carol() -> ApproverSecret:
    return generate_key("carol")


def config(*secrets: ApproverSecret, require_signed: bool = False) -> dict[str, Any]:
    return {
        "require_signed": require_signed,
        "approvers": {s.approver: {"keys": [{"id": s.key_id, "public_key": s.public_key_b64}]} for s in secrets},
    }


def keys_of(*secrets: ApproverSecret, require_signed: bool = False) -> ApproverKeys:
    return ApproverKeys.model_validate(config(*secrets, require_signed=require_signed))


def refusal(keys: ApproverKeys, token: str, ballot: Ballot = BALLOT, now: datetime = NOW) -> RefusalCode:
    with pytest.raises(TokenRefused) as caught:
        verify_token(keys, token, ballot, now)
    return caught.value.code


def forge(token: str, **changes: Any) -> str:
    """The token with its claim edited (still canonical) and the original signature kept."""
    version, body, signature = token.split(".")
    claim = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claim.update(changes)
    raw = json.dumps(claim, sort_keys=True, separators=(",", ":")).encode()
    return f"{version}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# -- tokens, without Temporal ---------------------------------------------------------------------------------


def test_a_token_verifies_for_exactly_the_vote_it_was_signed_for(bob: ApproverSecret) -> None:
    token = sign_token(bob, BALLOT, now=NOW)
    verified = verify_token(keys_of(bob), token, BALLOT, NOW + timedelta(minutes=14))
    assert (verified.approver, verified.key_id) == ("bob", bob.key_id)
    assert verified.expires_at - verified.issued_at == timedelta(minutes=15)
    assert sign_token(bob, BALLOT, now=NOW) != token  # a fresh nonce each time


@pytest.mark.parametrize(
    ("ballot", "code"),
    [
        (Ballot("sqli:198.51.100.67", "run-1", "a1", "approve", "bob"), RefusalCode.WRONG_INCIDENT),
        (Ballot("sqli:198.51.100.66", "run-2", "a1", "approve", "bob"), RefusalCode.WRONG_RUN),
        (Ballot("sqli:198.51.100.66", "run-1", "a2", "approve", "bob"), RefusalCode.WRONG_ACTION),
        (Ballot("sqli:198.51.100.66", "run-1", "a1", "reject", "bob"), RefusalCode.WRONG_CHOICE),
        (Ballot("sqli:198.51.100.66", "run-1", "a1", "approve", "carol"), RefusalCode.APPROVER_MISMATCH),
    ],
)
def test_a_token_is_refused_for_any_other_vote(bob: ApproverSecret, ballot: Ballot, code: RefusalCode) -> None:
    assert refusal(keys_of(bob), sign_token(bob, BALLOT, now=NOW), ballot) is code


@pytest.mark.parametrize(
    "changes", [{"action_id": "a2"}, {"choice": "reject"}, {"expires_at": 2_000_000_000}, {"nonce": "A" * 22}]
)
def test_an_edited_claim_no_longer_verifies(bob: ApproverSecret, changes: dict[str, Any]) -> None:
    edited = forge(sign_token(bob, BALLOT, now=NOW), **changes)
    ballot = Ballot(
        BALLOT.incident, BALLOT.run_id, changes.get("action_id", "a1"), changes.get("choice", "approve"), "bob"
    )
    assert refusal(keys_of(bob), edited, ballot) is RefusalCode.BAD_SIGNATURE


def test_a_claim_reattributed_to_another_approver_does_not_verify(bob: ApproverSecret, carol: ApproverSecret) -> None:
    as_carol = forge(sign_token(bob, BALLOT, now=NOW), approver="carol", key_id=carol.key_id)
    ballot = Ballot(BALLOT.incident, BALLOT.run_id, BALLOT.action_id, BALLOT.choice, "carol")
    assert refusal(keys_of(bob, carol), as_carol, ballot) is RefusalCode.BAD_SIGNATURE


def test_a_key_that_is_not_the_configured_one_does_not_verify(bob: ApproverSecret) -> None:
    impostor = generate_key("bob", key_id=bob.key_id)  # same name and key id, another private key
    assert refusal(keys_of(bob), sign_token(impostor, BALLOT, now=NOW)) is RefusalCode.BAD_SIGNATURE


def test_unknown_approvers_and_removed_keys_are_refused(bob: ApproverSecret, carol: ApproverSecret) -> None:
    carols_ballot = Ballot(BALLOT.incident, BALLOT.run_id, BALLOT.action_id, BALLOT.choice, "carol")
    assert (
        refusal(keys_of(bob), sign_token(carol, carols_ballot, now=NOW), carols_ballot) is RefusalCode.UNKNOWN_APPROVER
    )
    rotated = generate_key("bob")  # bob's config now lists only his new key: the old one is revoked
    assert refusal(keys_of(rotated), sign_token(bob, BALLOT, now=NOW)) is RefusalCode.UNKNOWN_KEY


def test_time_bounds(bob: ApproverSecret) -> None:
    keys = keys_of(bob)
    token = sign_token(bob, BALLOT, now=NOW)
    assert refusal(keys, token, now=NOW + timedelta(minutes=15)) is RefusalCode.EXPIRED
    assert refusal(keys, token, now=NOW - timedelta(minutes=5)) is RefusalCode.NOT_YET_VALID
    verify_token(keys, token, BALLOT, NOW - timedelta(seconds=30))  # within the allowed clock skew
    long_lived = sign_token(bob, BALLOT, now=NOW, lifetime=timedelta(hours=2))
    assert refusal(keys, long_lived, now=NOW + timedelta(minutes=1)) is RefusalCode.TOO_LONG_LIVED


def test_malformed_tokens_are_refused_as_such(bob: ApproverSecret) -> None:
    keys = keys_of(bob)
    good = sign_token(bob, BALLOT, now=NOW)
    _, body, signature = good.split(".")
    claim = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))

    def signed(raw: bytes) -> str:
        return f"v1.{b64url(raw)}.{b64url(bob.private_key.sign(SIGNING_CONTEXT + raw))}"

    malformed = {
        "empty": "",
        "no signature": f"v1.{body}",
        "other version": f"v2.{body}.{signature}",
        "not base64url": f"v1.{body}+/.{signature}",
        "padded": f"v1.{body}==.{signature}",
        "not JSON": signed(b"{not json"),
        "not UTF-8": signed(b"\xff\xfe"),
        "deeply nested": signed(b"[" * 3000),
        "missing field": signed(json.dumps({k: v for k, v in claim.items() if k != "nonce"}, sort_keys=True).encode()),
        "extra field": signed(json.dumps({**claim, "admin": True}, sort_keys=True, separators=(",", ":")).encode()),
        "not canonical": signed(json.dumps(claim, sort_keys=True, indent=1).encode()),
        "expires before issued": signed(
            json.dumps({**claim, "expires_at": claim["issued_at"]}, sort_keys=True, separators=(",", ":")).encode()
        ),
        "too long": "v1." + "A" * 5_000 + "." + signature,
    }
    for why, token in malformed.items():
        assert refusal(keys, token) is RefusalCode.MALFORMED, why


def test_unsigned_votes_are_allowed_unless_the_config_requires_signatures(bob: ApproverSecret) -> None:
    assert verify_vote(keys_of(bob), None, BALLOT, NOW) is None
    with pytest.raises(TokenRefused) as caught:
        verify_vote(keys_of(bob, require_signed=True), None, BALLOT, NOW)
    assert caught.value.code is RefusalCode.UNSIGNED
    signed = verify_vote(keys_of(bob, require_signed=True), sign_token(bob, BALLOT, now=NOW), BALLOT, NOW)
    assert signed is not None and signed.key_id == bob.key_id


# -- the config and the private key file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"approvers": {"bob": {"keys": [{"id": "k1", "public_key": "not base64!"}]}}}, "approvers.bob.keys.0"),
        ({"approvers": {"bob": {"keys": [{"id": "k1", "public_key": "AAAA"}]}}}, "is 3"),
        ({"approvers": {"bob": {"keys": []}}}, "approvers.bob.keys"),
        ({"approvers": {"bob": {"keys": [{"id": "k1", "public_key": "x", "private_key": "y"}]}}}, "private_key"),
        ({"require_signed": "yes"}, "require_signed"),
        ({"require_signd": True}, "require_signd"),
        ({"max_token_seconds": 0}, "max_token_seconds"),
        ({"approvers": {"bob smith": {"keys": []}}}, "bob smith"),
        ([1, 2], "(top level)"),
    ],
)
def test_the_config_is_validated_strictly(tmp_path: Path, document: Any, named: str) -> None:
    path = tmp_path / "approver_keys.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ApproverKeysError, match=r"approver_keys\.yaml: ") as caught:
        load_approver_keys(path)
    assert named in str(caught.value)


def test_one_public_key_cannot_belong_to_two_approvers(
    tmp_path: Path, bob: ApproverSecret, carol: ApproverSecret
) -> None:
    shared = {"keys": [{"id": "k", "public_key": bob.public_key_b64}]}
    path = tmp_path / "approver_keys.yaml"
    path.write_text(yaml.safe_dump({"approvers": {"bob": shared, "carol": shared}}))
    with pytest.raises(ApproverKeysError, match="also listed for bob"):
        load_approver_keys(path)
    bob_twice = {
        "keys": [{"id": "k", "public_key": bob.public_key_b64}, {"id": "k", "public_key": carol.public_key_b64}]
    }
    path.write_text(yaml.safe_dump({"approvers": {"bob": bob_twice}}))
    with pytest.raises(ApproverKeysError, match="listed twice: k"):
        load_approver_keys(path)


def test_a_missing_file_is_no_keys_unless_it_was_named(tmp_path: Path) -> None:
    assert load_approver_keys(tmp_path / "none.yaml") == ApproverKeys()
    with pytest.raises(ApproverKeysError, match="no such file"):
        load_approver_keys(tmp_path / "none.yaml", required=True)


def test_the_default_location_is_outside_the_policy_data(
    config_copy: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config_copy.approver_keys_file == config_copy.config_dir / "approver_keys.yaml"
    monkeypatch.delenv("AUTONOMY_CONFIG_DIR", raising=False)
    assert Settings().approver_keys_file == REPO_ROOT / "config" / "approver_keys.yaml"  # documented default
    assert not config_copy.approver_keys_file.is_relative_to(config_copy.policies_dir)
    before = load_policy_bundle(config_copy)
    config_copy.approver_keys_file.write_text("require_signed: true\n")
    after = load_policy_bundle(config_copy)
    assert after.revision == before.revision and "approver_keys" not in after.data  # not policy data
    monkeypatch.setenv("AUTONOMY_APPROVER_KEYS_FILE", "/etc/autonomy/keys.yaml")
    assert Settings().approver_keys_file == Path("/etc/autonomy/keys.yaml")


def test_the_private_key_file_is_private_and_never_overwritten(tmp_path: Path, bob: ApproverSecret) -> None:
    path = tmp_path / "keys" / "bob.key"
    bob.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_secret(path)
    assert (loaded.approver, loaded.key_id, loaded.public_key_b64) == ("bob", bob.key_id, bob.public_key_b64)
    with pytest.raises(FileExistsError):
        generate_key("bob", key_id=bob.key_id).write(path)
    assert load_secret(path).public_key_b64 == bob.public_key_b64
    os.chmod(path, 0o644)
    with pytest.raises(ApproverKeysError, match="readable by others"):
        load_secret(path)


def test_a_key_signs_only_for_its_own_approver(bob: ApproverSecret) -> None:
    with pytest.raises(ApproverKeysError, match="bob's"):
        sign_token(bob, Ballot("i", "r", "a1", "approve", "carol"))


# -- the validator's part ------------------------------------------------------------------------------------


def test_a_client_cannot_assert_that_its_vote_was_verified() -> None:
    for claims in ({"signed": True}, {"key_id": "bob-1"}):
        with pytest.raises(VoteRefused, match="set by the worker"):
            check_ballot(ApprovalVote(action_id="a1", approver="bob", choice=VoteChoice.APPROVE, **claims))
    check_ballot(ApprovalVote(action_id="a1", approver="bob", choice=VoteChoice.APPROVE, token="v1.x.y"))


def test_a_vote_being_verified_holds_its_place_and_names_are_exact() -> None:
    spec = ApprovalSpec(
        quorum=1,
        groups=[ApprovalGroup(name="soc", members=["bob", "carol"])],
        proposer="planner:offline",
        service_identities=[],
        timeout_seconds=60,
        on_timeout=OnTimeout.REJECT,
    )
    state = ActionState(action_id="a1", action="x", verdict="approve", status=ActionStatus.AWAITING_APPROVAL)
    ballot = ApprovalVote(action_id="a1", approver="bob", choice=VoteChoice.APPROVE)
    check_vote(state, spec, ballot)
    with pytest.raises(VoteRefused, match="already voted"):
        check_vote(state, spec, ballot, verifying={"bob"})
    state.votes.append(ballot)
    with pytest.raises(VoteRefused, match="spaces"):  # " bob" would otherwise count as a second person
        check_vote(state, spec, ballot.model_copy(update={"approver": " bob"}))


# -- the loop: real dev server, real worker ------------------------------------------------------------------


def write_keys(settings: Settings, *secrets: ApproverSecret, require_signed: bool = False) -> None:
    settings.approver_keys_file.write_text(yaml.safe_dump(config(*secrets, require_signed=require_signed)))


async def signed(
    loop: Loop, key: str, secret: ApproverSecret, action_id: str, choice: VoteChoice = VoteChoice.APPROVE
) -> ApprovalVote:
    """A vote as `approve --key` sends it: bound to the incident's current run."""
    run_id = (await incident_status(loop.client, key)).run_id
    token = sign_token(secret, Ballot(key, run_id, action_id, choice.value, secret.approver))
    return ApprovalVote(action_id=action_id, approver=secret.approver, choice=choice, comment="seen", token=token)


def approvals(loop: Loop, key: str) -> list[LedgerRecord]:
    return loop.ledger.records(key, [RecordKind.APPROVAL])


async def replays(loop: Loop, key: str) -> None:
    history: WorkflowHistory = await incident_handle(loop.client, key).fetch_history()
    await Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


@pytest.fixture
async def loop(config_copy: Settings, bob: ApproverSecret, carol: ApproverSecret) -> AsyncIterator[Loop]:
    write_keys(config_copy, bob, carol)
    async with running_loop(config_copy) as running:
        yield running


async def test_a_signed_vote_counts_and_is_recorded_as_signed_with_its_key(loop: Loop, bob: ApproverSecret) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    state = await cast_vote(loop.client, loop.ledger, key, await signed(loop, key, bob, block.action_id))
    assert [(v.approver, v.signed, v.key_id, v.token) for v in state.votes] == [("bob", True, bob.key_id, None)]
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert loop.enforcement.effects["network.block_ip"] == 1
    vote = next(r for r in approvals(loop, key) if r.payload["event"] == "vote")
    assert vote.actor == "user:bob"
    assert vote.payload["signed"] is True and vote.payload["key_id"] == bob.key_id
    # the token itself is kept: an auditor can verify the signature again, offline, with the public key
    run_id = (await incident_status(loop.client, key)).run_id
    again = verify_token(
        keys_of(bob), vote.payload["token"], Ballot(key, run_id, block.action_id, "approve", "bob"), datetime.now(UTC)
    )
    assert again.key_id == bob.key_id
    await replays(loop, key)


async def test_forged_and_misbound_tokens_are_refused_by_the_worker_and_nothing_counts(
    loop: Loop, bob: ApproverSecret, carol: ApproverSecret
) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    impostor = generate_key("carol", key_id=carol.key_id)  # carol's name and key id, someone else's key
    forged = await signed(loop, key, impostor, block.action_id, VoteChoice.REJECT)
    with pytest.raises(VoteRefused, match=r"bad_signature.*signature does not verify with carol's key"):
        await cast_vote(loop.client, loop.ledger, key, forged)
    flipped = await signed(loop, key, bob, block.action_id, VoteChoice.REJECT)
    flipped = flipped.model_copy(update={"choice": VoteChoice.APPROVE})  # a reject token sent as an approval
    with pytest.raises(VoteRefused, match="wrong_choice"):
        await cast_vote(loop.client, loop.ledger, key, flipped)
    elsewhere = (await signed(loop, key, bob, block.action_id)).model_copy(update={"approver": "heidi"})
    with pytest.raises(VoteRefused, match="approver_mismatch"):
        await cast_vote(loop.client, loop.ledger, key, elsewhere)
    # nothing counted: the action still waits, on everyone, and has not run
    status = await incident_status(loop.client, key)
    block = action_of(status, "network.block_ip")
    assert block.status is ActionStatus.AWAITING_APPROVAL and block.votes == []
    assert block.waiting_on == ["bob", "carol", "heidi"]
    assert loop.enforcement.effects["network.block_ip"] == 0
    # each refusal recorded once, by the worker (not the client), with its reason
    refused = [r for r in approvals(loop, key) if r.payload["event"] == "vote_refused"]
    assert [(r.actor, r.payload["approver"], r.payload["code"]) for r in refused] == [
        ("svc:controller", "carol", "bad_signature"),
        ("svc:controller", "bob", "wrong_choice"),
        ("svc:controller", "heidi", "approver_mismatch"),
    ]
    assert all(r.payload["with_token"] for r in refused)
    assert "signature does not verify" in refused[0].payload["detail"]
    # the refused voters left no trace: bob's genuine vote counts and the action runs
    await cast_vote(loop.client, loop.ledger, key, await signed(loop, key, bob, block.action_id))
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert loop.enforcement.effects["network.block_ip"] == 1
    await replays(loop, key)


async def test_a_token_from_one_incident_is_refused_on_another(loop: Loop, bob: ApproverSecret) -> None:
    first, second = await loop.submit([alert(1, "198.51.100.80"), alert(1, "198.51.100.81")], level=Level.L2)
    block = action_of(await awaiting(loop, first), "network.block_ip")
    await awaiting(loop, second)
    token_for_first = await signed(loop, first, bob, block.action_id)
    with pytest.raises(VoteRefused, match="wrong_incident"):
        await cast_vote(loop.client, loop.ledger, second, token_for_first)
    assert action_of(await incident_status(loop.client, second), "network.block_ip").votes == []


async def test_an_unsigned_vote_is_recorded_as_unsigned_and_cannot_claim_otherwise(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    claims_signed = ApprovalVote(action_id=block.action_id, approver="bob", choice=VoteChoice.APPROVE, signed=True)
    with pytest.raises(VoteRefused, match="set by the worker"):
        await cast_vote(loop.client, loop.ledger, key, claims_signed)
    plain = ApprovalVote(action_id=block.action_id, approver="bob", choice=VoteChoice.APPROVE)
    state = await cast_vote(loop.client, loop.ledger, key, plain)
    assert [(v.approver, v.signed, v.key_id) for v in state.votes] == [("bob", False, None)]
    vote = next(r for r in approvals(loop, key) if r.payload["event"] == "vote")
    assert vote.payload["signed"] is False and "key_id" not in vote.payload and "token" not in vote.payload
    assert "unsigned" in vote.payload["detail"]
    refused = [r for r in approvals(loop, key) if r.payload["event"] == "vote_refused"]
    assert len(refused) == 1 and refused[0].actor == "user:bob"  # a validator refusal: the client records it
    await replays(loop, key)


async def test_require_signed_refuses_unsigned_votes_from_the_next_vote_on(
    loop: Loop, bob: ApproverSecret, carol: ApproverSecret
) -> None:
    edit_yaml(loop.settings.levels_dir / "L2.yaml", approval={"quorum": 2, "timeout_seconds": 3600})
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    write_keys(loop.settings, bob, carol, require_signed=True)  # read per vote: no worker restart
    with pytest.raises(VoteRefused, match="unsigned vote"):
        await cast_vote(
            loop.client,
            loop.ledger,
            key,
            ApprovalVote(action_id=block.action_id, approver="heidi", choice=VoteChoice.APPROVE),
        )
    refused = next(r for r in approvals(loop, key) if r.payload["event"] == "vote_refused")
    assert refused.payload["code"] == "unsigned" and refused.payload["with_token"] is False
    await cast_vote(loop.client, loop.ledger, key, await signed(loop, key, bob, block.action_id))
    state = await cast_vote(loop.client, loop.ledger, key, await signed(loop, key, carol, block.action_id))
    assert {(v.approver, v.signed) for v in state.votes} == {("bob", True), ("carol", True)}
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert loop.enforcement.effects["network.block_ip"] == 1


async def test_a_broken_keys_config_refuses_every_vote(loop: Loop) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    loop.settings.approver_keys_file.write_text("require_signed: [oops\n")
    with pytest.raises(VoteRefused, match="approver keys config"):
        await cast_vote(
            loop.client,
            loop.ledger,
            key,
            ApprovalVote(action_id=block.action_id, approver="bob", choice=VoteChoice.APPROVE),
        )
    assert action_of(await incident_status(loop.client, key), "network.block_ip").votes == []
    assert loop.enforcement.effects["network.block_ip"] == 0


async def test_concurrent_votes_from_one_approver_count_once(config_copy: Settings, bob: ApproverSecret) -> None:
    write_keys(config_copy, bob)
    edit_yaml(config_copy.levels_dir / "L2.yaml", approval={"quorum": 2, "timeout_seconds": 3600})
    async with running_loop(config_copy) as loop:
        (key,) = await loop.submit([alert(1)], level=Level.L2)
        block = action_of(await awaiting(loop, key), "network.block_ip")
        ballots = [await signed(loop, key, bob, block.action_id) for _ in range(3)]
        ballots.append(ApprovalVote(action_id=block.action_id, approver="bob", choice=VoteChoice.APPROVE))
        results = await asyncio.gather(
            *(cast_vote(loop.client, loop.ledger, key, b) for b in ballots), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, ActionState)]
        assert len(accepted) == 1, results
        assert all(isinstance(r, VoteRefused) and "already voted" in str(r) for r in results if r not in accepted)
        status = await incident_status(loop.client, key)
        assert [v.approver for v in action_of(status, "network.block_ip").votes] == ["bob"]
        assert [r.payload["event"] for r in approvals(loop, key)].count("vote") == 1


# -- the commands: keygen, the config, approve --key ---------------------------------------------------------

runner = CliRunner()


def commands() -> typer.Typer:
    """The commands under test, mapped as controller/cli/__init__.py maps them."""
    app = typer.Typer()
    approvers = typer.Typer()
    app.add_typer(approvers, name="approvers")
    approvers.command("keygen")(keys_cli.keygen)
    approvers.command("list")(keys_cli.approvers_list)
    app.command()(loop_cli.submit)
    app.command()(loop_cli.approve)
    app.command()(loop_cli.reject)
    app.command("show")(loop_cli.incidents_show)
    return app


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Path]]:
    state_dir, keys_file = tmp_path / "var", tmp_path / "approver_keys.yaml"
    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(state_dir))
    monkeypatch.setenv("AUTONOMY_APPROVER_KEYS_FILE", str(keys_file))
    monkeypatch.setenv("AUTONOMY_LEDGER_URL", "")
    monkeypatch.setenv("AUTONOMY_TICKETS_DIR", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    yield Settings(state_dir=state_dir, ledger_url_override=None), keys_file


def test_keygen_config_and_approve_with_key(
    cli_env: tuple[Settings, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, keys_file = cli_env
    app = commands()
    made = runner.invoke(app, ["approvers", "keygen", "bob", "--json"])
    assert made.exit_code == 0, made.output
    generated = json.loads(made.stdout)
    key_file = Path(generated["private_key_file"])
    assert key_file.parent == tmp_path / "home" / "autonomy" / "keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert generated["public_key"] not in key_file.read_text()
    assert runner.invoke(app, ["approvers", "keygen", "bob", "--key-id", generated["key_id"]]).exit_code == 2
    keys_file.write_text(yaml.safe_dump(generated["config_snippet"]))
    listed = runner.invoke(app, ["approvers", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [k["key_id"] for k in json.loads(listed.stdout)["keys"]] == [generated["key_id"]]

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert_lines(range(2), "198.51.100.90"))
    key = "src:198.51.100.90"
    with DevServer() as server:
        monkeypatch.setenv("AUTONOMY_TEMPORAL_ADDRESS", server.address)
        worker = BackgroundWorker(server.address, settings).start()
        try:
            submitted = runner.invoke(
                app, ["submit", str(alerts), "--level", "L2", "--settle", "0.2", "--quiet", "0.5", *TRUST]
            )
            assert submitted.exit_code == 0, submitted.output
            wait_until_awaiting(app, key)
            mismatch = runner.invoke(app, ["approve", key, "network.block_ip", "--as", "carol", "--key", str(key_file)])
            assert mismatch.exit_code == 2 and "bob's key" in mismatch.stderr
            ok = runner.invoke(app, ["approve", key, "network.block_ip", "--key", str(key_file), "--json"])
            assert ok.exit_code == 0, ok.output
            answer = json.loads(ok.stdout)
            assert answer["signed"] is True
            assert [(v["approver"], v["signed"], v["key_id"]) for v in answer["state"]["votes"]] == [
                ("bob", True, generated["key_id"])
            ]
        finally:
            worker.close()
    with Ledger.from_url(settings.ledger_url) as ledger:
        votes = [r.payload for r in ledger.records(key, [RecordKind.APPROVAL]) if r.payload["event"] == "vote"]
    assert [(v["approver"], v["signed"], v["key_id"]) for v in votes] == [("bob", True, generated["key_id"])]


def wait_until_awaiting(app: typer.Typer, key: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = runner.invoke(app, ["show", key, "--json"])
        if shown.exit_code == 0:
            actions = {a["action"]: a["status"] for a in json.loads(shown.stdout)["actions"]}
            if actions.get("network.block_ip") == "awaiting_approval":
                return
        time.sleep(0.2)
    raise AssertionError(f"{key} never awaited approval")


async def test_the_audit_trail_re_verifies_a_signed_vote_and_flags_a_rewritten_token(
    loop: Loop, bob: ApproverSecret
) -> None:
    (key,) = await loop.submit([alert(1)], level=Level.L2)
    block = action_of(await awaiting(loop, key), "network.block_ip")
    await cast_vote(loop.client, loop.ledger, key, await signed(loop, key, bob, block.action_id))
    await loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    keys = load_configured(loop.settings.approver_keys_file)
    address = loop.client.service_client.config.target_host

    def vote_text(trail: Trail) -> str:
        block_trail = next(a for a in trail.actions if a.action == "network.block_ip")
        approval = next(s for s in block_trail.steps if s.kind is StepKind.APPROVAL)
        return next(f.text for f in approval.facts if f.text.startswith("bob voted"))

    trail = await collect_trail(loop.ledger, key, address, keys)
    assert trail.disagreement_count == 0, trail.disagreements  # the history's vote carries the same token
    (bob_card,) = build_approver_cards(outcomes(loop.ledger))
    assert (bob_card.approved, bob_card.unsigned) == (1, 0)  # the scorecard counts it as signed
    assert f"signature re-verified now with bob's key {bob.key_id}" in vote_text(trail)
    assert "not re-checked (no keys config given)" in vote_text(await collect_trail(loop.ledger, key, address))

    records = loop.ledger.records(key)
    vote_record = next(r for r in records if r.payload.get("event") == "vote")
    claim = vote_record.payload["token"].rsplit(".", 1)[0]
    other = sign_token(bob, Ballot(key, "another-run", block.action_id, "approve", "bob")).rsplit(".", 1)[1]
    rewritten = vote_record.model_copy(update={"payload": {**vote_record.payload, "token": f"{claim}.{other}"}})
    histories = await workflow_histories(address, key)
    tampered = build_trail(
        key, [rewritten if r is vote_record else r for r in records], histories, loop.ledger.verify(key), keys=keys
    )
    assert "signature re-check FAILED" in vote_text(tampered)
    findings = sorted(d.text for d in tampered.action(block.action_id).disagreements)
    assert len(findings) == 2, findings
    assert findings[0].startswith("bob's vote reads approve/signed in the ledger but approve/signed in the history")
    assert findings[0].endswith("with another token")  # the history kept the token bob really sent
    assert findings[1].startswith("the stored token does not re-verify: signature does not verify")
