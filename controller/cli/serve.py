"""`autonomy serve`: the HTTP service (controller/service/) in the foreground until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from autonomy_controller.controller.cli.common import AddressOption, console, fail, temporal_address
from autonomy_controller.controller.cli.loop import LevelOption, QuietOption, SettleOption
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.service import ServiceConfig, create_app
from autonomy_controller.controller.service.tokens import tokens_file

DEFAULTS = ServiceConfig()


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; keep it private unless a proxy adds TLS.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    address: AddressOption = None,
    level: LevelOption = None,
    settle: SettleOption = DEFAULTS.settle_seconds,
    quiet: QuietOption = DEFAULTS.quiet_seconds,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body, as sent.")] = (
        DEFAULTS.max_body_bytes
    ),
    max_records: Annotated[int, typer.Option(min=1, help="Most records in one request.")] = DEFAULTS.max_records,
    insecure_cookies: Annotated[
        bool,
        typer.Option(
            "--insecure-cookies",
            help="Inbox session cookies without Secure, for plain http on a non-loopback address you trust "
            "(browsers drop Secure cookies there; on 127.0.0.1 and behind https they work as they are).",
        ),
    ] = False,
) -> None:
    """Serve the ingest API (POST /v1/alerts), the read API (/v1/incidents), /healthz, /readyz and /metrics.

    Alerts go through the same Submitter as `autonomy submit` (ledger first, then the workflow); a worker
    must run for anything to be decided. Senders need a token: `autonomy tokens add NAME --scope ingest`.
    The OpenAPI document is at /openapi.json.
    """
    import uvicorn

    settings = Settings()
    config = ServiceConfig(
        max_body_bytes=max_body_bytes,
        max_records=max_records,
        level=level,
        settle_seconds=settle,
        quiet_seconds=quiet,
    )
    from autonomy_controller.workflows.operations import TemporalMisconfigured, temporal_connection

    try:  # a bad TLS / API-key setting stops the start here, naming it, not on the first request
        temporal_connection(temporal_address(address, settings))
    except TemporalMisconfigured as exc:
        fail(str(exc), 2)
    from autonomy_controller.controller.service.chatops import ChatConfigError
    from autonomy_controller.controller.service.inbox import InboxConfig, is_loopback

    try:
        app = create_app(settings, config, temporal_address(address, settings))
    except ChatConfigError as exc:
        fail(f"ChatOps: {exc}", 2)
    inbox = InboxConfig.from_env()
    app.state.inbox_config = InboxConfig(secure_cookies=inbox.secure_cookies and not insecure_cookies)
    console.print(
        f"autonomy API at [bold]{escape(service_url(host, port))}[/] (approval inbox: /inbox, OpenAPI: "
        f"/openapi.json); tokens in {escape(str(tokens_file(settings.state_dir)))}",
        soft_wrap=True,
    )
    if app.state.chat is not None:
        console.print(
            f"ChatOps: pending approvals posted to the Slack webhook every {app.state.chat.config.poll_seconds:g} s"
        )
    if app.state.inbox_config.secure_cookies and not is_loopback(host):
        console.print(
            "[yellow]the inbox's session cookies are Secure: browsers drop them over plain http on "
            f"{escape(host)}; put TLS in front (a reverse proxy) or pass --insecure-cookies on a network you trust[/]",
            soft_wrap=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def service_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"
