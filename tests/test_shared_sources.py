"""An address many people may share (a NAT, a proxy) is blocked only with a person: the sensors had known it for
days before its case, much of its traffic answered by the application (controller/attackers/standing.py,
policies/guardrails/network.rego). On every engine, and through the real loop from a real attacker profile.

The standing only ever asks a person: a source without it (a new address, a quiet one) is blocked as before.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autonomy_controller.controller.attackers import AttackerStore
from autonomy_controller.controller.attackers.standing import source_standing
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level, SourceStanding, Verdict
from tests.factories import make_incident
from tests.harness import ATTACKER, Loop, action_of, burst, running_loop
from tests.test_attackers import lines, parsed
from tests.test_guard_entities import ENGINES, decide, veto_window

SHARED = "a NAT, a proxy"
BLOCK = {"ip": ATTACKER}


def standing(days: int, answered: int, address: str = ATTACKER) -> list[SourceStanding]:
    return [SourceStanding(address=address, known_days=days, answered=answered)]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_block_of_a_long_known_busy_source_waits_for_a_person(guards: dict[str, Guard], engine: str) -> None:
    guard, incident = guards[engine], make_incident(count=10)
    shared = decide(guard, incident, "network.block_ip", BLOCK, standing=standing(9, 120))
    assert shared.verdict is Verdict.APPROVE and not veto_window(shared), shared.reasons
    assert any(f"had known {ATTACKER} for 9 day(s) before this case, 120 of its requests" in r for r in shared.reasons)
    assert shared.standing == standing(9, 120)  # in the decision: pre-flight decides again on it
    for days, answered in ((6, 5000), (30, 49)):  # new this week, or barely answered: nothing to ask about
        alone = decide(guard, incident, "network.block_ip", BLOCK, standing=standing(days, answered))
        assert alone.verdict is Verdict.EXECUTE and not any(SHARED in r for r in alone.reasons), alone.reasons
    other = decide(guard, incident, "network.block_ip", BLOCK, standing=standing(90, 10_000, "203.0.113.7"))
    assert other.verdict is Verdict.EXECUTE, other.reasons  # another address's history holds nothing


def benign_lines(tmp_path: Path, count: int, at: str) -> list[object]:
    """`count` ordinary requests of the attacker's address, each answered 200 by the application (the lab's real
    nginx access-log record, with the fields nginx would have written changed)."""
    template = lines("nginx-access.jsonl")[0]
    records = []
    for n in range(count):
        record = copy.deepcopy(template)
        record.update(time=at, request_id=f"{n:032x}", remote_addr=ATTACKER, request_uri=f"/products?page={n}")
        record.update(status=200, body_bytes_sent=2048, upstream_addr="127.0.0.1:8081", upstream_status="200")
        records.append(record)
    return list(parsed(records, tmp_path))


@pytest.fixture
async def loop(config_copy: Settings) -> AsyncIterator[Loop]:
    async with running_loop(config_copy) as running:
        yield running


async def test_a_source_the_access_log_knew_for_days_is_blocked_only_with_a_person(loop: Loop, tmp_path: Path) -> None:
    # ten days of ordinary traffic before the attack (burst() alerts are dated 2026-11-23): no case, a profile
    assert await loop.submit(benign_lines(tmp_path, 60, "2026-11-13T08:00:00+00:00")) == []  # type: ignore[arg-type]
    [known] = source_standing(AttackerStore(loop.ledger), [ATTACKER], burst()[0].observed_at)
    assert (known.known_days, known.answered) == (10, 60)

    [key] = await loop.submit(burst(), level=Level.L3)
    status = await loop.wait_for(
        key, lambda s: bool(s.actions) and action_of(s, "network.block_ip").verdict != "undecided"
    )
    block = action_of(status, "network.block_ip")
    assert block.status.value == "awaiting_approval", block
    [decision] = [
        r.payload for r in loop.ledger.records(key, [RecordKind.DECISION]) if r.payload["action"] == "network.block_ip"
    ]
    assert decision["standing"] == [{"address": ATTACKER, "known_days": 10, "answered": 60}]
    assert any(SHARED in reason for reason in decision["reasons"]), decision["reasons"]
