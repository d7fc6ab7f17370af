"""The inbox's routes: sign-in, the pending actions of the signed-in person, votes, an incident's timeline.

A vote goes through `controller.cli.ops.vote`, the function `autonomy approve|reject` calls: the workflow's
update and its validator decide (separation of duties, quorum, no self-approval, no planner identities), and
a refused vote is recorded in the ledger with its reason. The inbox only chooses *who* votes: the identity of
the signed-in account, never a form field.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from autonomy_controller.controller.approver_keys import ApproverKeysError, ApproverSecret, load_configured, load_secret
from autonomy_controller.controller.cli.ops import CONTROLLER_KEYS, LoopError, describe_and_read
from autonomy_controller.controller.cli.ops import vote as cast
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.reports import build_report
from autonomy_controller.controller.service.inbox import pages
from autonomy_controller.controller.service.inbox.accounts import Account, AccountError, AccountStore, accounts_file
from autonomy_controller.controller.service.inbox.sessions import Session, Signer
from autonomy_controller.controller.service.inbox.sessions import load_secret as load_session_secret
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.workflows.approvals import VoteRefused
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStatus, VoteChoice

router = APIRouter(prefix="/inbox", include_in_schema=False)
SESSION_COOKIE = "inbox_session"
PRE_COOKIE = "inbox_pre"
PRE_SECONDS = 600
MAX_FORM_BYTES = 16 * 1024
STATUS_READS = 16


@dataclass(frozen=True)
class InboxConfig:
    secure_cookies: bool = True
    """False only for plain http on 127.0.0.1 (tests): a Secure cookie is never sent over http."""
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
    keys_dir: Path
    """Service-held approver keys, `<identity>.key` (approvers keygen files): votes signed on their behalf."""


class Refused(Exception):
    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(text)
        self.status, self.title, self.text = status, title, text


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
            keys_dir=state_dir / "inbox-approver-keys",
        )
        app.state.inbox = found
    return found


def html(body: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(body, status_code=status)
    response.headers["X-Frame-Options"] = "DENY"
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


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _sign_in_page(inbox_of(request))


@router.post("/login")
async def login(request: Request) -> Response:
    inbox = inbox_of(request)
    try:
        fields = await form(request)
        pre = inbox.signer.open("pre", request.cookies.get(PRE_COOKIE))
        check_csrf(inbox, str(pre["sid"]) if pre else "", fields)
        try:
            account = await asyncio.to_thread(
                inbox.accounts.authenticate, fields.get("name", ""), fields.get("password", "")
            )
        except AccountError as exc:
            raise Refused(503, "Unavailable", f"the accounts file is unreadable: {exc}") from exc
    except Refused as exc:
        return refusal(exc)
    if account is None:
        return _sign_in_page(inbox, "wrong name or password, or the account is disabled", fields.get("name", ""), 401)
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
    except Refused as exc:
        return refusal(exc)
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
        items = await pending_for(service, account.identity, inbox.config.incidents_scanned)
    except Unavailable as exc:
        return html(pages.message("Unavailable", f"Temporal does not answer: {exc}"), 503)
    notes = [] if inbox.config.secure_cookies else ["session cookies are not Secure: serve this over https"]
    return html(pages.inbox(items, account.name, account.identity, inbox.signer.csrf(session.sid), notes))


async def pending_for(service: Service, identity: str, scanned: int) -> list[pages.Pending]:
    """The actions awaiting approval whose workflow says `identity` may still vote (ApprovalSpec, waiting_on)."""
    client = await service.client()
    heads = [h for h in service.ledger.incidents() if not h.incident_key.startswith(CONTROLLER_KEYS)][-scanned:]
    limit = asyncio.Semaphore(STATUS_READS)

    async def read(key: str) -> IncidentStatus | None:
        async with limit:
            try:
                return (await describe_and_read(client, key))[1]
            except LoopError:
                return None

    statuses = await asyncio.gather(*(read(h.incident_key) for h in heads))
    items: list[pages.Pending] = []
    for status in statuses:
        if status is None:
            continue
        mine = [a for a in status.actions if a.status is ActionStatus.AWAITING_APPROVAL and identity in a.waiting_on]
        if not mine:
            continue
        report = build_report(status.key, service.ledger.records(status.key))
        by_id: dict[str, dict[str, Any]] = {a["action_id"]: a for a in report["actions"]}
        alerts = [r.payload for r in service.ledger.records(status.key, [RecordKind.ALERT])][-pages.EVIDENCE_SHOWN :]
        for state in mine:
            entry = by_id.get(state.action_id, {})
            items.append(
                pages.Pending(
                    incident=status.key,
                    run_id=status.run_id,
                    state=state,
                    decision=entry.get("decision") or {},
                    params=entry.get("params") or {},
                    rationale=entry.get("rationale"),
                    alerts=alerts,
                )
            )
    return sorted(items, key=lambda p: (p.state.deadline is None, p.state.deadline or 0, p.incident))


@router.post("/vote")
async def vote(request: Request) -> Response:
    inbox = inbox_of(request)
    service: Service = request.app.state.service
    try:
        who = signed_in(request, inbox)
        if who is None:
            raise Refused(401, "Refused", "sign in first: a vote needs a session")
        account, session = who
        fields = await form(request)
        check_csrf(inbox, session.sid, fields)
        try:
            choice = VoteChoice(fields.get("choice", ""))
        except ValueError as exc:
            raise Refused(400, "Refused", "choice is approve or reject") from exc
        incident, action = fields.get("incident", ""), fields.get("action_id", "")
        secret = service_key(inbox, service, account.identity)
        try:
            result = await cast(
                await service.client(),
                service.ledger,
                incident,
                action,
                account.identity,
                choice.value,
                fields.get("comment", ""),
                secret,
            )
        except VoteRefused as exc:
            raise Refused(403, "Vote refused", str(exc)) from exc
        except (LoopError, Unavailable) as exc:
            raise Refused(503, "Unavailable", str(exc)) from exc
    except Refused as exc:
        return refusal(exc)
    state = result.state
    how = f"signed with the service-held key {secret.key_id}" if secret else "unsigned"
    text = f"{account.identity} {choice.value}s {state.action} ({state.action_id}) of {incident} ({how})"
    text += f": now {state.status.value}"
    return html(pages.message("Vote recorded", text, f"/inbox/incidents/{incident}"))


def service_key(inbox: Inbox, service: Service, identity: str) -> ApproverSecret | None:
    """The key the service holds for `identity`, or None when it holds none and unsigned votes are allowed.

    Under `require_signed` a vote the service cannot sign is refused here, before it reaches the workflow
    (which would refuse it too): the inbox never turns a signed-vote deployment into an unsigned one."""
    path = inbox.keys_dir / f"{identity}.key"
    if path.is_file():
        try:
            secret = load_secret(path)
        except ApproverKeysError as exc:
            raise Refused(503, "Unavailable", f"the service's key for {identity} is unusable: {exc}") from exc
        if secret.approver != identity:
            raise Refused(503, "Unavailable", f"{path} is {secret.approver}'s key, not {identity}'s")
        return secret
    try:
        required = load_configured(service.settings.approver_keys_file).require_signed
    except ApproverKeysError as exc:
        raise Refused(503, "Unavailable", f"the approver keys config is unusable: {exc}") from exc
    if required:
        raise Refused(
            403,
            "Vote refused",
            f"this deployment requires signed votes and the service holds no key for {identity}: "
            "vote with `autonomy approve --key` instead",
        )
    return None


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
