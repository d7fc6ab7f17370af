"""The read API: incidents (list with filters, one with each action's state) and reports.

The same reads as `autonomy incidents list|show` and `autonomy report`: the ledger for what happened, the
workflow's `status` query for what happens now (workflows/operations.py), falling back to the ledger when
Temporal or a worker does not answer, saying so.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.controller.oversight.reports import build_report, render_markdown
from autonomy_controller.controller.service.auth import require, service_of
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.controller.service.tokens import Scope, TokenEntry
from autonomy_controller.workflows.contracts import IncidentStatus
from autonomy_controller.workflows.operations import CONTROLLER_KEYS, LoopError, describe_and_read

router = APIRouter(tags=["incidents"])
Reader = Annotated[TokenEntry, Depends(require(Scope.READ))]
STATUS_READS = 16
"""Workflow status queries in flight at once for a list."""


class IncidentSummary(BaseModel):
    key: str
    alerts: int
    records: int
    sensors: list[str] = Field(description="the alerts' sources (modsecurity3, suricata, ocsf, native, ...)")
    levels: list[str] = Field(description="effective levels of the incident's decisions")
    workflow: str | None = Field(description="Temporal's execution status; None when Temporal was not reached")
    phase: str | None
    actions: dict[str, int] = Field(description="action count per status, from the workflow")
    note: str | None = Field(description="why there is no workflow view")


class IncidentList(BaseModel):
    incidents: list[IncidentSummary]
    temporal: str | None = Field(description="why Temporal was not asked (None: it was)")


class IncidentDetail(BaseModel):
    key: str
    view: str = Field(description="'workflow' (the status query, live) or 'ledger' (what the records show)")
    workflow: str | None = None
    status: IncidentStatus | None = Field(None, description="the workflow's status: each action's state")
    actions: list[dict[str, Any]] = Field(
        default_factory=list, description="the ledger's view of each action (decision, approvals, steps)"
    )
    note: str | None = None


class ReportFormat(StrEnum):
    JSON = "json"
    MARKDOWN = "markdown"


def _summary(service: Service, key: str, records: int) -> IncidentSummary:
    rows = service.ledger.records(key, [RecordKind.ALERT, RecordKind.DECISION])
    alerts = [r.payload for r in rows if r.kind is RecordKind.ALERT]
    levels = {str(r.payload.get("effective_level")) for r in rows if r.kind is RecordKind.DECISION}
    return IncidentSummary(
        key=key,
        alerts=len(alerts),
        records=records,
        sensors=sorted({str(a.get("source")) for a in alerts}),
        levels=sorted(levels - {"None"}),
        workflow=None,
        phase=None,
        actions={},
        note=None,
    )


async def _workflow_view(service: Service, row: IncidentSummary, limit: asyncio.Semaphore) -> None:
    async with limit:
        try:
            row.workflow, status = await describe_and_read(await service.client(), row.key)
        except (LoopError, Unavailable) as exc:
            row.note = str(exc)
            return
    row.phase = status.phase
    for action in status.actions:
        row.actions[action.status.value] = row.actions.get(action.status.value, 0) + 1


@router.get("/v1/incidents", summary="Incidents in the ledger, with each workflow's phase")
async def list_incidents(
    request: Request,
    _reader: Reader,
    phase: Annotated[str | None, Query(description="collecting, planning, guarding, acting, reporting, closed")] = None,
    level: Annotated[str | None, Query(description="an effective level of one of its decisions (L1-L5)")] = None,
    source: Annotated[str | None, Query(description="a sensor among its alerts' sources (suricata, ...)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> IncidentList:
    service = service_of(request)
    heads = [h for h in service.ledger.incidents() if not h.incident_key.startswith(CONTROLLER_KEYS)]
    summaries = (_summary(service, h.incident_key, h.count) for h in heads)
    matching = (
        r for r in summaries if (level is None or level in r.levels) and (source is None or source in r.sensors)
    )
    try:
        await service.client()
    except Unavailable as exc:  # the ledger's view; a phase only a workflow tells matches nothing
        rows = [] if phase is not None else list(islice(matching, limit))
        return IncidentList(incidents=rows, temporal=str(exc))
    # Temporal is asked about the rows returned, not every incident in the ledger: a page costs `limit` queries
    # (a phase filter asks chunk by chunk until it has `limit`)
    reads, rows = asyncio.Semaphore(STATUS_READS), []
    chunk = limit if phase is None else STATUS_READS
    while len(rows) < limit and (batch := list(islice(matching, chunk))):
        await asyncio.gather(*(_workflow_view(service, row, reads) for row in batch))
        rows += [r for r in batch if phase is None or r.phase == phase]
    return IncidentList(incidents=rows[:limit], temporal=None)


@router.get("/v1/incidents/{key}", summary="One incident: each action's state", responses={404: {}})
async def show_incident(request: Request, key: str, _reader: Reader) -> IncidentDetail:
    service = service_of(request)
    try:
        execution, status = await describe_and_read(await service.client(), key)
        return IncidentDetail(key=key, view="workflow", workflow=execution, status=status)
    except (LoopError, Unavailable) as exc:
        note = str(exc)
    records = service.ledger.records(key)
    if not records:
        raise HTTPException(404, f"no incident {key!r}: neither Temporal nor the ledger knows it")
    return IncidentDetail(key=key, view="ledger", actions=build_report(key, records)["actions"], note=note)


@router.get(
    "/v1/incidents/{key}/report",
    summary="The incident's report, built from the ledger alone (JSON, or Markdown)",
    responses={200: {"content": {"application/json": {}, "text/markdown": {}}}, 404: {}},
)
async def incident_report(request: Request, key: str, _reader: Reader, format: ReportFormat = ReportFormat.JSON) -> Any:
    records = service_of(request).ledger.records(key)
    if not records:
        raise HTTPException(404, f"the ledger has no records for incident {key!r}")
    report = build_report(key, records)
    if format is ReportFormat.MARKDOWN:
        return PlainTextResponse(render_markdown(report), media_type="text/markdown; charset=utf-8")
    return report
