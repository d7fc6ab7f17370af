"""The ASGI application: the routers, the shared `Service`, request metrics and response headers.

FastAPI over bare Starlette: the OpenAPI document (`/openapi.json`) comes from the route signatures and
pydantic models the controller already uses, and it is what the API's clients and a fuzzer read. The
interactive docs pages are off: they load scripts from a CDN, and the API is served with a CSP of `'none'`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.policy_bundle import data_file
from autonomy_controller.controller.service import health, inbox, ingest_api, read_api
from autonomy_controller.controller.service.chatops import ChatConfig, load_chat_config
from autonomy_controller.controller.service.chatops import routes as chat_routes
from autonomy_controller.controller.service.chatops.poster import Poster
from autonomy_controller.controller.service.chatops.signature import Verifier
from autonomy_controller.controller.service.config import ServiceConfig
from autonomy_controller.controller.service.state import Service, Unavailable

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    settings: Settings, config: ServiceConfig | None = None, address: str | None = None, chat: ChatConfig | None = None
) -> FastAPI:
    """The service for one state folder and one Temporal (`address`, default the settings').

    ChatOps runs with `chat`, else with `<state dir>/chatops.yaml` when it exists; an unusable file raises
    ChatConfigError here, so the service does not start without the ChatOps it was configured for."""
    config = config or ServiceConfig()
    chat = chat or load_chat_config(settings.state_dir, data_file(settings.policies_dir, "identities"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service.open(settings, config, address or settings.temporal_address)
        app.state.service = service
        with contextlib.suppress(Unavailable):  # connect now when Temporal answers; else on the first request
            await service.client()
        service.outbox.start()  # first re-queues what a crash left unsignalled, then flushes (outbox.py)
        poster = Poster(service, chat) if chat else None
        if poster:
            poster.start()
        try:
            yield
        finally:
            if poster:
                await poster.close()
            await service.outbox.close()
            service.close()

    app = FastAPI(
        title="autonomy-controller",
        summary="Alerts in, guarded response actions out: the ingest and read API.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    for module in (ingest_api, read_api, health, inbox, chat_routes):
        app.include_router(module.router)
    app.state.chat = chat_routes.Chat(chat, Verifier(chat.signing_secret.get_secret_value())) if chat else None

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")  # the template, never the raw path: bounded labels
        service: Service = request.app.state.service
        service.metrics.latency.labels(request.method, template, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        for name, value in SECURITY_HEADERS.items():  # a route's own header (the inbox's CSP) is kept
            response.headers.setdefault(name, value)
        return response

    return app
