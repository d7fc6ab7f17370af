"""The Claude planner's odd answers in the real loop (Temporal, the ledger, the guard): the level's fallback plans,
the ledger keeps why and the transcript, and the report says whose plan ran.

A Messages API body with `NaN` in it is JSON to Python's decoder (the SDK's) but not to the ledger's canonical
encoding: the transcript of such an answer could not be stored, so the plan activity failed on every attempt
and the incident got no plan at all instead of the level's fallback.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.ledger.records import LedgerRecord
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.reports import build_report, render_markdown
from autonomy_controller.workflows.contracts import ActionStatus
from tests.claude_fake import FakeAPI, act, propose
from tests.harness import ATTACKER, alert, running_loop
from tests.test_workflow_claude import claude


def nan_answer() -> httpx2.Response:
    answer = propose(act("network.block_ip", confidence=0.25, ip=ATTACKER, ttl_seconds=3600))
    text = json.dumps(answer).replace('"confidence": 0.25', '"confidence": NaN')
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "application/json"})


async def _fallback_incident(config_copy: Settings) -> tuple[dict[str, Any], list[LedgerRecord], str]:
    """An L2 incident whose Claude answer carries NaN: the plan record, the transcripts and the report."""
    api = FakeAPI(nan_answer())
    async with running_loop(config_copy, claude=claude(), claude_client=api.client()) as loop:
        (key,) = await loop.submit([alert(1)], level=Level.L2)
        final = await loop.wait_for(key, lambda s: any(a.status is ActionStatus.VERIFIED for a in s.actions))
        assert final.planner == "offline"
        plans = loop.ledger.records(key, [RecordKind.PLAN])
        transcripts = loop.ledger.records(key, [RecordKind.TRANSCRIPT])
        report = render_markdown(build_report(key, loop.ledger.records(key)))
    assert len(plans) == 1 and len(transcripts) == 1
    return plans[0].payload, transcripts, report


async def test_an_answer_with_nan_falls_back_and_its_transcript_is_kept(config_copy: Settings) -> None:
    plan, [transcript], _report = await _fallback_incident(config_copy)
    assert (plan["planner"], plan["planner_outcome"], plan["planner_error"]) == (
        "offline",
        "fallback_offline",
        "response_invalid",
    )
    assert "NaN is not JSON" in plan["planner_reason"] and plan["transcript_seq"] == transcript.seq
    assert "NaN" in transcript.payload["response"]["unparsed_body"]  # the answer as sent, as text


async def test_the_report_says_why_claudes_plan_was_not_used(config_copy: Settings) -> None:
    _plan, _transcripts, report = await _fallback_incident(config_copy)
    assert "- plan: offline" in report
    assert "fallback_offline" in report and "NaN is not JSON" in report
