"""The demo's machinery: the whole loop, for real, on one machine, in a minute.

One embedded Temporal dev server (in memory) with a namespace per level, so the same incident key can run at
L1, L2 and L3 side by side without workflow ids colliding; per level a worker in this process with its own
state folder (ledger, tickets, reports), so each level's audit trail stands alone. notify.webhook posts to a
tiny HTTP receiver on 127.0.0.1, so notifications really leave the process and are counted on arrival.

Containment runs against real enforcement points that cannot touch this machine: as root, nftables in a
throwaway network namespace made for the run and deleted after it (its tables go with it), and identity
containment on a throwaway OpenLDAP slapd (controller/lab/directory_server.py: its own folder, database and
loopback ports, never this machine's directory) holding the sample alerts' accounts and those of
policies/identities/data.yaml (its privileged ones in the directory's protected group), stopped and deleted after
the run; there the identities data's iam-admins approve the account disables waiting on them with signed votes
(demo_identity.py). Without root there are none, and
containment fails closed ("no adapter configured"), counted as failed everywhere it is shown. A user's own
AUTONOMY_ENFORCEMENT_FILE is never used by the demo.

Workflows that wait for a person (approval) or a timer (TTL revert) would wait for hours: the demo never
awaits their results. It polls each incident's status until it is closed or parked on such a wait, writes a
snapshot report for the parked ones, and then stops the worker and the server. With `demo --serve` the
teardown waits instead: `run_demo`'s `linger` (demo_serve.py) keeps the last level served until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import ldap3
import yaml
from pydantic import TypeAdapter, ValidationError

from autonomy_controller.actions.params import UserName
from autonomy_controller.controller.cli.demo_identity import (
    DemoApprovers,
    IdentityOutcome,
    approve_disables,
    demo_approver_keys,
    identity_outcomes,
    probe_password_file,
)
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.runtime import EngineName
from autonomy_controller.controller.ingest import DeadLetter, IngestReport, read_alerts
from autonomy_controller.controller.lab.directory_packages import DirectoryPackagesMissing, ensure_slapd
from autonomy_controller.controller.lab.directory_server import (
    ADMINS,
    DEFAULT_POLICY,
    PEOPLE,
    SERVICE_DN,
    DirectoryError,
    Slapd,
)
from autonomy_controller.controller.lab.network import LabNetworkError, run_ip
from autonomy_controller.controller.lab.packages import find_binary
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.ledger.outcomes import IncidentEpisodes, outcomes
from autonomy_controller.controller.models import Alert, Level
from autonomy_controller.controller.oversight.reports import write_incident_report
from autonomy_controller.controller.oversight.scorecards import Scorecard, build_approver_cards, build_scorecards
from autonomy_controller.controller.oversight.scorecards_html import scorecards_page
from autonomy_controller.workflows.client import SubmitReport, Submitter, incident_status
from autonomy_controller.workflows.contracts import ActionStatus, IncidentStatus
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.worker import connect, incident_worker

DEMO_CHANNEL = "soc-alerts"
"""The channel the shipped playbooks notify (workflows/playbooks/*.yaml)."""
PARKED = frozenset({ActionStatus.AWAITING_APPROVAL, ActionStatus.AWAITING_REVERT})
"""Statuses that wait for a person or a long timer: an incident whose actions all rest is done for the demo."""
MOVING = frozenset({ActionStatus.PLANNED, ActionStatus.EXECUTING})
DEMO_TOTAL = "all scopes together"
"""The scope label of each level's totals card on the demo's scorecards page."""


@dataclass(frozen=True)
class Timings:
    settle_seconds: float = 0.5
    quiet_seconds: float = 1.0
    timeout_seconds: float = 90.0
    """Per level: how long to wait for incidents to close or park before reporting what is still moving."""


class WebhookReceiver:
    """A local HTTP endpoint that accepts JSON POSTs and keeps them: the demo's SOC chat channel."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    document: Any = json.loads(body)
                except ValueError:
                    document = body.decode("utf-8", "replace")
                with lock:
                    received.append({"path": self.path, "body": document})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
                pass  # the demo prints its own summary; no access log on the terminal

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/{DEMO_CHANNEL}"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class EnforcementPoint:
    """Where the demo's containment is enforced: `netns` names the throwaway namespace of network.* and host.*,
    `directory` the throwaway slapd of identity.*; None when there is none (`why` and `directory_why` say why,
    in words for the demo's tables)."""

    netns: str | None
    why: str
    directory: Slapd | None = None
    directory_why: str = "not root"
    accounts: tuple[str, ...] = ()
    """The accounts made in the directory (its protected group's members included)."""

    @property
    def label(self) -> str:
        if self.netns:
            return f"nftables in throwaway network namespace {self.netns} (deleted after the demo)"
        return f"none: {self.why}; containment fails closed, counted as failed"

    @property
    def directory_label(self) -> str:
        if self.directory:
            return (
                f"throwaway OpenLDAP slapd on {self.directory.url} with {len(self.accounts)} sample accounts "
                "(stopped and deleted after the demo)"
            )
        return f"none: {self.directory_why}; identity containment fails closed, counted as failed"

    def as_dict(self) -> dict[str, Any]:
        directory = self.directory
        return {
            "netns": self.netns,
            "label": self.label,
            "directory": {"url": directory.url, "root": str(directory.root)} if directory else None,
            "directory_label": self.directory_label,
            "accounts": list(self.accounts),
        }


@dataclass(frozen=True)
class DemoAccounts:
    """Who the demo directory holds: every valid account name of the samples and of the identities data, and
    which of them are protected: the data's privileged accounts (admins, service accounts), members of the
    directory's protected group, never disabled by the adapter whatever a plan or its approvers say."""

    users: tuple[str, ...]
    protected: tuple[str, ...]


_USER_NAME: TypeAdapter[str] = TypeAdapter(UserName)


def _valid_names(names: Iterable[object]) -> set[str]:
    """Names fit for an account (alerts are untrusted input): the action parameter's own rule."""
    valid: set[str] = set()
    for name in names:
        try:
            valid.add(_USER_NAME.validate_python(name))
        except ValidationError:
            continue
    return valid


def demo_accounts(alerts: list[Alert], identities_file: Path) -> DemoAccounts:
    try:
        document = yaml.safe_load(identities_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        document = {}
    known = document.get("users") if isinstance(document, dict) else None
    known = known if isinstance(known, dict) else {}
    protected = _valid_names(
        name for name, entry in known.items() if isinstance(entry, dict) and entry.get("privileged")
    )
    users = _valid_names([a.user for a in alerts if a.user]) | _valid_names(known)
    return DemoAccounts(tuple(sorted(users)), tuple(sorted(protected)))


@contextmanager
def _throwaway_netns() -> Iterator[tuple[str | None, str]]:
    missing = [tool for tool in ("ip", "nft") if find_binary(tool) is None]
    if missing:
        yield None, f"{' and '.join(missing)} not installed"
        return
    netns = f"autonomy-demo-{os.getpid()}"
    try:
        run_ip("netns", "add", netns)
    except LabNetworkError as exc:
        yield None, f"could not make a network namespace ({exc})"
        return
    try:
        yield netns, "root"
    finally:
        run_ip("netns", "del", netns, check=False)


@contextmanager
def _throwaway_directory(accounts: DemoAccounts) -> Iterator[tuple[Slapd | None, str, dict[str, Any]]]:
    """A slapd of the demo's own (temp folder, loopback ports) holding the accounts, with their passwords in
    files as the adapter's probe accounts (verification binds as them); the `identity:` section for it."""
    try:
        ensure_slapd(install=False)  # the demo installs nothing; `make test` and the lab install slapd
    except DirectoryPackagesMissing as exc:
        yield None, str(exc), {}
        return
    slapd = Slapd(Path(tempfile.mkdtemp(prefix="autonomy-demo-slapd-")))
    try:
        try:
            slapd.start()
            probes: dict[str, dict[str, str]] = {}
            for user in accounts.users:
                _uid, dn, password = slapd.add_user(uid=user)
                secret = probe_password_file(slapd, user)
                secret.touch(mode=0o600)
                secret.write_text(password + "\n")
                probes[user] = {"password_file": str(secret)}
                if user in accounts.protected:
                    slapd.add_member(ADMINS, dn)
        except (DirectoryError, OSError, ldap3.core.exceptions.LDAPException) as exc:
            slapd.delete()
            yield None, f"could not provision a throwaway slapd ({exc})", {}
            return
        section = {
            "dialect": "openldap-ppolicy",
            "url": slapd.url,
            "bind_dn": SERVICE_DN,
            "password_file": str(slapd.service_password_file),
            "users_base": PEOPLE,
            "default_policy": DEFAULT_POLICY,
            "protected_groups": [ADMINS],
            "probe_accounts": probes,
        }
        yield slapd, "root", section
    finally:
        slapd.delete()


@contextmanager
def demo_enforcement(
    root: Path, accounts: DemoAccounts = DemoAccounts((), ())
) -> Iterator[tuple[EnforcementPoint, Path]]:
    """Real enforcement points that cannot touch this machine, when root: a new, empty network namespace for
    nftables and a throwaway slapd holding `accounts`, and an enforcement file pointing the adapters at them.
    Yields the points and the file to use (which does not exist when there is no point: the adapters are then
    absent and containment fails closed). Both are gone when the context exits."""
    file = root / "enforcement.yaml"
    if os.geteuid() != 0:
        yield EnforcementPoint(None, "not root", None, "not root"), file
        return
    with ExitStack() as stack:
        netns, why = stack.enter_context(_throwaway_netns())
        directory, directory_why, identity = stack.enter_context(_throwaway_directory(accounts))
        sections: dict[str, Any] = {}
        if netns:
            sections["nftables"] = {"netns": netns}
        if directory:
            sections["identity"] = identity
        if sections:
            header = (
                "# Written by `autonomy demo`: real nftables in a network namespace and a real slapd, both made\n"
                "# for this run and deleted after it.\n"
            )
            file.write_text(header + yaml.safe_dump(sections, sort_keys=False))
        made = accounts.users if directory else ()
        yield EnforcementPoint(netns, why, directory, directory_why, made), file


@contextmanager
def environment(changes: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) these environment variables for the block's duration; restored on exit."""
    saved = {name: os.environ.get(name) for name in changes}

    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(changes)
    try:
        yield
    finally:
        apply(saved)


def demo_environment(channels_file: Path, enforcement_file: Path) -> AbstractContextManager[None]:
    """Point notify.webhook at the demo's channels file, containment at the demo's enforcement file, and keep
    tickets inside each level's state folder, for the demo's duration only (the settings read these variables
    when used)."""
    return environment(
        {
            "AUTONOMY_CHANNELS_FILE": str(channels_file),
            "AUTONOMY_ENFORCEMENT_FILE": str(enforcement_file),
            "AUTONOMY_TICKETS_DIR": None,
        }
    )


@dataclass
class IncidentOutcome:
    status: IncidentStatus
    report_markdown: str | None = None
    report_json: str | None = None
    snapshot: bool = False
    """The report was written by the demo from the ledger because the incident is still open (parked)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.status.model_dump(mode="json"),
            "report": {"markdown": self.report_markdown, "json": self.report_json, "snapshot": self.snapshot},
        }


@dataclass
class LevelRun:
    level: Level
    state_dir: Path
    ledger_url: str
    submitted: SubmitReport
    incidents: dict[str, IncidentOutcome] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)
    """Incidents still moving when the level's timeout struck."""
    identity: list[IdentityOutcome] = field(default_factory=list)
    """The level's account disables and the directory's own answer (demo_identity.py)."""


@dataclass
class DemoResult:
    root: Path
    levels: list[LevelRun]
    ingest: IngestReport
    webhook_url: str
    notifications: list[dict[str, Any]]
    alerts: int
    enforcement: EnforcementPoint

    @property
    def scorecards_html(self) -> Path:
        return self.root / "scorecards.html"


def write_scorecards(result: DemoResult) -> None:
    """One scorecard page over every level's ledger: per level, its scopes, then the level's totals (the figures
    the demo's own table shows, so the two can be compared line by line)."""
    cards: list[Scorecard] = []
    approvers: list[IncidentEpisodes] = []
    for run in result.levels:
        with Ledger.from_url(run.ledger_url) as ledger:
            incidents = list(outcomes(ledger))
        approvers.extend(incidents)
        cards.extend(build_scorecards(incidents))
        cards.extend(build_scorecards(incidents, key=lambda _: (DEMO_TOTAL, f"{run.level.value} run")))
    levels = ", ".join(run.level.value for run in result.levels)
    subtitle = (
        f"demo at {levels}; containment enforced by {result.enforcement.label}; identity containment on "
        f"{result.enforcement.directory_label}"
    )
    result.scorecards_html.write_text(scorecards_page(cards, build_approver_cards(approvers), subtitle))


Progress = Callable[[Level, str, int, int], None]
"""(level, what is happening, done, total): the CLI turns it into a progress bar."""


@dataclass(frozen=True)
class Lingering:
    """What is still up when the levels have run, for `demo --serve` (demo_serve.py) to keep serving: the dev
    server with every level's namespace, the enforcement points, the webhook receiver, and the demo's approver
    keys file (None without a directory)."""

    result: DemoResult
    address: str
    approvers: DemoApprovers | None


Linger = Callable[[Lingering], Awaitable[None]]
"""Called once after the last level, before anything is torn down; the teardown waits for it to return."""


def prepare_root(base: Settings) -> Path:
    """`<state_dir>/demo`, emptied: each demo run starts from nothing and leaves its trail for inspection."""
    root = base.state_dir / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


EXAMPLE_FEEDS = frozenset({"edr", "identity-provider"})
"""The sources of the bundled example Alert JSON (examples/alerts/native-alerts.jsonl). The demo plays an operator
who runs those shippers and so declares them trusted feeds (`--trust-native`; docs/sensors.md, "Provenance")."""


def load_samples(files: list[Path], dead_letter: DeadLetter, report: IngestReport) -> list[Alert]:
    alerts: list[Alert] = []
    for path in files:
        alerts.extend(read_alerts(path, dead_letter=dead_letter, report=report, trusted=EXAMPLE_FEEDS))
    return alerts


def _resting(status: IncidentStatus) -> bool:
    """Closed, or every action rests and at least one waits on a person or a long timer."""
    if status.phase == "closed":
        return True
    if status.phase != "acting" or not status.actions:
        return False
    states = {a.status for a in status.actions}
    return not states & MOVING and bool(states & PARKED)


async def _watch(
    client: Any, keys: list[str], level: Level, timeout: float, progress: Progress
) -> tuple[dict[str, IncidentStatus], list[str]]:
    latest: dict[str, IncidentStatus] = {}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for key in keys:
            if key in latest and _resting(latest[key]):
                continue
            try:
                latest[key] = await incident_status(client, key)
            except Exception:  # not started yet, or a transient RPC error: ask again next round
                continue
        done = sum(1 for k in keys if k in latest and _resting(latest[k]))
        progress(level, "running incidents", done, len(keys))
        if done == len(keys) or asyncio.get_running_loop().time() > deadline:
            return latest, [k for k in keys if not (k in latest and _resting(latest[k]))]
        await asyncio.sleep(0.2)


async def run_level(
    address: str,
    level: Level,
    settings: Settings,
    alerts: list[Alert],
    engine: EngineName | None,
    timings: Timings,
    progress: Progress,
    approvers: DemoApprovers | None = None,
) -> LevelRun:
    """One level: a worker on the level's namespace, every sample alert submitted at that level, watched
    until each incident closes or parks; with `approvers`, the account disables waiting on them approved and
    watched again."""
    progress(level, "starting worker", 0, 1)
    client = await connect(address, namespace=namespace(level))
    async with incident_worker(client, settings, engine) as parts:
        submitter = Submitter(
            client,
            parts.ledger,
            level=level,
            settle_seconds=timings.settle_seconds,
            quiet_seconds=timings.quiet_seconds,
        )
        progress(level, "submitting alerts", 0, len(alerts))
        submitted = await submitter.add_all(alerts)
        keys = list(submitted.incidents)
        statuses, unsettled = await _watch(client, keys, level, timings.timeout_seconds, progress)
        if approvers is not None:
            progress(level, "iam-admins approving account disables", 0, 1)
            if await approve_disables(client, parts.ledger, statuses, approvers):
                statuses, unsettled = await _watch(client, keys, level, timings.timeout_seconds, progress)
        run = LevelRun(level, settings.state_dir, settings.ledger_url, submitted, unsettled=unsettled)
        for key in keys:
            status = statuses.get(key) or IncidentStatus(key=key, phase="unknown", alert_count=0)
            outcome = IncidentOutcome(status)
            if status.report:
                outcome.report_markdown, outcome.report_json = status.report["markdown"], status.report["json"]
            else:  # still open: a snapshot from the ledger, which already holds every step taken so far
                paths = await asyncio.to_thread(write_incident_report, parts.ledger, key, settings.reports_dir)
                outcome.report_markdown, outcome.report_json, outcome.snapshot = (
                    str(paths.markdown),
                    str(paths.json),
                    True,
                )
            run.incidents[key] = outcome
        progress(level, "done", len(keys), len(keys))
    return run


def namespace(level: Level) -> str:
    return f"demo-{level.value.lower()}"


def level_settings(base: Settings, root: Path, level: Level) -> Settings:
    """A level's own state folder (ledger, tickets, reports) under the demo's root; never a configured ledger."""
    return replace(base, state_dir=root / level.value, ledger_url_override=None)


async def run_demo(
    base: Settings,
    levels: list[Level],
    engine: EngineName | None,
    timings: Timings,
    progress: Progress,
    linger: Linger | None = None,
) -> DemoResult:
    """The sample alerts through the real loop at each level, one level after the other; with `linger`, that
    is awaited with the result before the teardown (`demo --serve`)."""
    root = prepare_root(base)
    ingest = IngestReport()
    alerts = load_samples(base.example_alert_files, DeadLetter(root / "dead-letter.jsonl"), ingest)
    channels_file = root / "channels.yaml"
    identities_file = base.policies_dir / "identities" / "data.yaml"
    runs: list[LevelRun] = []
    with (
        WebhookReceiver() as hook,
        demo_enforcement(root, demo_accounts(alerts, identities_file)) as (
            enforcement,
            enforcement_file,
        ),
        demo_environment(channels_file, enforcement_file),
        demo_approver_keys(root, identities_file, enforcement.directory) as approvers,
    ):
        channels = {"channels": {DEMO_CHANNEL: {"url": hook.url, "timeout_seconds": 5}}}
        channels_file.write_text(yaml.safe_dump(channels))
        namespaces = [arg for lv in levels for arg in ("--namespace", namespace(lv))]
        server = DevServer(extra_args=namespaces, log_file=root / "temporal.log")
        await asyncio.to_thread(server.start)
        try:
            for level in levels:
                settings = level_settings(base, root, level)
                run = await run_level(server.address, level, settings, alerts, engine, timings, progress, approvers)
                statuses = {key: outcome.status for key, outcome in run.incidents.items()}
                run.identity = await asyncio.to_thread(
                    identity_outcomes, run.ledger_url, statuses, enforcement.directory
                )
                runs.append(run)
            result = DemoResult(root, runs, ingest, hook.url, list(hook.received), len(alerts), enforcement)
            await asyncio.to_thread(write_scorecards, result)
            if linger is not None:
                await linger(Lingering(result, server.address, approvers))
        finally:
            await asyncio.to_thread(server.stop)
    return result
