"""The inbox's routes: sign-in, the pending actions of the signed-in person, votes, an incident's timeline.

A vote goes through `controller.service.approvals.vote_as`, the path ChatOps shares, which calls the function
`autonomy approve|reject` calls: the workflow's update and its validator decide (separation of duties, quorum,
no self-approval, no planner identities), and a refused vote is recorded in the ledger with its reason. The
inbox only chooses *who* votes: the identity of the signed-in account, never a form field.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from autonomy_controller.controller.oversight.reports import build_report
from autonomy_controller.controller.service.approvals import Refused, pending_actions, vote_as
from autonomy_controller.controller.service.inbox import pages
from autonomy_controller.controller.service.inbox.accounts import Account, AccountError, AccountStore, accounts_file
from autonomy_controller.controller.service.inbox.sessions import Session, Signer
from autonomy_controller.controller.service.inbox.sessions import load_secret as load_session_secret
from autonomy_controller.controller.service.inbox.throttle import SignInThrottle
from autonomy_controller.controller.service.refusals import Attempt
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.workflows.contracts import VoteChoice
from autonomy_controller.workflows.operations import LoopError, describe_and_read

log = logging.getLogger(__name__)
router = APIRouter(prefix="/inbox", include_in_schema=False)
SESSION_COOKIE = "inbox_session"
PRE_COOKIE = "inbox_pre"
PRE_SECONDS = 600
MAX_FORM_BYTES = 16 * 1024


@dataclass(frozen=True)
class InboxConfig:
    secure_cookies: bool = True
    """False only with `serve --insecure-cookies` (or AUTONOMY_INBOX_INSECURE_COOKIES=1): browsers neither keep nor
    send a Secure cookie over plain http, except to a loopback address (a secure context), so over http on any
    other address the inbox says sign-in cannot work instead of failing silently (`cookie_problem`)."""
    session_seconds: int = 8 * 3600
    incidents_scanned: int = 200
    """The most recent incidents of the ledger whose workflows are asked what awaits approval."""

    @classmethod
    def from_env(cls) -> InboxConfig:
        return cls(secure_cookies=os.environ.get("AUTONOMY_INBOX_INSECURE_COOKIES") != "1")


@dataclass
class Inbox:
    config: InboxConfig
    accounts: AccountStore
    signer: Signer
    throttle: SignInThrottle = field(default_factory=SignInThrottle)


def inbox_of(request: Request) -> Inbox:
    app = request.app
    found: Inbox | None = getattr(app.state, "inbox", None)
    if found is None:
        service: Service = app.state.service
        state_dir = service.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        found = Inbox(
            config=getattr(app.state, "inbox_config", None) or InboxConfig.from_env(),
            accounts=AccountStore(accounts_file(state_dir)),
            signer=Signer(load_session_secret(state_dir / "inbox-session.key")),
        )
        app.state.inbox = found
    return found


def html(body: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = pages.HEADER_CSP  # the service's default would block the countdown
    return response


def refusal(exc: Refused) -> HTMLResponse:
    return html(pages.message(exc.title, exc.text), exc.status)


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form, each field once; anything else (multipart, JSON, too big, repeated fields) is refused."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused(415, "Refused", "a form is sent as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "Refused", f"a form is at most {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "Refused", f"not a form: {exc}") from exc
    if any(len(values) != 1 for values in fields.values()):
        raise Refused(400, "Refused", "a field is repeated")
    return {name: values[0] for name, values in fields.items()}


def signed_in(request: Request, inbox: Inbox) -> tuple[Account, Session] | None:
    """The session's account when the cookie verifies and the account is active with the same stamp."""
    session = inbox.signer.session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    try:
        account = inbox.accounts.find(session.account)
    except AccountError as exc:  # fail closed: a broken accounts file admits nobody
        raise Refused(503, "Unavailable", f"the accounts file is unreadable: {exc}") from exc
    if account is None or not account.active or account.stamp != session.stamp:
        return None
    return account, session


def _page_session(request: Request, inbox: Inbox) -> tuple[Account, Session] | Response:
    """For a page: the signed-in account and session, or the response instead of the page (the refusal, or the
    sign-in page when nobody is signed in)."""
    try:
        who = signed_in(request, inbox)
    except Refused as exc:
        return refusal(exc)
    return who if who is not None else RedirectResponse("/inbox/login", status_code=303)


def check_csrf(inbox: Inbox, sid: str, fields: dict[str, str]) -> None:
    if not inbox.signer.csrf_ok(sid, fields.get("csrf")):
        raise Refused(403, "Refused", "the form's CSRF token is missing or wrong: reload the page and send it again")


# -- sign-in ----------------------------------------------------------------------------------------------


def _sign_in_page(inbox: Inbox, problem: str | None = None, name: str = "", status: int = 200) -> Response:
    sid = os.urandom(16).hex()
    response = html(pages.sign_in(inbox.signer.csrf(sid), problem, name), status)
    cookie = inbox.signer.seal("pre", {"sid": sid, "expires": _now() + PRE_SECONDS})
    _set_cookie(response, inbox, PRE_COOKIE, cookie, PRE_SECONDS)
    return response


def _too_many(inbox: Inbox, name: str, wait: float) -> Response:
    seconds = math.ceil(wait)
    response = _sign_in_page(inbox, f"too many failed sign-ins: try again in {seconds} s", name, 429)
    response.headers["Retry-After"] = str(seconds)
    return response


def cookie_problem(request: Request, inbox: Inbox) -> str | None:
    """Why the browser will not return the Secure session cookie on this request's origin, or None."""
    if not inbox.config.secure_cookies or request.url.scheme == "https":
        return None
    host = (request.url.hostname or "").strip("[]").lower()
    if is_loopback(host):
        return None  # browsers treat http to a loopback address as a secure context: Secure cookies work
    return (
        f"this page came over plain http from {host}: browsers neither keep nor send back the inbox's Secure "
        "session cookie there, so sign-in cannot work. Serve the inbox behind https (a TLS proxy), or start "
        "`autonomy serve --insecure-cookies` on a network you trust."
    )


def is_loopback(host: str) -> bool:
    """localhost or a loopback address: where browsers keep and send Secure cookies over plain http."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get("/login")
async def login_page(request: Request) -> Response:
    inbox = inbox_of(request)
    return _sign_in_page(inbox, cookie_problem(request, inbox))


@router.post("/login")
async def login(request: Request) -> Response:
    inbox = inbox_of(request)
    try:
        fields = await form(request)
        pre = inbox.signer.open("pre", request.cookies.get(PRE_COOKIE))
        problem = cookie_problem(request, inbox)
        if pre is None and problem:  # the browser dropped the Secure pre-session cookie: say why, not "CSRF"
            raise Refused(403, "Sign-in impossible over plain http", problem)
        check_csrf(inbox, str(pre["sid"]) if pre else "", fields)
        name, address = fields.get("name", ""), request.client.host if request.client else "unknown"
        wait = inbox.throttle.wait(name, address)
        if wait > 0:  # before the password is verified: a throttled guess learns nothing and costs no argon2
            return _too_many(inbox, name, wait)
        try:
            account = await asyncio.to_thread(inbox.accounts.authenticate, name, fields.get("password", ""))
        except AccountError as exc:
            raise Refused(503, "Unavailable", f"the accounts file is unreadable: {exc}") from exc
    except Refused as exc:
        return refusal(exc)
    if account is None:
        inbox.throttle.failed(name, address)
        log.warning("inbox sign-in failed for name %r from %s", name[:64], address)
        return _sign_in_page(inbox, "wrong name or password, or the account is disabled", name, 401)
    inbox.throttle.succeeded(name)
    _, cookie = inbox.signer.new_session(account.name, account.stamp, inbox.config.session_seconds)
    response = RedirectResponse("/inbox", status_code=303)
    _set_cookie(response, inbox, SESSION_COOKIE, cookie, inbox.config.session_seconds)
    response.delete_cookie(PRE_COOKIE, path="/inbox")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    inbox = inbox_of(request)
    try:
        who = signed_in(request, inbox)
        fields = await form(request)
        if who is not None:
            check_csrf(inbox, who[1].sid, fields)
            inbox.accounts.sign_out(who[0].name)  # every session of the account ends, not only this browser's copy
    except Refused as exc:
        return refusal(exc)
    except AccountError as exc:  # the sessions could not be ended: say so, never pretend
        return refusal(Refused(503, "Unavailable", f"sign-out could not be recorded: {exc}"))
    response = RedirectResponse("/inbox/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/inbox")
    return response


def _set_cookie(response: Response, inbox: Inbox, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/inbox",
        secure=inbox.config.secure_cookies,
        httponly=True,
        samesite="strict",
    )


# -- the inbox --------------------------------------------------------------------------------------------


@router.get("")
async def show_inbox(request: Request) -> Response:
    inbox = inbox_of(request)
    who = _page_session(request, inbox)
    if isinstance(who, Response):
        return who
    account, session = who
    service: Service = request.app.state.service
    try:
        items = await pending_actions(service, inbox.config.incidents_scanned, account.identity)
    except Unavailable as exc:
        return html(pages.message("Unavailable", f"Temporal does not answer: {exc}"), 503)
    notes = [] if inbox.config.secure_cookies else ["session cookies are not Secure: serve this over https"]
    return html(pages.inbox(items, account.name, account.identity, inbox.signer.csrf(session.sid), notes))


@router.post("/vote")
async def vote(request: Request) -> Response:
    inbox = inbox_of(request)
    service: Service = request.app.state.service
    attempt = Attempt("inbox", request.client.host if request.client else "unknown")
    try:
        fields = await form(request)
        attempt = replace(
            attempt,
            incident=fields.get("incident", ""),
            action_id=fields.get("action_id", ""),
            run_id=fields.get("run_id", ""),
            choice=fields.get("choice", ""),
        )
        who = signed_in(request, inbox)
        if who is None:
            raise Refused(401, "Refused", "sign in first: a vote needs a session")
        account, session = who
        attempt = replace(attempt, identity=account.identity)
        check_csrf(inbox, session.sid, fields)
        try:
            choice = VoteChoice(fields.get("choice", ""))
        except ValueError as exc:
            raise Refused(400, "Refused", "choice is approve or reject") from exc
        incident, run_id = fields.get("incident", ""), fields.get("run_id", "")
        if not run_id:  # the run the page showed: a later run of the incident reuses its action ids
            raise Refused(400, "Refused", "the form names no run_id: reload the inbox and vote from the page")
        cast = await vote_as(
            service, account.identity, incident, fields.get("action_id", ""), choice, fields.get("comment", ""), run_id
        )
    except Refused as exc:
        await service.refusals.record_refused(attempt, exc)  # every refused attempt is in the ledger (bounded)
        return refusal(exc)
    state = cast.result.state
    text = f"{account.identity} {choice.value}s {state.action} ({state.action_id}) of {incident} ({cast.how})"
    text += f": now {state.status.value}"
    return html(pages.message("Vote recorded", text, f"/inbox/incidents/{incident}"))


@router.get("/incidents/{key}")
async def show_incident(request: Request, key: str) -> Response:
    inbox = inbox_of(request)
    who = _page_session(request, inbox)
    if isinstance(who, Response):
        return who
    account, session = who
    service: Service = request.app.state.service
    records = service.ledger.records(key)
    if not records:
        return html(pages.message("Not found", f"no incident {key}"), 404)
    try:
        status = (await describe_and_read(await service.client(), key))[1]
        actions = status.actions
    except (LoopError, Unavailable):
        actions = []
    timeline = build_report(key, records)["timeline"]
    return html(pages.incident(key, actions, timeline, account.name, inbox.signer.csrf(session.sid)))


def _now() -> int:
    return int(time.time())
