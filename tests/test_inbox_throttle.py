"""Sign-in throttling (controller/service/inbox/throttle.py): guessing passwords slows to nothing, per client
address and per account name, and never locks the name's owner out for good.

The rules on a clock the test moves; then the real service over HTTP (uvicorn on a free port, the real account
store with argon2 hashes): after the failures the limit allows, even the right password is answered 429 with
Retry-After and no session, and once the delay has passed the owner signs in."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.inbox.accounts import AccountStore, accounts_file, people
from autonomy_controller.controller.service.inbox.routes import Inbox
from autonomy_controller.controller.service.inbox.throttle import MAX_TRACKED, SignInThrottle, ThrottleConfig
from tests.test_demo_serve import cookie_header, cookies, hidden
from tests.test_http import live
from tests.test_inbox_browser import PASSWORD


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **limits: float) -> SignInThrottle:
    return SignInThrottle(ThrottleConfig(**limits), clock=clock)  # type: ignore[arg-type]


def test_a_name_waits_twice_as_long_after_each_failure_over_the_limit() -> None:
    clock = Clock()
    guard = throttle(clock, per_name=3, per_address=1000)
    for attempt in range(3):
        assert guard.wait("bob", f"192.0.2.{attempt}") == 0  # from three machines
        guard.failed("bob", f"192.0.2.{attempt}")
    assert guard.wait("BOB ", "198.51.100.9") == 1  # any address, the name as the store would read it
    assert guard.wait("carol", "198.51.100.9") == 0  # other names are not held up
    clock.now += 1
    assert guard.wait("bob", "198.51.100.9") == 0  # a delay, not a lockout
    guard.failed("bob", "198.51.100.9")
    assert guard.wait("bob", "198.51.100.9") == 2
    clock.now += 2
    guard.failed("bob", "198.51.100.9")
    assert guard.wait("bob", "198.51.100.9") == 4


def test_the_delay_is_capped_and_failures_leave_the_window() -> None:
    clock = Clock()
    guard = throttle(clock, per_name=1, per_address=1000, window_seconds=600, max_delay_seconds=30)
    for _ in range(12):
        guard.failed("bob", "192.0.2.1")
    assert guard.wait("bob", "192.0.2.1") == 30
    clock.now += 600
    assert guard.wait("bob", "192.0.2.1") == 0  # all twelve are older than the window


def test_an_address_guessing_many_names_is_refused_until_its_oldest_failure_ages_out() -> None:
    clock = Clock()
    guard = throttle(clock, per_address=4, per_name=100, window_seconds=900)
    for number in range(4):
        guard.failed(f"user{number}", "192.0.2.7")
        clock.now += 10
    assert guard.wait("someone-new", "192.0.2.7") == 900 - 40
    assert guard.wait("someone-new", "192.0.2.8") == 0
    clock.now += 900 - 40
    assert guard.wait("someone-new", "192.0.2.7") == 0


def test_a_success_clears_its_name_but_not_its_address() -> None:
    clock = Clock()
    guard = throttle(clock, per_address=3, per_name=2)
    for name in ("bob", "bob", "carol"):
        guard.failed(name, "192.0.2.1")
    guard.succeeded("bob")  # e.g. a guesser's own account: the address keeps its count
    assert guard.wait("bob", "192.0.2.2") == 0
    assert guard.wait("dave", "192.0.2.1") > 0


def test_made_up_names_cannot_grow_memory_without_bound() -> None:
    guard = throttle(Clock())
    for number in range(MAX_TRACKED + 500):
        guard.failed(f"name-{number}", f"10.{number // 65536}.{number // 256 % 256}.{number % 256}")
    assert len(guard._by_name) == MAX_TRACKED and len(guard._by_address) == MAX_TRACKED
    assert guard.wait("name-0", "192.0.2.1") == 0  # the idlest were forgotten first


@dataclass
class Service:
    http: httpx.AsyncClient
    clock: Clock


@pytest_asyncio.fixture
async def service(tmp_path: Path, settings: Settings) -> AsyncIterator[Service]:
    shutil.copytree(settings.policies_dir, tmp_path / "policies")
    config = Settings(levels_dir=settings.levels_dir, policies_dir=tmp_path / "policies", state_dir=tmp_path / "var")
    AccountStore(accounts_file(config.state_dir)).add(
        "bob", "bob", PASSWORD, people(data_file(config.policies_dir, "identities"))
    )
    app = create_app(config, ServiceConfig(connect_timeout_seconds=1), "127.0.0.1:1")  # no Temporal needed
    clock = Clock()
    async with live(app) as http:
        await http.get("/inbox/login")  # makes the inbox; its throttle then runs on the test's clock
        inbox: Inbox = app.state.inbox
        inbox.throttle = throttle(clock, per_name=3, per_address=50)
        yield Service(http, clock)


async def sign_in(http: httpx.AsyncClient, password: str) -> httpx.Response:
    page = await http.get("/inbox/login")
    form = {"name": "bob", "password": password, "csrf": hidden(page.text, "csrf")}
    return await http.post("/inbox/login", data=form, headers=cookie_header(cookies(page)))


@pytest.mark.asyncio
async def test_the_service_answers_429_even_to_the_right_password_until_the_delay_passed(service: Service) -> None:
    for _ in range(3):
        assert (await sign_in(service.http, "not bob's password")).status_code == 401
    held = await sign_in(service.http, PASSWORD)
    assert held.status_code == 429 and held.headers["Retry-After"] == "1"
    assert "too many failed sign-ins" in held.text and "inbox_session" not in cookies(held)
    service.clock.now += 1
    signed_in = await sign_in(service.http, PASSWORD)
    assert signed_in.status_code == 303 and "inbox_session" in cookies(signed_in)
    assert (await sign_in(service.http, "not bob's password")).status_code == 401  # the count started over
