"""Adversarial review of the people path, the inbox: what a signed-in person's form can make count, against a
live service on a real Temporal dev server and worker (the forms as a browser would post them, with httpx).

- A vote is bound to the workflow run its page showed. An incident's key outlives its run: once a run ends,
  new alerts start a new run whose action ids start again at a1. Before this review the inbox's form named only
  the incident and the action id, so a page left open from the earlier run approved the new run's a1, an action
  the person never saw (Slack's buttons already carried the run).
- An unusable service-held key file is a 503 naming the file and the line, never its text: PyYAML's error quotes
  the line it failed on, which in a key file is the private key.
- A malformed form is a clear refusal, never a server error: a CSRF token with a non-ASCII character, a comment
  over the vote's limit.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.approvals import keys_dir
from autonomy_controller.controller.service.inbox import InboxConfig
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from autonomy_controller.workflows.client import cast_vote
from autonomy_controller.workflows.contracts import ActionStatus, VoteChoice
from tests.harness import Loop, action_of, alert, awaiting, running_loop, vote
from tests.test_http import live

pytestmark = pytest.mark.asyncio(loop_scope="module")
PASSWORD = "correct horse battery staple"


@dataclass
class Inbox:
    loop: Loop
    base: str
    state_dir: Path

    @asynccontextmanager
    async def signed_in(self, name: str) -> AsyncIterator[httpx.AsyncClient]:
        """A client holding `name`'s session cookie, as a browser after the sign-in form."""
        async with httpx.AsyncClient(base_url=self.base, follow_redirects=False, timeout=30) as client:
            page = await client.get("/inbox/login")
            form = {"csrf": csrf(page.text), "name": name, "password": PASSWORD}
            answer = await client.post("/inbox/login", data=form)
            assert answer.status_code == 303, answer.text
            yield client


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def vote_forms(page: str) -> dict[tuple[str, str], dict[str, str]]:
    """Each vote form's hidden fields, by (incident, action id), as the page carries them."""
    forms = {}
    for form in re.findall(r'<form method="post" action="/inbox/vote".*?</form>', page, re.S):
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
        forms[(fields["incident"], fields["action_id"])] = fields
    return forms


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def inbox(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Inbox]:
    root = tmp_path_factory.mktemp("inbox-review")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    store = AccountStore(accounts_file(config.state_dir))
    known = people(data_file(config.policies_dir, "identities"))
    store.add("bob", "bob", PASSWORD, known)  # soc-oncall: may approve a block at L2
    async with running_loop(config) as loop:
        app = create_app(
            config, ServiceConfig(connect_timeout_seconds=1), loop.client.service_client.config.target_host
        )
        app.state.inbox_config = InboxConfig(secure_cookies=False)  # plain http on 127.0.0.1
        async with live(app) as http:
            yield Inbox(loop, str(http.base_url).rstrip("/"), config.state_dir)


def counted(loop: Loop, key: str) -> list[tuple[str, str]]:
    return [
        (r.payload["approver"], r.payload["choice"])
        for r in loop.ledger.records(key, [RecordKind.APPROVAL])
        if r.payload["event"] == "vote"
    ]


async def test_a_page_of_an_earlier_run_cannot_approve_the_new_runs_action_of_the_same_id(inbox: Inbox) -> None:
    loop = inbox.loop
    (key,) = await loop.submit([alert(1, "203.0.113.90")], level=Level.L2)
    first = action_of(await awaiting(loop, key), "network.block_ip")
    async with inbox.signed_in("bob") as bob:
        page = (await bob.get("/inbox")).text
        form = vote_forms(page)[(key, first.action_id)]

        # carol rejects it elsewhere; the run ends. Later alerts from the same source start a new run.
        await cast_vote(loop.client, loop.ledger, key, vote("carol", VoteChoice.REJECT, first.action_id))
        ended = await loop.result(key)
        assert action_of(ended, "network.block_ip").status is ActionStatus.REJECTED
        (again,) = await loop.submit([alert(2, "203.0.113.90")], level=Level.L2)
        second = await awaiting(loop, key, after_run=ended.run_id)
        assert again == key and action_of(second, "network.block_ip").action_id == first.action_id

        # bob presses approve on the page he loaded for the first run
        answer = await bob.post("/inbox/vote", data={**form, "choice": "approve", "comment": "seen it"})
    assert answer.status_code == 409 and "earlier run" in answer.text, answer.text
    now = action_of(await loop.wait_for(key, lambda s: True), "network.block_ip")
    assert now.status is ActionStatus.AWAITING_APPROVAL and now.votes == []
    assert counted(loop, key) == [("carol", "reject")], "only carol's vote, in the first run, counted"


async def test_a_vote_form_without_its_run_is_refused(inbox: Inbox) -> None:
    (key,) = await inbox.loop.submit([alert(1, "203.0.113.91")], level=Level.L2)
    block = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    async with inbox.signed_in("bob") as bob:
        fields = {k: v for k, v in vote_forms((await bob.get("/inbox")).text)[(key, block.action_id)].items()}
        fields.pop("run_id", None)
        answer = await bob.post("/inbox/vote", data={**fields, "choice": "approve"})
    assert answer.status_code == 400 and "run" in answer.text, answer.text
    assert counted(inbox.loop, key) == []


async def test_malformed_forms_are_refused_naming_what_is_wrong_never_a_server_error(inbox: Inbox) -> None:
    (key,) = await inbox.loop.submit([alert(1, "203.0.113.92")], level=Level.L2)
    block = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    async with inbox.signed_in("bob") as bob:
        form = vote_forms((await bob.get("/inbox")).text)[(key, block.action_id)]
        non_ascii = await bob.post("/inbox/vote", data={**form, "csrf": "é" + form["csrf"][1:], "choice": "approve"})
        assert non_ascii.status_code == 403 and "CSRF token is missing or wrong" in non_ascii.text, non_ascii.text
        login = await bob.post("/inbox/login", data={"csrf": "jalapeño", "name": "bob", "password": PASSWORD})
        assert login.status_code == 403 and "CSRF" in login.text, login.text

        long = await bob.post("/inbox/vote", data={**form, "choice": "approve", "comment": "x" * 2_001})
        assert long.status_code == 400 and "comment" in long.text and "2000" in long.text, long.text
    assert counted(inbox.loop, key) == []
    assert action_of(await awaiting(inbox.loop, key), "network.block_ip").votes == []


async def test_an_unusable_service_key_is_named_on_the_page_never_quoted(inbox: Inbox) -> None:
    (key,) = await inbox.loop.submit([alert(1, "203.0.113.93")], level=Level.L2)
    block = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    seed = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1u"
    path = keys_dir(inbox.state_dir) / "bob.key"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(f"approver: bob\nkey_id: bob-inbox\nprivate_key: {seed}: broken\n")
    path.chmod(0o600)
    try:
        async with inbox.signed_in("bob") as bob:
            form = vote_forms((await bob.get("/inbox")).text)[(key, block.action_id)]
            answer = await bob.post("/inbox/vote", data={**form, "choice": "approve"})
    finally:
        path.unlink()
    assert answer.status_code == 503 and "bob.key" in answer.text and "line 3" in answer.text, answer.text
    assert seed[:12] not in answer.text and seed[-12:] not in answer.text, "the private key's text reached the page"
    assert counted(inbox.loop, key) == []


async def test_a_session_cookie_copied_before_sign_out_no_longer_opens_the_inbox(inbox: Inbox) -> None:
    # A session is a signed cookie: signing out deleted the browser's copy only, and a copy taken before (a shared
    # machine, a proxy log) stayed valid for its 8 h. Sign-out now renews the account's stamp: every session ends.
    async with inbox.signed_in("bob") as bob:
        copied = dict(bob.cookies)
        page = await bob.get("/inbox")
        assert page.status_code == 200
        assert (await bob.post("/inbox/logout", data={"csrf": csrf(page.text)})).status_code == 303
    async with httpx.AsyncClient(base_url=inbox.base, cookies=copied, follow_redirects=False) as thief:
        answer = await thief.get("/inbox")
    assert answer.status_code == 303 and answer.headers["location"] == "/inbox/login"
