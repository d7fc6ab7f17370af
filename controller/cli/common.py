"""What every command shares: the consoles, the --json and --address options, styles, and error exits.

Output conventions, kept in one place so every command honours them: tables for people on stdout, notes and
errors on stderr, and with --json exactly one JSON document per line on stdout. Anything that came from an
alert, a person or the ledger is passed through `escape` before Rich sees it: alert text must never become
markup (a fake `[link=...]` in a User-Agent).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.models import Verdict

if TYPE_CHECKING:  # the ledger (SQLModel) and the workflow contracts load only for the commands that use them
    from autonomy_controller.controller.ledger import Ledger, LedgerRecord
    from autonomy_controller.workflows.contracts import ActionStatus

T = TypeVar("T")

PIPE_WIDTH = 200
"""Columns for output that is not a terminal (a pipe, a log, CI), where Rich would otherwise assume 80 and fold
wide tables into columns a few letters wide; COLUMNS, when set, still wins."""


def make_console(stderr: bool = False) -> Console:
    """The one place the CLI's consoles are made: the terminal's width on a terminal, PIPE_WIDTH elsewhere."""
    made = Console(stderr=stderr)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = PIPE_WIDTH
    return made


console = make_console()
err_console = make_console(stderr=True)

VERDICT_STYLE = {
    Verdict.EXECUTE: "bold green",
    Verdict.APPROVE: "bold yellow",
    Verdict.RECOMMEND: "cyan",
    Verdict.DENY: "bold red",
}


@cache
def status_styles() -> dict[ActionStatus, str]:
    """Each action status's style; built on first use, so commands without statuses never load the contracts."""
    from autonomy_controller.workflows.contracts import ActionStatus

    return {
        ActionStatus.VERIFIED: "green",
        ActionStatus.AWAITING_REVERT: "green",
        ActionStatus.REVERTED: "green",
        ActionStatus.AWAITING_APPROVAL: "bold yellow",
        ActionStatus.EXECUTING: "yellow",
        ActionStatus.PLANNED: "dim",
        ActionStatus.NOT_RUN: "cyan",
        ActionStatus.SHADOW: "magenta",
        ActionStatus.HELD: "magenta",
        ActionStatus.REJECTED: "red",
        ActionStatus.TIMED_OUT: "red",
        ActionStatus.FAILED: "bold red",
        ActionStatus.VERIFICATION_FAILED: "bold red",
        ActionStatus.COMPENSATED: "red",
    }


JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document per line instead of tables.")]
IncidentArg = Annotated[str, typer.Argument(help="Incident key, e.g. sqli:198.51.100.66 (see `incidents list`).")]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Temporal frontend host:port. Default: AUTONOMY_TEMPORAL_ADDRESS, else 127.0.0.1:7233 "
        "(where `autonomy server` listens).",
        show_default=False,
    ),
]

TrustNativeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust-native",
        metavar="SOURCE",
        help="Read our own Alert JSON that names SOURCE (auth-log, modsecurity3, suricata, an EDR's name) as that "
        "sensor's facts: for a shipper you run that translates the real sensor into our JSON. Repeat per source. "
        "Default: none. Without it a native record is a claim: kept and shown, but triage reads none of its raw "
        "record, severity, confidence or blocked flag as a sensor's (docs/sensors.md, Provenance). The sensors' own "
        "formats need no trust: our adapters parse them.",
        show_default=False,
    ),
]


def trusted_native(names: list[str] | None) -> frozenset[str]:
    """The --trust-native sources, checked (exit 2 naming a bad one)."""
    from autonomy_controller.controller.ingest.native import trusted_sources  # lazy: --help loads no ingest

    try:
        return trusted_sources(names or ())
    except ValueError as exc:
        fail(str(exc), 2)


def temporal_address(option: str | None, settings: Settings) -> str:
    """--address wins over AUTONOMY_TEMPORAL_ADDRESS, which wins over the local default."""
    return option or settings.temporal_address


def redacted(url: str) -> str:
    """A database URL fit for a terminal or a log: the password (AUTONOMY_LEDGER_URL may carry one) masked."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def emit_json(document: Any) -> None:
    """One JSON document on one stdout line (dates and paths as strings): what scripts and jq consume."""
    sys.stdout.write(json.dumps(document, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """Say what went wrong on stderr (escaped: it may quote untrusted text) and exit with `code`."""
    err_console.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(code)


def incident_records(ledger: Ledger, key: str) -> list[LedgerRecord]:
    """The incident's ledger records, or exit 1 naming the incident: a command about nothing has nothing to say."""
    records = ledger.records(key)
    if not records:
        fail(f"the ledger has no records for incident {key} (see `autonomy incidents list`)")
    return records


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one command's async body; a Ctrl-C ends it quietly (exit 130) instead of with a traceback."""
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        err_console.print("[dim]interrupted[/]")
        raise typer.Exit(130) from None


def status_text(status: ActionStatus) -> str:
    return f"[{status_styles().get(status, '')}]{status.value}[/]"


def verdict_text(verdict: str) -> str:
    try:
        return f"[{VERDICT_STYLE[Verdict(verdict)]}]{verdict}[/]"
    except ValueError:
        return escape(verdict)


def when(moment: datetime | None) -> str:
    """A timestamp for a table cell: to the second, with its zone, or '-'."""
    return moment.isoformat(timespec="seconds") if moment else "-"


def cell(text: object, limit: int = 120) -> str:
    """Untrusted text for a table cell: escaped and cut to `limit` characters."""
    value = str(text)
    return escape(value if len(value) <= limit else value[: limit - 3] + "...")
