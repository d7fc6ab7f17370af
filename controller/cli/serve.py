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
    from autonomy_controller.controller.cli.ops import TemporalMisconfigured, temporal_connection

    try:  # a bad TLS / API-key setting stops the start here, naming it, not on the first request
        temporal_connection(temporal_address(address, settings))
    except TemporalMisconfigured as exc:
        fail(str(exc), 2)
    app = create_app(settings, config, temporal_address(address, settings))
    console.print(
        f"autonomy API at [bold]http://{escape(host)}:{port}[/] (OpenAPI: /openapi.json); tokens in "
        f"{escape(str(tokens_file(settings.state_dir)))}"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
