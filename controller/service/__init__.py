"""`autonomy serve`: the controller over HTTP, on the same Submitter, ledger and workflow as the CLI.

There is no second path to a decision: the ingest API hands alerts to `workflows.client.Submitter` (ledger
first, then signal-with-start), exactly as `autonomy submit` does, and the read API reads what
`autonomy incidents` and `autonomy report` read. Module map:

- `config`: the service's limits and timings (`ServiceConfig`), each named in the error that enforces it
- `tokens`: per-sender bearer tokens, stored hashed, named, scoped, revocable (`autonomy tokens`)
- `intake`: one request body -> alerts and bad records, through controller/ingest's reader (no second parser)
- `state`: what the routes share: ledger, Temporal client (reconnected on demand), tokens, metrics
- `metrics`: the Prometheus collectors, one registry per app
- `ingest_api`, `read_api`, `health`: the routes; `app`: the ASGI application that puts them together

    uvicorn.run(create_app(Settings(), ServiceConfig()), host="127.0.0.1", port=8080)
"""

from autonomy_controller.controller.service.app import create_app
from autonomy_controller.controller.service.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
