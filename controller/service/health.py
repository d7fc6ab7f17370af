"""Liveness, readiness and Prometheus metrics (unauthenticated, as scrapers and probes expect: bind the
service to a private address, the default 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from autonomy_controller.controller.decision.runtime import load_policy_bundle
from autonomy_controller.controller.service.auth import service_of
from autonomy_controller.controller.service.state import Service, Unavailable

router = APIRouter(tags=["health"])
GUARD_CHECK_TTL_S = 30.0
"""Loading the levels and policies takes a while: a readiness probe every few seconds reuses the last answer."""


@router.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _temporal(service: Service) -> str | None:
    try:
        client = await service.client()
        await client.service_client.check_health(timeout=timedelta(seconds=service.config.connect_timeout_seconds))
    except Unavailable as exc:
        return str(exc)
    except Exception as exc:  # any failure of the probe is "not ready", with its reason
        return f"Temporal health check failed: {exc}"
    return None


def _ledger(service: Service) -> str | None:
    try:
        service.ledger.head()
    except Exception as exc:
        return f"ledger unreadable: {type(exc).__name__}: {exc}"
    return None


_guard_cache: dict[str, tuple[float, str | None]] = {}


def _guard(service: Service) -> str | None:
    """The levels and policies the workers decide with load and validate (the workers hold the guard itself)."""
    key = f"{service.settings.levels_dir}|{service.settings.policies_dir}"
    cached = _guard_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < GUARD_CHECK_TTL_S:
        return cached[1]
    try:
        load_policy_bundle(service.settings)
        problem = None
    except Exception as exc:
        problem = f"levels/policies do not load: {exc}"
    _guard_cache[key] = (time.monotonic(), problem)
    return problem


@router.get("/readyz", summary="Temporal, the ledger and the guard's config are usable (else 503)")
async def readyz(request: Request) -> JSONResponse:
    service = service_of(request)
    guard = await asyncio.to_thread(_guard, service)
    checks = {"temporal": await _temporal(service), "ledger": _ledger(service), "guard": guard}
    ready = all(problem is None for problem in checks.values())
    body = {"ready": ready, "checks": {name: problem or "ok" for name, problem in checks.items()}}
    if ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(service.config.retry_after_seconds)})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(service_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
