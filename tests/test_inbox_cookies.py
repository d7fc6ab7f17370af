"""The inbox's Secure session cookie over plain http, in real headless Chromium.

Browsers neither keep nor send back a Secure cookie over plain http, except to a loopback address (a secure
context). So: Secure cookies sign in over http://127.0.0.1; over http on a non-loopback address the sign-in
page says why it cannot work (not a silent loop back to the form); `--insecure-cookies` signs in there.

No Temporal is needed to sign in: the services point at a closed port, so a signed-in person's inbox answers
"Temporal does not answer" (503) where a person without a session would be sent back to the sign-in form.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.inbox import InboxConfig
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from tests.test_http import live
from tests.test_inbox_browser import PASSWORD, chromium_driver

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (make .venv/.installed)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")
CLOSED_TEMPORAL = "127.0.0.1:1"


def outside_address() -> str:
    """This machine's first non-loopback IPv4 address (Chromium reaches it without leaving the machine)."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True)
    fields = shown.stdout.split()
    if "inet" not in fields:
        pytest.skip("this machine has no non-loopback IPv4 address")
    return fields[fields.index("inet") + 1].split("/")[0]


@dataclass
class Servers:
    driver: WebDriver
    secure_port: int
    insecure_port: int
    outside: str


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    yield from chromium_driver()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def servers(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings, driver: WebDriver
) -> AsyncIterator[Servers]:
    outside = outside_address()
    apps = []
    for secure in (True, False):
        root = tmp_path_factory.mktemp("cookies")
        shutil.copytree(settings.policies_dir, root / "policies")
        config = Settings(levels_dir=settings.levels_dir, policies_dir=root / "policies", state_dir=root / "var")
        store = AccountStore(accounts_file(config.state_dir))
        store.add("bob", "bob", PASSWORD, people(data_file(config.policies_dir, "identities")))
        app = create_app(config, ServiceConfig(connect_timeout_seconds=1), CLOSED_TEMPORAL)
        app.state.inbox_config = InboxConfig(secure_cookies=secure)
        apps.append(app)
    async with live(apps[0], host="0.0.0.0") as secure_http, live(apps[1], host="0.0.0.0") as insecure_http:
        yield Servers(driver, int(secure_http.base_url.port or 0), int(insecure_http.base_url.port or 0), outside)


def sign_in(driver: WebDriver, base: str) -> dict[str, Any]:
    driver.delete_all_cookies()
    driver.get(f"{base}/inbox/login")
    before = driver.find_element(By.TAG_NAME, "body").text
    driver.find_element(By.ID, "name").send_keys("bob")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 30).until(lambda d: d.title != "Approval inbox: sign in")
    return {
        "login_page": before,
        "title": driver.title,
        "url": driver.current_url,
        "text": driver.find_element(By.TAG_NAME, "body").text,
        "cookies": {c["name"]: c for c in driver.get_cookies()},
    }


async def browse(servers: Servers, base: str) -> dict[str, Any]:
    return await asyncio.to_thread(sign_in, servers.driver, base)


async def test_secure_cookies_sign_in_over_http_to_loopback(servers: Servers) -> None:
    seen = await browse(servers, f"http://127.0.0.1:{servers.secure_port}")
    assert "plain http" not in seen["login_page"]
    assert seen["url"].endswith("/inbox") and "Temporal does not answer" in seen["text"], seen  # signed in
    assert seen["cookies"]["inbox_session"]["secure"] is True and seen["cookies"]["inbox_session"]["httpOnly"]


async def test_secure_cookies_over_plain_http_elsewhere_say_why_sign_in_cannot_work(servers: Servers) -> None:
    seen = await browse(servers, f"http://{servers.outside}:{servers.secure_port}")
    assert f"this page came over plain http from {servers.outside}" in seen["login_page"]
    assert seen["title"] == "Sign-in impossible over plain http", seen
    assert "--insecure-cookies" in seen["text"] and "CSRF" not in seen["text"]
    assert "inbox_session" not in seen["cookies"] and "inbox_pre" not in seen["cookies"], "Chromium kept a cookie"


async def test_insecure_cookies_sign_in_over_plain_http_elsewhere(servers: Servers) -> None:
    seen = await browse(servers, f"http://{servers.outside}:{servers.insecure_port}")
    assert "plain http" not in seen["login_page"]
    assert seen["url"].endswith("/inbox") and "Temporal does not answer" in seen["text"], seen
    assert seen["cookies"]["inbox_session"]["secure"] is False
