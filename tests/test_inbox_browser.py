"""The approval inbox in real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium),
against a live server on a real Temporal dev server and worker.

One dev server, worker, service and browser profile per module; each test signs in afresh and uses its own
attacker address, so incidents never mix. Selenium is blocking, and the server runs on this test's event loop,
so every browser step runs in a thread (`browse`) while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.inbox import InboxConfig
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from autonomy_controller.workflows.contracts import ActionStatus
from tests.browser import read_png, require_chromium
from tests.harness import Loop, action_of, alert, awaiting, running_loop
from tests.test_http import live

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make .venv/.installed)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")
DRIVER_HINT = "chromium-driver is not installed: run `bash .ci/chromium.sh` as root (Debian package chromium-driver)"
PASSWORD = "correct horse battery staple"
MARKUP = '<img src=x onerror="document.title=1"><b id="bold">bold</b><script>document.title=2</script>'
T = TypeVar("T")


@dataclass
class Inbox:
    loop: Loop
    base: str
    driver: WebDriver

    async def browse(self, steps: Callable[[WebDriver], T]) -> T:
        return await asyncio.to_thread(steps, self.driver)

    def sign_in(self, driver: WebDriver, name: str) -> None:
        driver.delete_all_cookies()
        driver.get(f"{self.base}/inbox/login")
        driver.find_element(By.ID, "name").send_keys(name)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 30).until(lambda d: d.title != "Approval inbox: sign in")
        assert driver.current_url == f"{self.base}/inbox", driver.page_source

    def http(self, driver: WebDriver) -> httpx.AsyncClient:
        """An HTTP client carrying the browser's cookies (HttpOnly ones included): a forger with a session."""
        cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
        return httpx.AsyncClient(base_url=self.base, cookies=cookies, follow_redirects=False, timeout=30)


def chromium_driver() -> Iterator[WebDriver]:
    browser = require_chromium()
    driver_path = shutil.which("chromedriver")
    if driver_path is None:
        pytest.skip(DRIVER_HINT)
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager look for a driver on the network
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    with tempfile.TemporaryDirectory(prefix="chromium-inbox-") as profile:
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,2000",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=DriverService(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def inbox(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> AsyncIterator[Inbox]:
    drivers = chromium_driver()
    driver = next(drivers)  # skips here, before Temporal starts, when there is no browser or driver
    root = tmp_path_factory.mktemp("inbox")
    shutil.copytree(settings.levels_dir, root / "levels")
    shutil.copytree(settings.policies_dir, root / "policies")
    config = Settings(levels_dir=root / "levels", policies_dir=root / "policies", state_dir=root / "var")
    store = AccountStore(accounts_file(config.state_dir))
    known = people(data_file(config.policies_dir, "identities"))
    for name in ("bob", "alice"):  # bob: soc-oncall; alice: finance, in no approver group
        store.add(name, name, PASSWORD, known)
    try:
        async with running_loop(config) as loop:
            app = create_app(
                config, ServiceConfig(connect_timeout_seconds=1), loop.client.service_client.config.target_host
            )
            app.state.inbox_config = InboxConfig(secure_cookies=False)  # plain http on 127.0.0.1
            async with live(app) as http:
                yield Inbox(loop, str(http.base_url).rstrip("/"), driver)
    finally:
        drivers.close()


def seconds_left(deadline: str) -> int:
    """`2026-12-06T10:00:00+00:00 (in 59 min 12 s)` -> 3552."""
    found = re.search(r"\(in (\d+) min (\d+) s\)$", deadline)
    assert found, deadline
    return int(found.group(1)) * 60 + int(found.group(2))


async def pending_block(inbox: Inbox, src_ip: str) -> tuple[str, str]:
    (key,) = await inbox.loop.submit([alert(1, src_ip, evidence=f"GET /?q={MARKUP}")], level=Level.L2)
    block = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    assert "bob" in block.waiting_on and "alice" not in block.waiting_on
    return key, block.action_id


async def test_an_approver_sees_the_pending_block_approves_it_and_sees_it_executed_and_verified(inbox: Inbox) -> None:
    key, action_id = await pending_block(inbox, "203.0.113.70")

    def approve(driver: WebDriver) -> dict[str, Any]:
        inbox.sign_in(driver, "bob")
        section = driver.find_element(By.ID, f"{key}/{action_id}")
        seen = {
            "text": section.text,
            "markup_elements": len(section.find_elements(By.CSS_SELECTOR, "b, img, script")),
            "title": driver.title,
            "png": driver.get_screenshot_as_png(),
        }
        clock = section.find_element(By.CSS_SELECTOR, "time.deadline")
        seen["deadline"] = [clock.text]
        time.sleep(2.5)  # the page's script counts it down (the CSP allows that one script by its hash)
        seen["deadline"].append(clock.text)
        section.find_element(By.NAME, "comment").send_keys("seen the WAF log <i>ok</i>")
        section.find_element(By.CSS_SELECTOR, 'button[value="approve"]').click()
        WebDriverWait(driver, 30).until(lambda d: d.title != "Approval inbox")
        seen["answer"] = driver.find_element(By.TAG_NAME, "body").text
        return seen

    seen = await inbox.browse(approve)
    assert "network.block_ip on 203.0.113.70" in seen["text"]
    for shown in (
        "approver groups soc-oncall",
        "who else may vote carol, heidi",
        "still needed 1 more approval(s)",
        "policy reasons L2 requires approval for contain_network",
        "triage suspicious",
        "blast_radius",
        "(in 59 min",
    ):
        assert shown in seen["text"], shown
    served, later = (seconds_left(text) for text in seen["deadline"])
    assert 3000 < served <= 3600 and 2 <= served - later <= 4, seen["deadline"]
    assert MARKUP in seen["text"], "the alert's markup must read as text"
    assert seen["markup_elements"] == 0 and seen["title"] == "Approval inbox", "the alert's markup became elements"
    assert "Vote recorded" in seen["answer"] and f"bob approves network.block_ip ({action_id})" in seen["answer"]
    image = read_png(_write(seen["png"]))
    assert image.non_white_share > 0.01 and image.distinct_colours > 20, "the inbox rendered (nearly) blank"

    await inbox.loop.wait_for(key, lambda s: action_of(s, "network.block_ip").status is ActionStatus.AWAITING_REVERT)
    assert inbox.loop.enforcement.effects["network.block_ip"] == 1

    def timeline(driver: WebDriver) -> str:
        driver.get(f"{inbox.base}/inbox/incidents/{key}")
        return str(driver.find_element(By.TAG_NAME, "body").text)

    page = await inbox.browse(timeline)
    assert f"network.block_ip {action_id} 203.0.113.70 awaiting_revert" in page  # executed, its TTL revert pending
    assert "verification" in page and "execution" in page
    votes = [r.payload for r in inbox.loop.ledger.records(key, [RecordKind.APPROVAL]) if r.payload["event"] == "vote"]
    assert [(v["approver"], v["choice"], v["comment"]) for v in votes] == [
        ("bob", "approve", "seen the WAF log <i>ok</i>")
    ]


async def test_a_person_outside_the_approver_group_does_not_see_it_and_a_forged_vote_is_refused(inbox: Inbox) -> None:
    key, action_id = await pending_block(inbox, "203.0.113.71")

    def look(driver: WebDriver) -> tuple[str, int, str]:
        inbox.sign_in(driver, "alice")
        csrf = driver.find_element(By.CSS_SELECTOR, 'input[name="csrf"]').get_attribute("value") or ""
        return (
            driver.find_element(By.TAG_NAME, "body").text,
            len(driver.find_elements(By.ID, f"{key}/{action_id}")),
            csrf,
        )

    text, sections, csrf = await inbox.browse(look)
    assert sections == 0 and key not in text and "Nothing awaits a vote from alice" in text
    run_id = (await awaiting(inbox.loop, key)).run_id  # not on her page; the read API would tell her
    forged = {"csrf": csrf, "incident": key, "run_id": run_id, "action_id": action_id, "choice": "approve"}
    forged["comment"] = "mine now"
    async with inbox.http(inbox.driver) as alice:
        refused = await alice.post("/inbox/vote", data=forged)
        assert refused.status_code == 403 and "not in an approver group" in refused.text
        as_bob = await alice.post("/inbox/vote", data={**forged, "approver": "bob"})  # the field is ignored
        assert as_bob.status_code == 403 and "alice is not in an approver group" in as_bob.text
    async with httpx.AsyncClient(base_url=inbox.base) as anonymous:
        assert (await anonymous.post("/inbox/vote", data=forged)).status_code == 401
    refusals = [r.payload for r in inbox.loop.ledger.records(key, [RecordKind.APPROVAL])]
    assert [(r["event"], r["approver"]) for r in refusals] == [("vote_refused", "alice")] * 2 + [
        ("vote_refused", "unauthenticated")  # refused by the inbox itself, recorded all the same
    ]
    still = action_of(await awaiting(inbox.loop, key), "network.block_ip")
    assert still.votes == [] and inbox.loop.enforcement.effects["network.block_ip"] == 1  # the first test's only


async def test_a_form_without_its_csrf_token_is_refused(inbox: Inbox) -> None:
    key, action_id = await pending_block(inbox, "203.0.113.72")
    await inbox.browse(lambda driver: inbox.sign_in(driver, "bob"))
    vote = {"incident": key, "action_id": action_id, "choice": "approve"}
    async with inbox.http(inbox.driver) as bob:
        for form in (vote, {**vote, "csrf": ""}, {**vote, "csrf": "forged"}):
            refused = await bob.post("/inbox/vote", data=form)
            assert refused.status_code == 403 and "CSRF token is missing or wrong" in refused.text
        sign_in = await bob.post("/inbox/login", data={"name": "bob", "password": PASSWORD})
        assert sign_in.status_code == 403 and "set-cookie" not in sign_in.headers
        assert (await bob.post("/inbox/logout", data={"csrf": "forged"})).status_code == 403
    refused_here = [r.payload for r in inbox.loop.ledger.records(key, [RecordKind.APPROVAL])]  # before the workflow
    assert [(r["event"], r["approver"], r["code"]) for r in refused_here] == [("vote_refused", "bob", "http_403")] * 3
    assert action_of(await awaiting(inbox.loop, key), "network.block_ip").votes == []


def _write(png: bytes) -> Any:
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="inbox-shot-")) / "inbox.png"
    path.write_bytes(png)
    return path
