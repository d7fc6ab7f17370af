"""`autonomy audit trail INCIDENT`: why each action of an incident ran (or did not), from evidence alone.

It joins the ledger (what was decided, on what evidence, by whom) with Temporal's history of every run of
the incident's workflow (what the orchestrator actually did), per action, and writes the narrative as
Markdown and/or HTML beside the incident reports. Without Temporal the trail is still written, from the
ledger alone, and says so; nothing here writes to the ledger or to Temporal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from autonomy_controller.controller.approver_keys import ApproverKeys, ApproverKeysError, load_configured
from autonomy_controller.controller.cli.common import (
    AddressOption,
    IncidentArg,
    JsonFlag,
    console,
    emit_json,
    err_console,
    fail,
    incident_records,
    run_async,
)
from autonomy_controller.controller.cli.common import temporal_address as address_of
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import ExportFormatError, Ledger, LedgerRecord, observations, verify_export
from autonomy_controller.controller.oversight.trail import Trail, TrailFormat, build_trail, write_trail
from autonomy_controller.workflows.operations import workflow_histories


def approver_keys(settings: Settings) -> ApproverKeys | None:
    """Today's approver keys, to re-verify signed votes; None (votes then say "not re-checked") if unusable."""
    try:
        return load_configured(settings.approver_keys_file)
    except ApproverKeysError as exc:
        err_console.print(f"[yellow]signed votes not re-checked: {escape(str(exc))}[/]")
        return None


def trail_from_export(path: Path, incident: str, keys: ApproverKeys | None = None) -> Trail:
    """The trail from an `autonomy audit export` file alone: no database, no Temporal (an auditor's copy).

    The export's ledger part is re-verified (hashes and chain to its head) exactly as the live ledger would be.
    """
    try:
        document = json.loads(path.read_text())
        ledger_doc, histories = document["ledger"], document["temporal"]
        verified = verify_export(ledger_doc)
        records = [LedgerRecord.model_validate(record) for record in ledger_doc["records"]]
    except (OSError, ValueError, KeyError, TypeError, ExportFormatError) as exc:
        fail(f"{path}: not a readable `autonomy audit export` document: {exc}", 2)
    if document.get("incident_key") != incident:
        fail(f"{path} exports incident {document.get('incident_key')}, not {incident}", 2)
    return build_trail(incident, records, histories, verified, keys=keys)


async def collect_trail(ledger: Ledger, incident: str, address: str, keys: ApproverKeys | None = None) -> Trail:
    """The trail from the ledger and whatever Temporal still holds (an absent history is noted, not fatal)."""
    records = incident_records(ledger, incident)
    histories = await workflow_histories(address, incident)
    observed = observations.case_records(ledger, incident)
    return build_trail(incident, records, histories, ledger.verify(incident), keys=keys, observed=observed)


def _warn(trail: Trail) -> None:
    """What an auditor must not miss, on stderr so stdout stays the paths (or the JSON)."""
    if not trail.history.available:
        err_console.print(
            f"[yellow]workflow history absent: {escape(str(trail.history.reason))}; the trail is from the ledger "
            "alone[/]"
        )
    elif trail.disagreement_count:
        err_console.print(f"[bold red]the ledger and the history disagree in {trail.disagreement_count} place(s)[/]")
    if not trail.ledger.ok:
        err_console.print(f"[bold red]{escape(trail.ledger.summary)}[/]")


def audit_trail(
    incident: IncidentArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the trail files. Default: <state dir>/reports.")
    ] = None,
    fmt: Annotated[TrailFormat, typer.Option("--format", help="Markdown, HTML, or both.")] = TrailFormat.BOTH,
    from_export: Annotated[
        Path | None,
        typer.Option(
            "--from-export",
            exists=True,
            dir_okay=False,
            help="Build it from an `audit export` file instead of the ledger and Temporal (offline).",
        ),
    ] = None,
    address: AddressOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write one narrative per action: alert evidence, proposal, risk, policy decision, approvals (unsigned
    votes marked), pre-flight, execution, verification, revert, each line citing a ledger seq or a workflow
    history event, with every disagreement between the two named.

    Prints the files' paths; with --json, one document with the paths and the whole trail. Exit 1 when the
    ledger's hash chain is broken or the ledger and the history disagree (the files are written either way,
    naming where); an absent history is a warning, not a failure: the ledger alone still answers.
    """
    settings = Settings()
    keys = approver_keys(settings)

    async def body() -> Trail:
        with Ledger.from_url(settings.ledger_url) as ledger:
            return await collect_trail(ledger, incident, address_of(address, settings), keys)

    trail = trail_from_export(from_export, incident, keys) if from_export else run_async(body())
    paths = write_trail(trail, out or settings.reports_dir, fmt)
    _warn(trail)
    if as_json:
        emit_json({"files": [str(p) for p in paths], "trail": trail.model_dump(mode="json")})
    else:
        for path in paths:
            console.print(f"trail: {escape(str(path))}", soft_wrap=True)  # a path to copy: never wrapped
    if trail.disagreement_count or not trail.ledger.ok:
        raise typer.Exit(1)
