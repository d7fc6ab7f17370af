"""Every refused attempt to approve or reject is in the ledger, including those refused before a workflow saw them.

Before this, the inbox and Slack refused some votes themselves (no session, a wrong CSRF token, a malformed form,
a Slack user nobody mapped, a request Slack did not sign) and wrote nothing: an auditor saw the workflow's
refusals only. Now each is an `approval` record of event `vote_refused` (who, which incident, action and run as
far as the request said, why, the channel), under the incident when the ledger holds it, else under
`_vote-refusals`; bounded per source and in all (controller/service/refusals.py), the refusals over the limits
counted in the next record written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autonomy_controller.controller.cli.trail import collect_trail
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.oversight.trail import StepKind
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from autonomy_controller.controller.service.refusals import REFUSALS_KEY, Attempt, RefusalLimits, RefusalRecorder
from tests.harness import action_of, alert, awaiting
from tests.test_review_people_inbox import PASSWORD, Inbox, csrf, vote_forms
from tests.test_review_people_inbox import inbox as inbox

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}") as opened:
        yield opened


def refusals(ledger: Ledger, key: str) -> list[dict[str, Any]]:
    return [r.payload for r in ledger.records(key, [RecordKind.APPROVAL]) if r.payload["event"] == "vote_refused"]


async def test_refusals_are_bounded_per_source_and_in_all_and_the_rest_is_counted(ledger: Ledger) -> None:
    clock = Clock()
    recorder = RefusalRecorder(ledger, RefusalLimits(per_source=2, total=3, window_seconds=60), clock)
    flood = Attempt("inbox", "192.0.2.7", incident="src:made-up", action_id="a1", choice="approve")
    for _ in range(5):
        await recorder.record(flood, 401, "sign in first")
    written = refusals(ledger, REFUSALS_KEY)
    assert len(written) == 2 and recorder.unrecorded == 3  # the source's limit
    assert ledger.incident_head("src:made-up") is None, "a key someone typed became an incident"

    bob = Attempt("inbox", "192.0.2.8", identity="bob", incident="src:made-up", choice="reject")
    await recorder.record(bob, 403, "the form's CSRF token is missing or wrong")
    await recorder.record(Attempt("inbox", "192.0.2.9"), 401, "sign in first")  # over the total: counted
    written = refusals(ledger, REFUSALS_KEY)
    assert [w["unrecorded_before"] for w in written] == [0, 0, 3] and recorder.unrecorded == 1
    assert written[2]["approver"] == "bob" and written[2]["code"] == "http_403" and written[2]["channel"] == "inbox"
    assert written[0]["approver"] == "unauthenticated" and written[0]["client"] == "192.0.2.7"

    clock.now += 61  # the window moved on: the flooding source may be recorded again, with what was counted
    await recorder.record(flood, 401, "sign in first")
    assert refusals(ledger, REFUSALS_KEY)[-1]["unrecorded_before"] == 1 and recorder.unrecorded == 0
    total = len(refusals(ledger, REFUSALS_KEY)) + sum(w["unrecorded_before"] for w in refusals(ledger, REFUSALS_KEY))
    assert total == 8, "every refusal is written or counted in a later record"


async def test_an_attempt_on_a_known_incident_is_in_its_trail_and_long_words_are_cut(ledger: Ledger) -> None:
    ledger.append("src:198.51.100.170", RecordKind.ALERT, "ingest", {"id": "x"})
    recorder = RefusalRecorder(ledger)
    await recorder.record(
        Attempt("slack", "slack user U0X", incident="src:198.51.100.170", action_id="a" * 5000, run_id="r1"), 403, "no"
    )
    (record,) = refusals(ledger, "src:198.51.100.170")
    assert len(record["action_id"]) == 200 and record["run_id"] == "r1" and record["channel"] == "slack"
    assert refusals(ledger, REFUSALS_KEY) == []


async def _pending(inbox: Inbox, address: str) -> tuple[str, dict[str, str]]:
    (key,) = await inbox.loop.submit([alert(1, address)], level=Level.L2)
    block = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    async with inbox.signed_in("bob") as bob:
        return key, vote_forms((await bob.get("/inbox")).text)[(key, block.action_id)]


async def test_refusals_in_the_inbox_before_the_workflow_are_recorded_with_who_what_and_why(
    inbox: Inbox,
) -> None:
    key, form = await _pending(inbox, "203.0.113.95")
    ledger = inbox.loop.ledger
    async with httpx.AsyncClient(base_url=inbox.base, follow_redirects=False) as anonymous:
        assert (await anonymous.post("/inbox/vote", data={**form, "choice": "approve"})).status_code == 401
    async with inbox.signed_in("bob") as bob:
        form = {**form, "csrf": csrf((await bob.get("/inbox")).text)}  # this session's token
        wrong_csrf = await bob.post("/inbox/vote", data={**form, "csrf": "x" + form["csrf"], "choice": "reject"})
        assert wrong_csrf.status_code == 403
        no_run = await bob.post("/inbox/vote", data={**{k: v for k, v in form.items() if k != "run_id"}, "choice": "x"})
        assert no_run.status_code == 400
        other_run = await bob.post("/inbox/vote", data={**form, "run_id": "an-earlier-run", "choice": "approve"})
        assert other_run.status_code == 409 and "earlier run" in other_run.text

    rows = [
        (r["approver"], r["code"] if "channel" in r else "workflow", r.get("run_id")) for r in refusals(ledger, key)
    ]
    assert rows == [
        ("unauthenticated", "http_401", form["run_id"]),
        ("bob", "http_403", form["run_id"]),
        ("bob", "http_400", ""),
        ("bob", "workflow", "an-earlier-run"),  # the run's validator refused it; recorded once, by cast_vote
    ], rows
    assert refusals(ledger, key)[0]["client"] == "127.0.0.1" and refusals(ledger, key)[1]["choice"] == "reject"
    assert action_of(await awaiting(inbox.loop, key), "network.block_ip").votes == []
    # The audit trail tells an auditor who refused each: the inbox itself, or the run's validator.
    trail = await collect_trail(ledger, key, inbox.loop.client.service_client.config.target_host)
    block = next(a for a in trail.actions if a.action == "network.block_ip")
    step = block.step(StepKind.APPROVAL)
    assert step is not None
    said = [f.text for f in step.facts if "tried to vote" in f.text]
    assert sum("the inbox refused it before any workflow saw it" in text for text in said) == 3, said
    assert sum("the workflow's validator refused it" in text for text in said) == 1, said


async def test_a_person_not_eligible_is_refused_by_the_workflow_and_recorded_once(inbox: Inbox) -> None:
    store = AccountStore(accounts_file(inbox.state_dir))
    store.add("alice", "alice", PASSWORD, people(data_file(inbox.loop.settings.policies_dir, "identities")))
    key, form = await _pending(inbox, "203.0.113.96")
    async with inbox.signed_in("alice") as alice:
        page = (await alice.get("/inbox")).text
        answer = await alice.post("/inbox/vote", data={**form, "csrf": csrf(page), "choice": "approve"})
    assert answer.status_code == 403 and "not in an approver group" in answer.text
    assert [(r["approver"], r["choice"]) for r in refusals(inbox.loop.ledger, key)] == [("alice", "approve")]
