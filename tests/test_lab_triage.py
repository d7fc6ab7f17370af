"""Triage governs what L3 contains alone, on the real loop in the lab (issue 12).

Real: nginx + ModSecurity v3 + CRS 3.3.4 (PL1) in the victim namespace, requests from the attacker namespace
(curl, and the replay client from addresses of its own), the audit log, the follow ingest, the workflow at the
scope's level (web-01 is production: L3), the policy, nft and the adapter's probe. In-process as in
tests/test_lab_e2e.py (controller/lab/loop.py); no timer is skipped here. Needs root; namespaces `tri<pid>-*`,
torn down in a finally.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.lab import Lab
from autonomy_controller.controller.lab.loop import BLOCK, LabLoop, action_of, block_status, lab_loop
from autonomy_controller.controller.lab.manifest import alerts_of
from autonomy_controller.controller.lab.replay import replay, wait_quiet
from autonomy_controller.controller.lab.requests import read_requests
from autonomy_controller.controller.lab.sessions import assign
from autonomy_controller.controller.lab.tool_attack import TOOL_ATTACK, send_tool_attack
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStart, IncidentStatus
from tests.test_lab_e2e import running_lab

pytestmark = pytest.mark.lab

ATTACKER = "198.51.100.66"
ANOMALOUS = Path(__file__).parent / "data" / "csic" / "anomalousTrafficSample.txt"
SETTLE = float(IncidentStart.model_fields["settle_seconds"].default)
"""The workflow's own settle window: what `ingest --follow` uses unless told otherwise."""
DECIDING = ("collecting", "planning", "guarding")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), "tri") as lab:
        yield lab


@pytest.fixture
async def loop(lab: Lab, tmp_path: Path) -> AsyncIterator[LabLoop]:
    lab.clear_blocks()
    lab.waf.truncate_audit_log()
    try:
        async with lab_loop(lab, Settings(state_dir=tmp_path / "var")) as running:
            yield running
    finally:
        lab.clear_blocks()


def block_decision(loop: LabLoop, key: str) -> dict[str, Any] | None:
    decisions = loop.ledger.records(key, [RecordKind.DECISION])
    return next((r.payload for r in decisions if r.payload.get("action") == BLOCK), None)


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _audit_lines_until(path: Path, needle: bytes, timeout: float = 30) -> list[bytes]:
    """The audit log's lines once one holds `needle` and the file stopped growing: nginx writes a request's audit
    line after answering it, so a busy machine may show the answer before the line (a wait, not a timing check)."""
    deadline = time.monotonic() + timeout
    while needle not in path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_quiet(path)
    return path.read_bytes().splitlines()


def decided(status: IncidentStatus) -> bool:
    """Planned and guarded, and the block (when there is one) past `planned`: what happens to it is settled."""
    return status.phase not in DECIDING and block_status(status) is not ActionStatus.PLANNED


async def test_a_single_pl1_hit_from_a_new_address_is_never_blocked_alone_at_l3(loop: LabLoop, tmp_path: Path) -> None:
    """One CSIC attack request from each of 12 new addresses, and the lab's strongest single hit (a libinjection
    SQLi over CRS's threshold) from another: every incident is one request, and none is blocked without a person."""
    lab = loop.lab
    sessions = assign(read_requests(ANOMALOUS), 12, 12, run_length=1, attack_run_length=1)
    manifest, _ = replay(lab, sessions, timeout=1.0, manifest_path=tmp_path / "replay.json")
    hits = Counter(alert.src_ip for alert, _ in alerts_of(manifest).alerts)
    assert hits and set(hits.values()) == {1}, f"one request, at most one alert per address: {hits}"
    assert lab.attack("sqli").status == 403

    # Every audit line becomes an alert, also one that is not valid UTF-8 (ModSecurity writes a matched value
    # URL-decoded, so %F3 in a query becomes a raw byte: ingest shows it as \xf3 and says so, never drops it).
    lines = _audit_lines_until(lab.audit_log, f'"client_ip":"{ATTACKER}"'.encode())
    assert any(not _utf8(line) for line in lines), "the replay holds a line that is not UTF-8 (the case to cover)"
    added = await loop.ingest_once(level=Level.L3, settle=SETTLE, expect=len(lines), timeout=30)
    assert sum(added.values()) == len(lines) and f"src:{ATTACKER}" in added

    for key in added:
        status = await loop.wait_for(key, decided, timeout=SETTLE + 30)
        block = action_of(status, BLOCK)
        decision = block_decision(loop, key)
        print(f"{key}: playbook {status.playbook}, block {block.verdict if block else None}, "
              f"triage {decision['triage'] if decision else None}")  # fmt: skip
        if block is None:  # noise, or a playbook without containment: nothing to contain
            continue
        assert decision is not None and decision["verdict"] != "execute", (key, decision)
        assert block.status in (ActionStatus.AWAITING_APPROVAL, ActionStatus.NOT_RUN), (key, block)
        assert decision["triage"]["confidence"] <= 0.6, "one request is never a confident verdict"
        if block.status is ActionStatus.AWAITING_APPROVAL:
            assert decision["effective_level"] == "L3" and any("triage says" in r for r in decision["reasons"])
    assert lab.blocklist() is None, "nothing reached nft"
    assert lab.browse("attacker").status == 200


async def test_a_tool_driven_attack_is_blocked_alone_at_l3_once_the_workflow_settles(loop: LabLoop) -> None:
    """36 payloads across four classes from one address, ingested as `ingest --follow` does while it comes in:
    the attacker's case (36 requests, four classes) is malicious with confidence, and L3 blocks the source alone."""
    lab = loop.lab
    key = f"src:{ATTACKER}"
    async with loop.following(level=Level.L3, settle=SETTLE, quiet=60.0):
        began = time.time()
        answers = Counter(result.status for result in send_tool_attack(lab))
        assert answers == {403: len(TOOL_ATTACK)}, answers
        status = await loop.wait_block(key, ActionStatus.AWAITING_REVERT, timeout=SETTLE + 10)
    verified = loop.verified_block(key)
    assert verified is not None
    print(f"tool-driven attack: first request to verified block {verified.created_at.timestamp() - began:.2f} s "
          f"(settle {SETTLE:g} s)")  # fmt: skip

    decision = block_decision(loop, key)
    assert decision is not None and (decision["verdict"], decision["effective_level"]) == ("execute", "L3")
    assert decision["triage"]["verdict"] == "malicious" and decision["triage"]["confidence"] >= 0.8
    assert status.alert_count >= 10
    assert lab.blocked_addresses() == [ATTACKER]
    assert verified.payload["evidence"]["probe"]["blocked"]["connected"] is False
    assert lab.attack("sqli", timeout=1.5).timed_out, "blocked: the attacker's requests time out"
    assert lab.browse("benign").status == 200
