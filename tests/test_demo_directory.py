"""As root the demo's identity containment reaches a real directory made for the run (a throwaway slapd holding
the sample accounts, with the data's domain admins protected), and nothing of it is left afterwards. Without
root (or without slapd) there is no directory and the tests skip, saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autonomy_controller.actions.adapters.base import ActionRequest, ActionStatus, AdapterError
from autonomy_controller.actions.adapters.identity.adapters import DisableUserAdapter, identity_adapters
from autonomy_controller.actions.adapters.identity.dialects import LOCK_ATTRIBUTE, locks_for_good
from autonomy_controller.controller.cli.demo_run import DemoAccounts, demo_accounts, demo_enforcement, load_samples
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.lab.directory_packages import DirectoryPackagesMissing, ensure_slapd
from autonomy_controller.controller.lab.directory_server import PEOPLE
from autonomy_controller.controller.ledger import Ledger, RecordKind
from tests.test_demo_scorecards import assert_nothing_left

KEY = "demo-test/a1"


def request(user: str) -> ActionRequest:
    return ActionRequest(
        incident_key="demo-test",
        action_id="a1",
        action="identity.disable_user",
        params={"user": user},
        idempotency_key=KEY,
        purpose="execute",
    )


def test_the_demo_accounts_are_the_samples_and_the_identities_data(tmp_path: Path) -> None:
    settings = Settings()
    alerts = load_samples(settings.example_alert_files, DeadLetter(tmp_path / "dl.jsonl"), IngestReport())
    accounts = demo_accounts(alerts, settings.policies_dir / "identities" / "data.yaml")
    assert {"j.doe", "a.smith", "svc-backup"} <= set(accounts.users)  # the samples' own users
    assert {"alice", "dave"} <= set(accounts.users)  # the identities data's
    assert set(accounts.protected) == {"admin", "dave", "erin", "ivan", "svc-backup"}  # the data's privileged ones
    weird = alerts[0].model_copy(update={"user": "x,ou=evil"})  # untrusted: never becomes a DN
    assert "x,ou=evil" not in demo_accounts([weird], tmp_path / "missing.yaml").users


def test_as_root_the_demo_directory_is_real_holds_the_samples_and_is_deleted_after(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the demo provisions its directory only as root")
    try:
        ensure_slapd(install=False)
    except DirectoryPackagesMissing as exc:
        pytest.skip(f"the demo's directory needs slapd: {exc}")
    accounts = DemoAccounts(("svc-backup", "dave"), ("dave",))
    with demo_enforcement(tmp_path, accounts) as (point, file):
        slapd = point.directory
        assert slapd is not None, point.directory_why
        assert point.accounts == ("svc-backup", "dave") and "throwaway OpenLDAP slapd" in point.directory_label
        assert slapd.service_password not in file.read_text()  # named by file, never written
        adapters = identity_adapters(file)  # the adapters the demo's worker builds from its enforcement file
        disable = next(a for a in adapters if isinstance(a, DisableUserAdapter))
        outcome = disable.execute(request("svc-backup"))
        assert outcome.status is ActionStatus.DONE, outcome.detail
        assert locks_for_good(*slapd.attribute(f"uid=svc-backup,{PEOPLE}", LOCK_ATTRIBUTE))
        verdict = disable.verify(request("svc-backup"), outcome)
        assert verdict.ok and verdict.evidence["probe_bind_works"] is False, verdict.detail
        with pytest.raises(AdapterError, match="protected group"):
            disable.execute(request("dave"))
        assert slapd.attribute(f"uid=dave,{PEOPLE}", LOCK_ATTRIBUTE) == []
        root = slapd.root
    assert_nothing_left(str(root), point.netns)


def test_without_root_there_is_no_directory_and_no_identity_section(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("as root the demo has a directory (the test above)")
    with demo_enforcement(tmp_path, DemoAccounts(("svc-backup",), ())) as (point, file):
        assert point.directory is None and point.directory_label.startswith("none: not root")
        assert not file.exists()


def test_without_a_directory_the_demo_says_identity_is_skipped_and_approves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user who is not root (the euid the demo reads, also when the tests run as root): no directory, no
    approver keys, the account disables wait for iam-admins, and the demo says why identity is skipped."""
    from typer.testing import CliRunner

    from autonomy_controller.controller.cli import app

    monkeypatch.setattr("autonomy_controller.controller.cli.demo_run.os.geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["demo", "--level", "L2"], env={"AUTONOMY_STATE_DIR": str(tmp_path / "var")})
    assert result.exit_code == 0, result.output
    assert "identity containment skipped: not root" in " ".join(result.output.split())
    assert not (tmp_path / "var" / "demo" / "approver_keys.yaml").exists()
    with Ledger.from_url(f"sqlite:///{tmp_path / 'var' / 'demo' / 'L2' / 'ledger.db'}") as ledger:
        records = [r for head in ledger.incidents() for r in ledger.records(head.incident_key, [RecordKind.APPROVAL])]
    assert not [r for r in records if r.payload.get("event") == "vote"], "the demo cast no vote"


def test_the_demo_approvers_are_the_iam_admins_with_keys_a_keys_file_requiring_signatures_vouches_for(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from autonomy_controller.controller.approver_keys import Ballot, load_approver_keys, sign_token, verify_token
    from autonomy_controller.controller.cli.demo_identity import DemoApprovers, iam_admins

    names = iam_admins(Settings().policies_dir / "identities" / "data.yaml")
    assert names == ["dave", "erin", "ivan"]
    approvers = DemoApprovers(tmp_path, names)
    keys = load_approver_keys(approvers.keys_file, required=True)
    assert keys.require_signed and set(keys.approvers) == set(names)
    secret = approvers.secret("erin")
    assert secret is not None and approvers.secret("bob") is None, "only iam-admins get a key"
    ballot = Ballot("src:203.0.113.45", "run-1", "a1", "approve", "erin")
    token = sign_token(secret, ballot)
    assert verify_token(keys, token, ballot, datetime.now(UTC)).approver == "erin"
    assert "private_key" not in approvers.keys_file.read_text(), "only the public halves are written"
    assert iam_admins(tmp_path / "missing.yaml") == []
