"""The audit trail on a real incident: real dev server, real worker, real ledger, then the trail joined from both.

The incident is the one an auditor asks most about: an L2 block that needed a person. A stranger's vote is
refused, bob's unsigned vote approves it, the firewall refuses the first attempt (Temporal retries), the block
is verified, and the TTL timer reverts it. The alert evidence carries markup, as attacker-controlled text does.
Disagreements are made the way they happen: a ledger record Temporal never saw, a history missing events, a
ledger edited to claim a signed vote, a run Temporal no longer has.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from temporalio.testing import TimeSkipper
from typer.testing import CliRunner

from autonomy_controller.actions.adapters.base import (
    ActionOutcome,
    ActionRequest,
    Adapter,
    TransientAdapterError,
    VerifyOutcome,
)
from autonomy_controller.controller.cli.trail import audit_trail, collect_trail, trail_from_export
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import LedgerRecord, RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.trail import (
    ActionTrail,
    Cite,
    Fact,
    Source,
    StepKind,
    Tone,
    Trail,
    build_trail,
    read_histories,
    render_html,
    render_markdown,
)
from autonomy_controller.workflows.approvals import VoteRefused
from autonomy_controller.workflows.client import cast_vote, incident_handle
from autonomy_controller.workflows.contracts import ActionStatus
from autonomy_controller.workflows.devserver import TIME_SKIPPING_FLAG, DevServer
from autonomy_controller.workflows.operations import export_audit, workflow_histories
from tests.browser import read_png, screenshot
from tests.doubles import FakeEnforcement
from tests.harness import Loop, action_of, alert, awaiting, burst, running_loop, vote

BLOCK = "network.block_ip"
ATTACK = "GET /?q=<script>alert(1)</script><img src=x onerror=alert(2)> UNION SELECT password FROM users"
FIREWALL_DOWN = "firewall API: connection refused"


@dataclass
class FlakyFirewall(FakeEnforcement):
    """The enforcement point refuses the first block (it is restarting): Temporal retries the activity."""

    refusals_left: int = 1
    refused: list[str] = field(default_factory=list)

    def adapters(self) -> dict[str, Adapter]:
        adapters = super().adapters()
        adapters[BLOCK] = _RefusesFirst(self, adapters[BLOCK])
        return adapters


@dataclass
class _RefusesFirst:
    firewall: FlakyFirewall
    inner: Adapter
    action: str = BLOCK

    def execute(self, request: ActionRequest) -> ActionOutcome:
        with self.firewall.lock:
            if self.firewall.refusals_left:
                self.firewall.refusals_left -= 1
                self.firewall.refused.append(request.idempotency_key)
                raise TransientAdapterError(FIREWALL_DOWN)
        return self.inner.execute(request)

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        return self.inner.verify(request, outcome)


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy, FlakyFirewall()) as running:
        yield running


@dataclass
class Incident:
    key: str
    address: str
    trail: Trail
    records: list[LedgerRecord]
    histories: dict[str, Any]

    def seqs(self, kind: RecordKind, action_id: str | None = None, **payload: object) -> list[int]:
        """Seqs of this kind (of one action, by id), whose payload has these values."""
        return [
            r.seq
            for r in self.records
            if r.kind is kind
            and action_id in (None, r.payload.get("action_id") or (r.payload.get("request") or {}).get("action_id"))
            and all(r.payload.get(k) == v for k, v in payload.items())
        ]

    def events(self) -> dict[int, str]:
        """Event id -> type of the (single) run's history, to check what each history cite points at."""
        (run,) = self.histories["runs"]
        return {int(e["eventId"]): e["eventType"].removeprefix("EVENT_TYPE_") for e in run["history"]["events"]}


async def approved_block(loop: Loop) -> Incident:
    """Drive the L2 incident to its revert and build its trail the way `autonomy audit trail` does."""
    (key,) = await loop.submit([alert(1, evidence=ATTACK), alert(2)], level=Level.L2)
    block = action_of(await awaiting(loop, key), BLOCK)
    with pytest.raises(VoteRefused, match="not in an approver group"):
        await cast_vote(loop.client, loop.ledger, key, vote("alice", action_id=block.action_id))
    await cast_vote(loop.client, loop.ledger, key, vote("bob", action_id=block.action_id))
    await loop.wait_for(key, lambda s: action_of(s, BLOCK).status is ActionStatus.AWAITING_REVERT)
    await TimeSkipper(loop.client).fast_forward(incident_handle(loop.client, key), timedelta(hours=1, seconds=5))
    assert action_of(await loop.result(key), BLOCK).status is ActionStatus.REVERTED
    address = loop.client.service_client.config.target_host
    trail = await collect_trail(loop.ledger, key, address)
    return Incident(key, address, trail, loop.ledger.records(key), await workflow_histories(address, key))


def block_of(trail: Trail) -> ActionTrail:
    return next(a for a in trail.actions if a.action == BLOCK)


def fact(facts: list[Fact], starts: str) -> Fact:
    found = [f for f in facts if f.text.startswith(starts)]
    assert len(found) == 1, (starts, [f.text for f in facts])
    return found[0]


def refs(cites: list[Cite], source: Source) -> list[int]:
    return [c.ref for c in cites if c.source is source]


def all_cites(trail: Trail) -> Iterator[Cite]:
    for action in trail.actions:
        for step in action.steps:
            for item in step.facts:
                yield from item.cites
        for problem in action.disagreements:
            yield from problem.cites
    for note in trail.notes:
        yield from note.cites


# -- the narrative ----------------------------------------------------------------------------------------


async def test_the_trail_tells_why_the_block_ran_step_by_step_citing_both_sources(loop: Loop) -> None:
    incident = await approved_block(loop)
    trail, events = incident.trail, incident.events()
    assert trail.history.available and trail.ledger.ok and trail.disagreement_count == 0, trail.disagreements
    block = block_of(trail)
    assert [s.kind for s in block.steps] == [
        StepKind.EVIDENCE,
        StepKind.PROPOSAL,
        StepKind.RISK,
        StepKind.DECISION,
        StepKind.APPROVAL,
        StepKind.PREFLIGHT,
        StepKind.EXECUTION,
        StepKind.VERIFICATION,
        StepKind.REVERT,
    ]
    assert (block.verdict, block.outcome) == ("approve", "reverted")
    (run,) = trail.history.runs
    assert block.run_id == run.run_id and run.status == "COMPLETED" and "level L2" in (run.requested or "")
    timestamps = [s.at for s in block.steps if s.at is not None]
    assert timestamps == sorted(timestamps)  # in the order it happened

    # every citation points at something real: a ledger record of this incident, an event of its history
    seqs = {r.seq for r in incident.records}
    for cite in all_cites(trail):
        assert cite.ref in (seqs if cite.source is Source.LEDGER else events), cite

    evidence = block.step(StepKind.EVIDENCE)
    assert evidence is not None and evidence.grid is not None
    alerts = incident.seqs(RecordKind.ALERT)
    assert refs(evidence.facts[0].cites, Source.LEDGER) == alerts
    assert [int(row[0]) for row in evidence.grid.rows] == alerts
    assert any("<script>" in cell for row in evidence.grid.rows for cell in row)  # kept verbatim, escaped on output
    (planned,) = refs(fact(evidence.facts, "which alerts").cites, Source.HISTORY)
    assert events[planned] == "ACTIVITY_TASK_SCHEDULED"

    proposal = block.step(StepKind.PROPOSAL)
    assert proposal is not None
    (plan,) = incident.seqs(RecordKind.PLAN)
    assert refs(fact(proposal.facts, f"{BLOCK} proposed by planner offline").cites, Source.LEDGER) == [plan]

    (decision_seq,) = incident.seqs(RecordKind.DECISION, action=BLOCK)
    decision = next(r for r in incident.records if r.seq == decision_seq).payload
    risk = block.step(StepKind.RISK)
    assert risk is not None and risk.grid is not None
    assert [row[0] for row in risk.grid.rows] == [f["name"] for f in decision["risk"]["factors"]]
    policy = block.step(StepKind.DECISION)
    assert policy is not None and policy.marks[0].text == "approve"
    revision = fact(policy.facts, "policy revision")
    assert decision["policy_revision"] in revision.text and refs(revision.cites, Source.LEDGER) == [decision_seq]
    guard = fact(policy.facts, "Temporal: guard_plan")
    assert [events[e] for e in refs(guard.cites, Source.HISTORY)] == ["MARKER_RECORDED"]

    approvals = block.step(StepKind.APPROVAL)
    assert approvals is not None
    bob = fact(approvals.facts, "bob voted approve")
    assert [(m.text, m.tone) for m in bob.marks] == [("UNSIGNED", Tone.BAD)]
    assert refs(bob.cites, Source.LEDGER) == incident.seqs(RecordKind.APPROVAL, event="vote", approver="bob")
    assert {events[e] for e in refs(bob.cites, Source.HISTORY)} == {
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED",
        "MARKER_RECORDED",  # the `record` local activity that wrote the vote to the ledger
    }
    alice = fact(approvals.facts, "alice tried to vote approve")
    assert [m.text for m in alice.marks] == ["refused"] and not refs(alice.cites, Source.HISTORY)
    assert refs(alice.cites, Source.LEDGER) == incident.seqs(RecordKind.APPROVAL, event="vote_refused")
    settled = fact(approvals.facts, "approved: by bob")
    assert "after the decision" in settled.text
    assert refs(settled.cites, Source.LEDGER) == incident.seqs(RecordKind.APPROVAL, event="approved")

    execution = block.step(StepKind.EXECUTION)
    assert execution is not None
    executed = incident.seqs(RecordKind.EXECUTION, block.action_id)
    assert refs(fact(execution.facts, f"ran {BLOCK}").cites, Source.LEDGER) == executed
    ran = fact(execution.facts, "Temporal: execute (execute_action)")
    assert "retried: 2 attempts" in [m.text for m in ran.marks]
    assert [events[e] for e in refs(ran.cites, Source.HISTORY)] == [
        "ACTIVITY_TASK_SCHEDULED",
        "ACTIVITY_TASK_STARTED",
        "ACTIVITY_TASK_COMPLETED",
    ]
    assert fact(execution.facts, "Temporal: attempt 1 failed").code == FIREWALL_DOWN
    verification = block.step(StepKind.VERIFICATION)
    assert verification is not None
    checked = incident.seqs(RecordKind.VERIFICATION, action=BLOCK, purpose="execute")
    assert refs(fact(verification.facts, f"checked {BLOCK}").cites, Source.LEDGER) == checked

    revert = block.step(StepKind.REVERT)
    assert revert is not None and [m.text for m in revert.marks] == ["undone and verified"]
    timer = fact(revert.facts, "Temporal: TTL timer of 1 h 0 min")
    assert [events[e] for e in refs(timer.cites, Source.HISTORY)] == ["TIMER_STARTED", "TIMER_FIRED"]
    reverted = incident.seqs(RecordKind.REVERT, block.action_id)
    assert refs(fact(revert.facts, "ran network.unblock_ip").cites, Source.LEDGER) == reverted
    assert "UNSIGNED" in block.summary and "Outcome: reverted" in block.summary

    ticket = next(a for a in trail.actions if a.action == "ticket.create")
    assert ticket.step(StepKind.APPROVAL) is None and ticket.outcome == "verified" and not ticket.disagreements
    assert any("TTL of" in t.text and BLOCK in t.text for t in run.timers)


async def test_markdown_and_html_mark_the_unsigned_vote_and_escape_the_evidence(loop: Loop) -> None:
    trail = (await approved_block(loop)).trail
    markdown, page = render_markdown(trail), render_html(trail)
    assert "**UNSIGNED**" in markdown and "**refused**" in markdown
    assert re.search(r"1\. \*\*Alert evidence\*\*.*2\. \*\*Proposal\*\*.*9\. \*\*Revert\*\*", markdown, re.S)
    outside_code = re.sub(r"(`+) .*? \1", "", markdown)
    assert "<script" not in outside_code and "<img" not in outside_code and "&lt;script&gt;" in outside_code
    assert '<span class="badge bad">UNSIGNED</span>' in page
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('<ol class="steps">') == len(trail.actions)


async def test_a_block_that_did_not_stick_reads_as_verified_false_then_compensated(config_copy: Settings) -> None:
    async with running_loop(config_copy, FakeEnforcement(fail_verify={BLOCK})) as loop:
        (key,) = await loop.submit(burst(), level=Level.L3)
        assert action_of(await loop.result(key), BLOCK).status is ActionStatus.COMPENSATED
        trail = await collect_trail(loop.ledger, key, loop.client.service_client.config.target_host)
    block = block_of(trail)
    assert [s.kind for s in block.steps] == [
        StepKind.EVIDENCE,
        StepKind.PROPOSAL,
        StepKind.RISK,
        StepKind.DECISION,
        StepKind.PREFLIGHT,
        StepKind.EXECUTION,
        StepKind.VERIFICATION,
        StepKind.COMPENSATION,
    ]  # L3 executes alone: no approval step, and no TTL revert of an effect that was undone
    assert (block.verdict, block.outcome, block.outcome_tone) == ("execute", "compensated", Tone.OK)
    verification = block.step(StepKind.VERIFICATION)
    assert verification is not None and [m.text for m in verification.marks] == ["VERIFICATION FAILED"]
    compensation = block.step(StepKind.COMPENSATION)
    assert compensation is not None and [m.text for m in compensation.marks] == ["undone and verified"]
    assert fact(compensation.facts, "Temporal: compensate (execute_action)").cites
    assert trail.disagreement_count == 0 and trail.ledger.ok


# -- disagreements and absence ----------------------------------------------------------------------------


def _without_events(histories: dict[str, Any], drop: set[int]) -> dict[str, Any]:
    document = copy.deepcopy(histories)
    for run in document["runs"]:
        run["history"]["events"] = [e for e in run["history"]["events"] if int(e["eventId"]) not in drop]
    return document


async def test_the_trail_names_each_place_the_ledger_and_the_history_disagree(loop: Loop) -> None:
    incident = await approved_block(loop)
    records, histories = incident.records, incident.histories
    verified = loop.ledger.verify(incident.key)
    run = block_of(incident.trail).run_id
    assert run is not None

    # the history lost the revert: the ledger says it ran, Temporal never saw it finish
    (history,) = read_histories(histories)
    (undo,) = [a for a in history.activities if a.name == "execute_action" and a.target == ("a1", "revert")]
    lost = {undo.scheduled, undo.started or 0, undo.closed or 0}
    trail = build_trail(incident.key, records, _without_events(histories, lost), verified)
    (problem,) = block_of(trail).disagreements
    assert refs(problem.cites, Source.LEDGER) == incident.seqs(RecordKind.REVERT)
    assert "never saw this step finish" in problem.text
    assert block_of(trail).outcome == "reverted"  # the ledger's story is still told, with the gap flagged

    # the history lost the vote update: the ledger holds a vote Temporal never accepted
    accepted = {e for e, kind in incident.events().items() if kind.startswith("WORKFLOW_EXECUTION_UPDATE_")}
    (problem,) = block_of(
        build_trail(incident.key, records, _without_events(histories, accepted), verified)
    ).disagreements
    assert "vote by bob that Temporal never accepted" in problem.text

    # a ledger edited (around the database) to claim the vote carried a verified token
    forged = [
        r.model_copy(update={"payload": {**r.payload, "signed": True, "key_id": "k-2026-01"}})
        if r.payload.get("event") == "vote"
        else r
        for r in records
    ]
    block = block_of(build_trail(incident.key, forged, histories, verified))
    approvals = block.step(StepKind.APPROVAL)
    assert approvals is not None
    assert [m.text for m in fact(approvals.facts, "bob voted approve").marks] == ["signed", "key k-2026-01"]
    (problem,) = block.disagreements
    assert "approve/signed in the ledger but approve/unsigned in the history" in problem.text

    # a record written for this run that no activity of the run ever returned (a worker acting on its own)
    rogue = loop.ledger.append(
        incident.key,
        RecordKind.EXECUTION,
        "svc:controller",
        {"request": {"action_id": "a1", "action": BLOCK, "purpose": "execute"}, "outcome": {"status": "done"}},
        idempotency_key=f"{incident.key}/{run}/a1/execute-again",
    )
    trail = await collect_trail(loop.ledger, incident.key, incident.address)
    (problem,) = block_of(trail).disagreements
    assert refs(problem.cites, Source.LEDGER) == [rogue.seq] and "never saw this step finish" in problem.text
    assert trail.ledger.ok  # appended through the ledger: the chain holds, only the join exposes it

    # Temporal kept another run only: every ledger run it lacks is named, and the stranger run too
    elsewhere = copy.deepcopy(histories)
    elsewhere["runs"][0]["run_id"] = "0000-other-run"
    trail = build_trail(incident.key, records, elsewhere, verified)
    texts = [d.text for d in trail.disagreements]
    assert any(f"run {run}, which Temporal does not have" in t for t in texts), texts
    assert any("Temporal has run 0000-other-run" in t for t in texts), texts


async def test_without_the_history_the_trail_is_told_from_the_ledger_and_says_why(loop: Loop) -> None:
    incident = await approved_block(loop)
    unreachable = await collect_trail(loop.ledger, incident.key, "127.0.0.1:1")
    assert not unreachable.history.available
    assert "cannot reach Temporal at 127.0.0.1:1" in (unreachable.history.reason or "")
    with DevServer(extra_args=TIME_SKIPPING_FLAG) as other:  # Temporal answers, but has no such workflow any more
        forgotten = await collect_trail(loop.ledger, incident.key, other.address)
    assert not forgotten.history.available
    assert f"Temporal has no workflow for incident {incident.key}" in (forgotten.history.reason or "")

    for trail in (unreachable, forgotten):
        assert [(a.action_id, a.outcome) for a in trail.actions] == [
            (a.action_id, a.outcome) for a in incident.trail.actions
        ]
        assert [s.kind for s in block_of(trail).steps] == [s.kind for s in block_of(incident.trail).steps]
        assert not [c for c in all_cites(trail) if c.source is Source.HISTORY]
        assert trail.disagreement_count == 0  # nothing to compare with is not agreement: the renderers say so
        evidence = block_of(trail).step(StepKind.EVIDENCE)
        assert evidence is not None and "inferred" in [m.text for f in evidence.facts for m in f.marks]
        markdown = render_markdown(trail)
        assert "ABSENT" in markdown and "not checked (no workflow history)" in markdown
        assert "**UNSIGNED**" in markdown


# -- the command and the page in a browser ----------------------------------------------------------------

cli = typer.Typer()
cli.command("trail")(audit_trail)


@cli.callback()
def _group() -> None:
    """Keep `trail` a subcommand, as under `autonomy audit`."""


async def test_the_command_writes_the_files_and_the_page_renders(loop: Loop, tmp_path: Path) -> None:
    incident = await approved_block(loop)
    env = {"AUTONOMY_STATE_DIR": str(loop.settings.state_dir), "AUTONOMY_LEDGER_URL": None}
    out = tmp_path / "trail"

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["trail", *args], env=env)

    result = await asyncio.to_thread(run, incident.key, "--out", str(out), "--address", incident.address)
    assert result.exit_code == 0, result.output
    name = incident.key.replace(":", "_")
    assert result.stdout.split() == ["trail:", str(out / f"{name}.trail.md"), "trail:", str(out / f"{name}.trail.html")]
    assert "**UNSIGNED**" in (out / f"{name}.trail.md").read_text()

    as_json = await asyncio.to_thread(run, incident.key, "--format", "md", "--json", "--address", "127.0.0.1:1")
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.stdout)
    assert document["files"] == [str(loop.settings.reports_dir / f"{name}.trail.md")]
    assert document["trail"]["format"] == "autonomy-audit-trail/1" and not document["trail"]["history"]["available"]
    assert "workflow history absent" in as_json.stderr

    unknown = await asyncio.to_thread(run, "src:203.0.113.250", "--address", incident.address)
    assert unknown.exit_code == 1 and "no records for incident" in unknown.stderr

    png = screenshot(out / f"{name}.trail.html", tmp_path / "trail.png", width=1280, height=2400)
    image = read_png(png)
    assert image.non_white_share > 0.04  # a page, not a blank
    assert image.pixels_of("#c62828") > 100  # the red UNSIGNED badge
    assert image.pixels_of("#2e7d32") > 100  # the green chain-OK / verified badges
    assert image.pixels_of("#f9a825") > 100  # the amber approve verdict


async def test_an_audit_export_alone_gives_the_same_trail_and_a_tampered_one_fails(loop: Loop, tmp_path: Path) -> None:
    incident = await approved_block(loop)
    document = await export_audit(loop.settings, loop.ledger, incident.key, incident.address)
    exported = tmp_path / "export.json"
    exported.write_text(json.dumps(document, default=str))

    offline = trail_from_export(exported, incident.key)  # no ledger database, no Temporal
    assert offline.history.available and offline.ledger.ok and offline.disagreement_count == 0
    assert [(a.action_id, [s.kind for s in a.steps]) for a in offline.actions] == [
        (a.action_id, [s.kind for s in a.steps]) for a in incident.trail.actions
    ]

    vote_record = next(r for r in document["ledger"]["records"] if r["payload"].get("event") == "vote")
    vote_record["payload"]["approver"] = "carol"  # someone rewrites who approved
    exported.write_text(json.dumps(document, default=str))
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "elsewhere")}
    args = ["trail", incident.key, "--from-export", str(exported), "--out", str(tmp_path)]
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
    assert result.exit_code == 1, result.output
    assert "content_edited" in result.stderr, result.stderr
