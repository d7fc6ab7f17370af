"""For auditors: incident reports, the ledger's records, its hash-chain check, and a one-file export.

All of it reads the ledger (and, for the export, Temporal's history); nothing here writes to either, so an
auditor can run these against a copy of production state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import (
    AddressOption,
    IncidentArg,
    JsonFlag,
    cell,
    console,
    emit_json,
    err_console,
    incident_records,
    run_async,
)
from autonomy_controller.controller.cli.common import temporal_address as address_of
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.oversight.reports import build_report, write_incident_report
from autonomy_controller.workflows.operations import export_audit


def report(
    incident: IncidentArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report. Default: <state dir>/reports.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the incident's report (Markdown for people, JSON for tools) from the ledger alone.

    Every line of it names the ledger seq it comes from. Works for open incidents too (a snapshot).
    """
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        incident_records(ledger, incident)
        paths = write_incident_report(ledger, incident, out or settings.reports_dir)
    if as_json:
        document = json.loads(paths.json.read_text())
        emit_json(
            {"markdown": str(paths.markdown), "json": str(paths.json), "sha256": paths.sha256, "report": document}
        )
        return
    console.print(f"report: {escape(str(paths.markdown))}", soft_wrap=True)  # a path to copy: never wrapped
    console.print(f"[dim]json: {escape(str(paths.json))} (sha256 {paths.sha256})[/]", soft_wrap=True)


def audit_show(incident: IncidentArg, as_json: JsonFlag = False) -> None:
    """The incident's ledger records in order, one row each: seq, time, kind, actor and what happened."""
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        records = incident_records(ledger, incident)
    timeline = build_report(incident, records)["timeline"]
    if as_json:
        for record, row in zip(records, timeline, strict=True):
            emit_json({**record.to_json_dict(), "summary": row["what"]})
        return
    table = Table(title=f"{escape(incident)}: {len(records)} ledger record(s)")
    for column in ("seq", "time", "kind", "actor", "summary"):
        table.add_column(column, overflow="fold")
    for record, row in zip(records, timeline, strict=True):
        table.add_row(
            str(record.seq),
            record.created_at.isoformat(timespec="seconds"),
            record.kind.value,
            escape(record.actor),
            cell(row["what"], 200),
        )
    console.print(table)


def audit_verify(
    incident: Annotated[str | None, typer.Argument(help="Check only this incident's chain.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every hash and link of the ledger (or one incident) and name the first tampered record.

    Exit 0 when the chain holds, 1 when it does not. Trusts nothing the database enforces: a row edited
    around the append-only triggers is exactly what it is for.
    """
    settings = Settings()
    with Ledger.from_url(settings.ledger_url) as ledger:
        verified = ledger.verify(incident)
    if as_json:
        emit_json({"ok": verified.ok, **verified.model_dump(mode="json")})
    elif verified.ok:
        console.print(f"[green]{escape(verified.summary())}[/]")
    else:
        err_console.print(f"[bold red]{escape(verified.summary())}[/]")
        for problem in verified.problems[1:6]:
            err_console.print(f"  [red]{escape(str(problem))}[/]")
    if not verified.ok:
        raise typer.Exit(1)


def audit_export(
    incident: IncidentArg,
    out: Annotated[Path | None, typer.Option("--out", help="Write the document here instead of stdout.")] = None,
    address: AddressOption = None,
) -> None:
    """One JSON document with everything an auditor needs about one incident.

    It holds Temporal's workflow history of every run (marked absent, with the reason, when Temporal is
    unreachable), the ledger export (records + head, checkable offline), the policy revision(s) its decisions
    were made under, and the level files as they are now, each with its sha256.
    """
    settings = Settings()

    async def body() -> dict[str, Any]:
        with Ledger.from_url(settings.ledger_url) as ledger:
            incident_records(ledger, incident)
            return await export_audit(settings, ledger, incident, address_of(address, settings))

    document = run_async(body())
    if not document["temporal"]["available"]:
        err_console.print(f"[yellow]workflow history absent: {escape(document['temporal']['reason'])}[/]")
    if out is None:
        emit_json(document)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    console.print(f"audit export: {escape(str(out))}", soft_wrap=True)
