"""The demo's table and its scorecards page count the same actions the same way, failed executions included,
and containment runs against a real enforcement point that cannot touch this machine (root) or is said to
have none."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.ledger.outcomes import Episode, outcomes
from autonomy_controller.controller.oversight.scorecards import OUTCOMES, build_scorecards, outcome_of, scope_words
from autonomy_controller.controller.oversight.scorecards_html import OUTCOME_COLOURS

runner = CliRunner()


def test_every_outcome_has_a_colour_and_every_scope_kind_has_words() -> None:
    assert tuple(OUTCOME_COLOURS) == OUTCOMES
    assert scope_words("declared") == "level given at submit (--level)"
    assert scope_words("environment:production") == "assets in environment production (environment:production)"
    assert scope_words("category:sqli") == "sqli alerts (category:sqli)"
    assert scope_words("something:new") == "something:new"  # unknown kinds are shown as they are


def test_a_failed_execution_is_failed_not_not_run() -> None:
    from datetime import UTC, datetime

    failed = Episode("k", "a1", "network.block_ip", "contain_network", "default", "L3", "execute", datetime.now(UTC), 1)
    failed.execution_failed = True
    assert outcome_of(failed) == "failed"
    failed.executed = True  # a retry that succeeded: it ran
    assert outcome_of(failed) == "ran alone"


def test_demo_table_and_scorecards_agree(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--json", "--level", "L3"], env={"AUTONOMY_STATE_DIR": str(tmp_path / "var")})
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = lines[-1]["summary"]
    actions: list[dict[str, Any]] = [a for line in lines[:-1] for a in line["actions"]]
    row = summary["levels"]["L3"]
    assert not row["unsettled"]

    with Ledger.from_url(f"sqlite:///{Path(row['state_dir']) / 'ledger.db'}") as ledger:
        incidents = list(outcomes(ledger))
    [total] = build_scorecards(incidents, key=lambda _: ("all", "L3"))
    totals = total.summary()
    assert totals["decided"] == len(actions)
    assert totals["failed"] == row["failed"]
    assert totals["executed"] + totals["failed"] == row["ran"]
    asked = totals["approvals_requested"] - totals["granted"] - totals["rejected"] - totals["timed_out"]
    assert asked == row["awaiting_approval"]
    assert sum(totals["outcomes"].values()) == totals["decided"]

    page = Path(summary["scorecards_html"]).read_text()
    plain = page.replace(' class="num"', "")
    assert "<th>failed</th>" in plain
    assert f"<td>all scopes together</td><td>L3 run</td><td>{len(actions)}</td>" in plain  # decided, as the demo

    blocks = [a for a in actions if a["action"] == "network.block_ip" and a["verdict"] == "execute"]
    assert blocks, "the L3 demo runs network.block_ip alone for some incident"
    netns = summary["enforcement"]["netns"]
    identity = [a for a in actions if a["action"].startswith("identity.")]
    assert identity, "the samples propose identity containment"
    directory = summary["enforcement"]["directory"]
    if os.geteuid() == 0:
        assert netns and all(a["status"] in {"verified", "awaiting_revert"} for a in blocks), blocks
        assert directory, summary["enforcement"]["directory_label"]
        assert {"j.doe", "a.smith", "svc-backup"} <= set(summary["enforcement"]["accounts"])
        assert_identity_contained(row["identity"])
        reports = {line["incident"]: line["report"]["markdown"] for line in lines[:-1]}
        [regular] = [r for r in row["identity"] if r["account"] == "j.doe"]
        report = Path(reports[regular["incident"]]).read_text()
        for expected in (
            f"vote {regular['approvers'][0]} (approve) signed with key",
            "identity.disable_user verify (execute): ok",
            "a bind with its password failed",
            "sessions the account already has are not ended",
        ):
            assert expected in report, expected
        with Ledger.from_url(f"sqlite:///{Path(row['state_dir']) / 'ledger.db'}") as ledger:
            votes = [
                r.payload for h in ledger.incidents() for r in ledger.records(h.incident_key, [RecordKind.APPROVAL])
            ]
        assert [v for v in votes if v.get("event") == "vote"], "the demo's votes are on the record"
        assert all(v.get("signed") is True for v in votes if v.get("event") == "vote"), votes
        assert_nothing_left(directory["root"], netns)
    else:
        assert netns is None and summary["enforcement"]["label"].startswith("none: not root")
        assert directory is None and summary["enforcement"]["directory_label"].startswith("none: not root")
        assert all(a["status"] == "failed" for a in blocks) and row["failed"] >= len(blocks)
        # no directory: nobody approves, so the disables wait (never failed for want of an adapter)
        assert row["identity"] and all(r["status"] == "awaiting_approval" for r in row["identity"]), row["identity"]
        assert all(r["directory"] == {"locked": None, "bind_refused": None} for r in row["identity"])


def assert_identity_contained(rows: list[dict[str, Any]]) -> None:
    """At L3 the iam-admins' signed approvals let the bounded disable of the regular account guessed at the IdP
    run: verified by the controller (read back, a failed bind) and by the directory itself, reverted by the TTL;
    the privileged service account is refused by the adapter although two iam-admins approved."""
    by_account = {r["account"]: r for r in rows}
    regular, privileged = by_account["j.doe"], by_account["svc-backup"]
    assert regular["status"] == "awaiting_revert" and regular["revert_at"], regular
    assert regular["signed"] and len(regular["approvers"]) == 1, regular
    assert "a bind with its password failed" in regular["detail"], regular
    assert regular["directory"] == {"locked": True, "bind_refused": True}
    assert privileged["status"] == "failed" and "protected" in privileged["detail"], privileged
    assert privileged["signed"] and len(privileged["approvers"]) == 2, "a privileged account needs two of iam-admins"
    assert privileged["directory"] == {"locked": False, "bind_refused": False}


def assert_nothing_left(directory_root: str, netns: str | None) -> None:
    """The throwaway slapd is stopped and its folder deleted; the throwaway namespace (and its nft table) gone."""
    assert not Path(directory_root).exists()
    running = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            running.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    assert not [c for c in running if directory_root in c], "the demo's slapd still runs"
    if netns:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert netns not in listed
