"""End to end on the lab: a real WAF alert becomes a verified, reversible nftables block (issue 4).

Real: nginx + ModSecurity v3 + OWASP CRS in the victim namespace, curl from the attacker and benign namespaces,
the JSON audit log, the follow ingest's parser and offsets, the policy, nft in the victim namespace and the
adapter's connect probe. In-process for control over time (controller/lab/loop.py): a time-skipping Temporal
dev server (the 1 h TTL is fast-forwarded, not waited for), the worker, and the follow ingest. The last test
drives `autonomy lab up|attack|status|down` as a user would, with every part in its own process.

Needs root (namespaces, nft); installs the Debian packages when apt-get is there (controller/lab/packages.py),
otherwise every test skips and says what is missing. Each lab is torn down in a finally, also when a test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.actions.adapters.nftables.lock import LOCK_DIRS
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.lab import Lab, LabConfig, LabPackagesMissing, ensure_packages
from autonomy_controller.controller.lab.ids import send_undecodable_packet
from autonomy_controller.controller.lab.lab import load_config
from autonomy_controller.controller.lab.loop import BLOCK, LabLoop, action_of, lab_loop
from autonomy_controller.controller.lab.network import (
    alive,
    existing_namespaces,
    namespace_inode,
    processes_in_inode,
    run_ip,
)
from autonomy_controller.controller.lab.packages import find_binary
from autonomy_controller.controller.lab.services import start_time
from autonomy_controller.controller.lab.tool_attack import send_tool_attack
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.processes import free_port
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionState, ActionStatus, ApprovalVote, IncidentStatus, VoteChoice

pytestmark = pytest.mark.lab

ATTACKER = "198.51.100.66"
BENIGN = "203.0.113.7"
SQLI = f"src:{ATTACKER}"
"""The attacker's case (one attacker, one case: its SQLi, scanner and other alerts)."""
TTL = timedelta(hours=1, seconds=5)


def _lab_available() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root: network namespaces, nftables, nginx inside a namespace")
    try:
        ensure_packages()
    except LabPackagesMissing as exc:
        pytest.skip(str(exc))


def prefix(kind: str) -> str:
    """Namespace prefix of this test run: e.g. `e2e4711-`, so two runs on one machine never share a lab."""
    return f"{kind}{os.getpid()}-"


def sweep_stale(kind: str) -> None:
    """Tear down labs of earlier runs whose pytest process is gone (killed before its teardown ran)."""
    pattern = re.compile(rf"^{kind}(\d+)-victim$")
    for name in existing_namespaces():
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not alive(int(match.group(1))):
            Lab(LabConfig(root=Path("/nonexistent"), prefix=f"{kind}{match.group(1)}-")).down()


@contextmanager
def running_lab(root: Path, kind: str) -> Iterator[Lab]:
    """One lab (namespaces <kind><pid>-*, nginx + CRS, no services) for a module's in-process tests; always torn
    down, leaving nothing behind."""
    _lab_available()
    sweep_stale(kind)
    lab = Lab(LabConfig(root=root, prefix=prefix(kind)))
    try:
        lab.up(services=False)
        yield lab
    finally:
        report = lab.down()
        assert not report.leftovers, report.leftovers


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), "e2e") as lab:
        yield lab
    assert not [lock for d in LOCK_DIRS for lock in d.glob(f"autonomy-nft.{prefix('e2e')}*.lock")]


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """Each test starts with no blocks and empty sensor logs (every sensor appends, so truncating is safe)."""
    lab.clear_blocks()
    lab.truncate_sensor_logs()
    try:
        yield lab
    finally:
        lab.clear_blocks()


@pytest.fixture
async def loop(clean: Lab, tmp_path: Path) -> AsyncIterator[LabLoop]:
    async with lab_loop(clean, Settings(state_dir=tmp_path / "var")) as running:
        yield running


def network_executions(loop: LabLoop, key: str) -> list[Any]:
    """Execution records of network actions (a ticket may well be written: that is not enforcement)."""
    records = loop.ledger.records(key, [RecordKind.EXECUTION])
    return [r for r in records if str(r.payload.get("request", {}).get("action", "")).startswith("network.")]


def decision_of(loop: LabLoop, key: str) -> dict[str, Any]:
    decisions = loop.ledger.records(key, [RecordKind.DECISION])
    return next(r.payload for r in decisions if r.payload.get("action") == BLOCK)


# -- L3: the scope's level ------------------------------------------------------------------------------------


async def test_l3_sqli_is_blocked_verified_and_reverted_by_the_ttl(loop: LabLoop) -> None:
    lab = loop.lab
    assert lab.browse("attacker").status == 200, "before: the attacker reaches the site"
    sent = lab.attack("sqli")
    assert sent.status == 403, "the WAF stops the SQLi"
    # A tool-driven SQLi run (20 payloads): triage malicious with confidence, so L3 (web-01 is production)
    # contains it alone. (One incident only: another class's incident would own the shared block.)
    sent_tool = send_tool_attack(lab, categories=("sqli",))
    assert {r.status for r in sent_tool} == {403}
    added = await loop.ingest_once(expect=1 + len(sent_tool), timeout=30)
    assert added[SQLI] >= 10, added
    status = await loop.wait_block(SQLI, ActionStatus.AWAITING_REVERT)

    assert lab.blocked_addresses() == [ATTACKER]
    (element,) = lab.blocklist() or []
    assert element["timeout"] == 3600 and element["comment"].startswith(f"{SQLI}/")
    assert lab.attack("sqli", timeout=1.5).timed_out, "blocked: the attacker's requests time out"
    assert lab.browse("attacker", timeout=1.5).timed_out
    assert lab.browse("benign").status == 200, "the benign host still gets its page"
    decision = decision_of(loop, SQLI)
    assert (decision["verdict"], decision["declared_level"], decision["effective_level"]) == ("execute", "L3", "L3")
    verified = loop.verified_block(SQLI)
    assert verified is not None and verified.payload["evidence"]["probe"]["blocked"]["connected"] is False
    assert verified.created_at.timestamp() > sent.started_at

    await loop.fast_forward(SQLI, TTL)
    final = await loop.result(SQLI)

    block = action_of(final, BLOCK)
    assert block is not None and block.status is ActionStatus.REVERTED, block
    assert lab.blocked_addresses() == []
    assert lab.browse("attacker").status == 200, "after the TTL the attacker reaches the site again"
    assert lab.attack("sqli").status == 403, "... and the WAF still stops its SQLi"
    assert status.alert_count == added[SQLI] and final.report is not None
    report = Path(final.report["markdown"]).read_text()
    for expected in (
        "942100",  # the CRS rule ids of the real alert
        "949110",
        "blast_radius",  # risk factors
        "asset_criticality",
        "revision `sha256:",  # policy revision
        "effective L3",
        f"a1 {BLOCK} verify (execute): ok",  # verification, with the probe's evidence
        "a1 network.unblock_ip verify (revert): ok",
        "| revert |",
    ):
        assert expected in report, expected
    assert loop.ledger.verify(SQLI).ok


# -- L2: approval first --------------------------------------------------------------------------------------


async def test_l2_waits_for_approval_and_blocks_after_autonomy_approve(loop: LabLoop) -> None:
    lab = loop.lab
    assert lab.attack("sqli").status == 403
    await loop.ingest_once(level=Level.L2)
    await loop.wait_block(SQLI, ActionStatus.AWAITING_APPROVAL)
    await asyncio.sleep(0.5)
    assert lab.blocklist() is None, "nothing applied while the approval is pending"
    assert lab.attack("xss").status == 403, "the attacker is not blocked yet (only the WAF stops it)"

    approve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "autonomy_controller.controller.cli", "approve", SQLI, BLOCK, "--as", "bob", "--comment", "WAF log checked",
        "--address", loop.address, "--json",
        env={**os.environ, "AUTONOMY_STATE_DIR": str(loop.settings.state_dir)},
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(approve.communicate(), timeout=60)
    assert approve.returncode == 0, err.decode()
    assert json.loads(out)["accepted"] is True

    await loop.wait_block(SQLI, ActionStatus.AWAITING_REVERT)
    assert lab.blocked_addresses() == [ATTACKER]
    assert lab.attack("sqli", timeout=1.5).timed_out
    assert lab.browse("benign").status == 200
    decision = decision_of(loop, SQLI)
    assert (decision["verdict"], decision["effective_level"]) == ("approve", "L2")
    report = loop.report_markdown(SQLI)
    assert "approval" in report and "bob" in report and f"a1 {BLOCK} verify (execute): ok" in report


# -- two incidents, one address: the block is handed over to the one whose TTL ends later ------------------


def block_of(status: IncidentStatus) -> ActionState:
    block = action_of(status, BLOCK)
    assert block is not None, status
    return block


async def _approve_block(loop: LabLoop, key: str) -> None:
    """bob approves the case's waiting block, in-process (the CLI's path is covered by the test above)."""
    status = await loop.wait_block(key, ActionStatus.AWAITING_APPROVAL)
    block = next(a for a in status.actions if a.action == BLOCK and a.status is ActionStatus.AWAITING_APPROVAL)
    vote = ApprovalVote(action_id=block.action_id, approver="bob", choice=VoteChoice.APPROVE, comment="checked")
    await cast_vote(loop.client, loop.ledger, key, vote)


async def test_a_shorter_rounds_revert_leaves_the_block_a_longer_round_took_over(loop: LabLoop) -> None:
    """The scanner hit is decided first (15 min block, approved), then the case's SQLi hit, sent before the block
    and read after it, makes the case due again: its second round asks 1 h for the same address, takes the nft
    element over, so the first round's TTL revert leaves it in place (its detail says so) and the attacker stays
    blocked until the second round's own revert lifts it. L2 so that each block waits for its approval."""
    lab = loop.lab
    assert lab.attack("scanner").status == 403
    assert await loop.ingest_once(level=Level.L2, expect=1) == {SQLI: 1}
    await loop.wait_block(SQLI, ActionStatus.AWAITING_APPROVAL)
    assert lab.attack("sqli").status == 403  # not blocked yet: its audit line waits in the log
    await _approve_block(loop, SQLI)
    await loop.wait_block(SQLI, ActionStatus.AWAITING_REVERT)
    (scanners,) = lab.blocklist() or []
    assert scanners["timeout"] == 900

    assert await loop.ingest_once(level=Level.L2, expect=1) == {SQLI: 1}  # the SQLi: a new category
    await _approve_block(loop, SQLI)
    status = await loop.wait_block(SQLI, ActionStatus.AWAITING_REVERT)
    first, second = (a for a in status.actions if a.action == BLOCK)
    assert (first.round, second.round, second.action_id, status.rounds) == (1, 2, "r2.a1", 2)

    (element,) = lab.blocklist() or []
    assert element["comment"].endswith(f"/{second.action_id}/execute") and element["timeout"] == 3600, element
    taken = network_executions(loop, SQLI)[-1]
    assert taken.payload["outcome"]["evidence"]["took_over_from"]["comment"] == scanners["comment"]

    await loop.fast_forward(SQLI, timedelta(seconds=905))
    handed = next(
        a
        for a in (await loop.wait_for(SQLI, lambda s: s.actions[0].status is ActionStatus.REVERTED)).actions
        if a.action_id == first.action_id
    )
    assert handed.detail.startswith("reverted after 900 s: left in place") and element["comment"] in handed.detail
    assert lab.blocked_addresses() == [ATTACKER], "the second round still needs the block: the first's revert left it"
    assert lab.browse("attacker", timeout=1.5).timed_out
    reverts = loop.ledger.records(SQLI, [RecordKind.REVERT])
    assert [r.payload["outcome"]["evidence"]["left_in_place"] for r in reverts] == [True]
    assert "a1 network.unblock_ip verify (revert): ok" in loop.report_markdown(SQLI)

    await loop.fast_forward(SQLI, TTL)
    final = await loop.result(SQLI)
    lifted = next(a for a in final.actions if a.action_id == second.action_id)
    assert lifted.status is ActionStatus.REVERTED and lifted.detail == "reverted after 3600 s"
    assert lab.blocked_addresses() == []
    assert lab.browse("attacker").status == 200


# -- L1: recommend only --------------------------------------------------------------------------------------


async def test_l1_only_recommends_and_nothing_reaches_nft(loop: LabLoop) -> None:
    lab = loop.lab
    assert lab.attack("sqli").status == 403
    await loop.ingest_once(level=Level.L1)
    status = await loop.wait_block(SQLI, ActionStatus.NOT_RUN)

    block = action_of(status, BLOCK)
    assert block is not None and block.verdict == "recommend"
    await asyncio.sleep(0.5)
    assert lab.blocklist() is None, "no table, no element: the adapter was never called"
    assert lab.browse("attacker").status == 200
    assert lab.attack("sqli").status == 403
    assert not network_executions(loop, SQLI)


# -- an allowlisted source -----------------------------------------------------------------------------------


async def test_an_allowlisted_source_is_denied_by_policy_and_nothing_is_applied(loop: LabLoop) -> None:
    lab = loop.lab
    key = f"src:{BENIGN}"
    assert lab.attack("sqli", source="benign").status == 403, "the partner monitor's odd request hits the WAF"
    assert await loop.ingest_once() == {key: 1}
    status = await loop.wait_block(key, ActionStatus.NOT_RUN)

    block = action_of(status, BLOCK)
    assert block is not None and block.verdict == "deny"
    decision = decision_of(loop, key)
    assert decision["effective_level"] == "L3", "denied by policy, not by a low level"
    assert any("partner-monitor" in reason or "allowlist" in reason for reason in decision["reasons"]), decision
    await asyncio.sleep(0.5)
    assert lab.blocklist() is None
    assert lab.browse("benign").status == 200
    assert not network_executions(loop, key)


# -- follow mode: rotation, a follower restart, a worker restart ---------------------------------------------


async def _wait_ingested(loop: LabLoop, key: str, count: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while loop.ingested.incidents.get(key, 0) < count:
        assert asyncio.get_running_loop().time() < deadline, f"ingested {loop.ingested.incidents}, wanted {count}"
        await asyncio.sleep(0.05)


def _attacks(lab: Lab, count: int) -> None:
    for _ in range(count):
        assert lab.attack("sqli").status == 403


async def test_follow_survives_rotation_and_restarts_without_losing_or_double_counting(loop: LabLoop) -> None:
    lab = loop.lab

    def follow() -> AbstractAsyncContextManager[None]:  # L1: nothing blocks the attacker meanwhile
        return loop.following(level=Level.L1, settle=0.2, quiet=600.0)

    async with follow():
        _attacks(lab, 3)
        await _wait_ingested(loop, SQLI, 3)
        _attacks(lab, 2)
        rotated = await asyncio.to_thread(lab.waf.rotate_audit_log, ".1")  # rename, restart nginx: a new file
        _attacks(lab, 2)
        await _wait_ingested(loop, SQLI, 7)
    assert sum(1 for _ in rotated.open()) == 5 and sum(1 for _ in lab.audit_log.open()) == 2

    # the follower is down: the log grows, rotates and grows again; the worker restarts meanwhile
    _attacks(lab, 2)
    await asyncio.to_thread(lab.waf.rotate_audit_log, ".2")
    await loop.stop_worker()
    _attacks(lab, 2)
    async with follow():  # resumes: the rest of audit.log.2, then the new audit.log
        await _wait_ingested(loop, SQLI, 11)
        await loop.start_worker()
        _attacks(lab, 1)
        await _wait_ingested(loop, SQLI, 12)
        status = await loop.wait_for(SQLI, lambda s: s.alert_count >= 12, timeout=30)

    notes = [note for flush in loop.ingested.flushes for note in flush.notes]
    assert any("rotated while not followed" in note for note in notes), notes
    assert loop.ingested.incidents == {SQLI: 12}, "every line submitted exactly once"
    alerts = loop.ledger.records(SQLI, [RecordKind.ALERT])
    assert len(alerts) == 12 and len({r.payload["id"] for r in alerts}) == 12
    assert status.alert_count == 12
    await asyncio.sleep(0.5)
    assert (await loop.status(SQLI)).alert_count == 12, "no alert counted twice by the workflow"


# -- three sensors: the WAF, Suricata (with an engine event) and nginx's access log reach the ledger -----------


async def test_suricata_alerts_engine_events_and_access_records_reach_the_ledger(loop: LabLoop) -> None:
    lab = loop.lab
    sent = ("sqli", "traversal", "cmdi", "scanner")
    assert [lab.attack(name).status for name in sent] == [403] * 4
    assert lab.browse("benign").status == 200, "what gets through: the application answers"
    send_undecodable_packet(lab.topology, sys.executable)
    # WAF: one alert per attack; Suricata: one per attack and the engine event; access log: every request.
    expected = {"modsecurity3": 4, "suricata": 5, "nginx-access": 5}
    added = await loop.ingest_once(level=Level.L1, expect=sum(expected.values()), logs=list(lab.sensor_logs.values()))

    alerts = [r.payload for key in added for r in loop.ledger.records(key, [RecordKind.ALERT])]
    assert Counter(a["source"] for a in alerts) == expected, added
    suricata = [a for a in alerts if a["source"] == "suricata"]
    assert {a["category"] for a in suricata if a["src_ip"] == ATTACKER} == {"sqli", "lfi", "rce", "scanner"}
    (engine,) = [a for a in suricata if a["src_ip"] is None]
    assert (engine["rule_ids"], engine["category"], engine["severity"]) == (["2200002"], "protocol", "low")
    access = {(a["src_ip"], a["signature"]) for a in alerts if a["source"] == "nginx-access"}
    assert access == {(ATTACKER, "HTTP 403 before the application"), (BENIGN, "HTTP 200 from the application")}
    assert not loop.settings.dead_letter_path.exists(), "real sensor output is never dead-lettered"


# -- `autonomy lab up|attack|status|down`: separate processes, and nothing left behind -----------------------


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autonomy_controller.controller.cli", "lab", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
    )


def _root_tables() -> str:
    nft = find_binary("nft")
    assert nft is not None
    return subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=True).stdout


SENSOR_DEFAULT_DIRS = ("/var/log/suricata", "/run/suricata", "/var/lib/suricata", "/var/log/nginx", "/run/nginx.pid")
"""Where Debian's Suricata and nginx write when run with their packaged configs: the lab's must not."""


def _outside_files() -> dict[str, list[str]]:
    return {
        d: sorted(str(p) for p in Path(d).rglob("*")) if Path(d).is_dir() else [d] * Path(d).exists()
        for d in SENSOR_DEFAULT_DIRS
    }


def test_lab_up_blocks_a_real_attack_and_lab_down_leaves_nothing(tmp_path: Path) -> None:
    _lab_available()
    sweep_stale("e2d")
    root = tmp_path / "cli-lab"
    where = ["--root", str(root)]
    tables_before = _root_tables()
    outside_before = _outside_files()
    try:
        up = _cli(
            "up", *where, "--prefix", prefix("e2d"), "--temporal-port", str(free_port()), "--settle", "0.5", "--json"
        )
        assert up.returncode == 0, up.stderr
        state = json.loads(up.stdout.splitlines()[-1])["status"]
        assert state["up"], state

        # a tool-driven attack: what L3 contains alone (one stray hit waits for a person: test_lab_triage.py)
        attack = _cli("attack", "tool", *where, "--json")
        assert attack.returncode == 0 and json.loads(attack.stdout)["status"] == 403, attack.stdout + attack.stderr
        deadline = time.monotonic() + 60
        blocked: list[Any] = []
        while not blocked:
            assert time.monotonic() < deadline, "no block within 60 s"
            blocked = json.loads(_cli("status", *where, "--json").stdout)["nft"]["blocked"]
        assert [e["val"] for e in blocked] == [ATTACKER]
        dropped = _cli("attack", "sqli", *where, "--timeout", "1", "--json")
        assert dropped.returncode == 1 and json.loads(dropped.stdout)["timed_out"] is True

        state = json.loads(_cli("status", *where, "--json").stdout)
        pids = {s["name"]: (s["pid"], start_time(s["pid"])) for s in [state["nginx"], state["ids"], *state["services"]]}
        services = {"nginx", "suricata", "temporal", "worker", "follow", "follow-ids", "follow-access"}
        assert set(pids) == services and all(p for p, _ in pids.values())
        assert all(log["lines"] for log in state["sensor_logs"].values()), "every sensor wrote what it saw"
        namespaces = list(state["namespaces"])
        inodes = [namespace_inode(ns) for ns in namespaces]
        workers = run_ip("netns", "pids", namespaces[0]).stdout.split()
        assert workers, "nginx runs inside the victim namespace"

        down = _cli("down", *where, "--json")
        assert down.returncode == 0, down.stdout + down.stderr
        assert json.loads(down.stdout)["clean"] is True
    finally:
        Lab(load_config(root)).down()

    assert not set(namespaces) & existing_namespaces(), "no lab namespace is left"
    assert all(inode is not None and not processes_in_inode(inode) for inode in inodes), "nor a process inside one"
    for name, (pid, started) in pids.items():  # a zombie awaiting its reaper is dead, not running
        assert not alive(pid) or start_time(pid) != started, f"{name} (pid {pid}) still runs"
    for pid in map(int, workers):
        assert not alive(pid), f"process {pid} of the victim namespace still runs"
    assert _root_tables() == tables_before, "the lab made no nft table in the root namespace"
    assert _outside_files() == outside_before, "the sensors wrote nothing outside the lab folder"
    status = json.loads(_cli("status", *where, "--json").stdout)
    assert not status["up"] and not any(status["namespaces"].values()) and status["nft"]["blocked"] == []
