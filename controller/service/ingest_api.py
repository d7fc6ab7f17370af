"""`POST /v1/alerts`: alerts in over HTTP, through the same Submitter as `autonomy submit`.

Accepted means durable: a 202 is sent only after every alert is in the ledger and every bad record is in the
dead-letter file with its exact bytes. The signals to the workflows follow from the outbox (outbox.py), in
batches shared by all requests; a crash before they are sent is made good at the next start. The order is
chosen so a failure leaves nothing half-acknowledged: the body is read and checked whole first (a limit
refuses the whole request, nothing written), then the ledger (a failure: 503 with Retry-After, and the
client's retry attaches nothing twice: the ledger's idempotency keys and the workflow both dedup by alert id),
then the dead letters, then the answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from autonomy_controller.controller.ledger.errors import LedgerError
from autonomy_controller.controller.service.auth import require, service_of
from autonomy_controller.controller.service.intake import BodyRefused, Intake, read_body
from autonomy_controller.controller.service.outbox import Accepted, Backlogged
from autonomy_controller.controller.service.state import Service, Unavailable
from autonomy_controller.controller.service.tokens import Scope, TokenEntry

router = APIRouter(tags=["ingest"])


class RecordError(BaseModel):
    index: int = Field(description="0-based position of the record among the body's records")
    line: int = Field(description="line of the (inflated) body where the record starts")
    reason: str


class IngestResult(BaseModel):
    request_id: str = Field(description="also the dead-letter entries' source: http:<token name>:<request id>")
    records: int
    accepted: int = Field(description="alerts new to the ledger")
    duplicate: int = Field(description="alerts the ledger held already (a retry): attached nothing again")
    dead_lettered: int
    skipped: int = Field(description="valid records that are not alerts (counted by reason, as `ingest` does)")
    incidents: dict[str, int] = Field(description="alerts per incident key (new and duplicate)")
    errors: list[RecordError]


def _unavailable(service: Service, why: str) -> HTTPException:
    service.metrics.refused.labels("503").inc()
    return HTTPException(503, why, headers={"Retry-After": str(service.config.retry_after_seconds)})


async def _body(request: Request, service: Service) -> bytes:
    limit = service.config.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"body of {declared} bytes exceeds the {limit}-byte max_body_bytes limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyRefused(413, f"body exceeds the {limit}-byte max_body_bytes limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _submit(service: Service, intake: Intake) -> Accepted:
    """The alerts into the ledger and the outbox's queue; Unavailable on failure."""
    config = service.config
    try:
        accepted = await asyncio.wait_for(service.outbox.accept(intake.alerts), config.submit_timeout_seconds)
    except TimeoutError as exc:
        raise Unavailable(f"the ledger did not answer within {config.submit_timeout_seconds} s") from exc
    except Backlogged as exc:
        raise Unavailable(f"Temporal is behind: {exc}") from exc
    except (SQLAlchemyError, LedgerError) as exc:
        raise Unavailable(f"the ledger refused the write: {type(exc).__name__}") from exc
    return accepted


@router.post(
    "/v1/alerts",
    status_code=202,
    summary="Submit alerts (JSON object, JSON array, NDJSON; gzip or not; any format `ingest` reads)",
    responses={
        400: {"description": "a body that is not records at all (empty, broken gzip)"},
        401: {"description": "no, unknown or revoked token"},
        403: {"description": "the token lacks the ingest scope"},
        413: {"description": "a limit (named in the detail): max_body_bytes, max_decompressed_bytes, max_records"},
        429: {"description": "too many requests submitting at once; retry after Retry-After"},
        503: {"description": "Temporal or the ledger unavailable; nothing was acknowledged; retry after Retry-After"},
    },
)
async def post_alerts(request: Request, sender: Annotated[TokenEntry, Depends(require(Scope.INGEST))]) -> IngestResult:
    """Each record's format is detected on its own; a bad record is dead-lettered with its exact bytes and
    listed by index and reason, and never takes the good ones with it. Idempotent by alert id."""
    service = service_of(request)
    with service.outbox.receiving():  # while requests come in, the outbox gathers their signals
        return await _ingest(request, service, sender)


async def _ingest(request: Request, service: Service, sender: TokenEntry) -> IngestResult:
    try:
        body = await _body(request, service)
        content_type, trusted = request.headers.get("content-type", ""), frozenset(sender.trust_native)
        intake = await asyncio.to_thread(read_body, body, content_type, service.config, trusted)
    except BodyRefused as exc:
        service.metrics.refused.labels(str(exc.status)).inc()
        raise HTTPException(exc.status, str(exc)) from exc
    try:
        await asyncio.wait_for(service.ingest_slots.acquire(), service.config.queue_seconds)
    except TimeoutError:
        service.metrics.refused.labels("429").inc()
        raise HTTPException(
            429,
            "too many ingest requests at once (max_concurrent_ingests)",
            headers={"Retry-After": str(service.config.retry_after_seconds)},
        ) from None
    try:
        accepted = await _submit(service, intake)
    except Unavailable as exc:
        raise _unavailable(service, str(exc)) from exc
    finally:
        service.ingest_slots.release()
    request_id = uuid.uuid4().hex
    try:
        for bad in intake.bad:
            service.dead_letter.write(
                source=f"http:{sender.name}:{request_id}", line=bad.line, error=bad.reason, data=bad.data
            )
    except OSError as exc:  # the alerts are in the ledger: the retry finds them there and dead-letters again
        raise _unavailable(service, f"the dead-letter file is not writable: {exc.strerror or exc}") from exc
    report = intake.report
    duplicates = len(intake.alerts) - len(accepted.new)
    for source, count in Counter(alert.source for alert in accepted.new).items():
        service.metrics.alerts.labels(source).inc(count)
    service.metrics.duplicates.inc(duplicates)
    service.metrics.dead_letters.inc(len(intake.bad))
    return IngestResult(
        request_id=request_id,
        records=report.records_read,
        accepted=len(accepted.new),
        duplicate=duplicates,
        dead_lettered=len(intake.bad),
        skipped=report.skipped_total,
        incidents=accepted.incidents,
        errors=[RecordError(index=b.index, line=b.line, reason=b.reason) for b in intake.bad],
    )
