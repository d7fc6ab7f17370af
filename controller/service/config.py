"""The service's limits and timings. Each limit has a name, and the error that enforces it says it."""

from __future__ import annotations

from dataclasses import dataclass

from autonomy_controller.controller.ingest.lines import MAX_LINE_BYTES
from autonomy_controller.controller.models import Level


@dataclass(frozen=True)
class ServiceConfig:
    max_body_bytes: int = 16 * 1024 * 1024
    """A request body as sent (compressed when gzip): larger is refused with 413 before it is read whole."""
    max_decompressed_bytes: int = 64 * 1024 * 1024
    """A gzip body once inflated: a decompression bomb stops here (413)."""
    max_records: int = 10_000
    """Records in one request: more is refused whole (413) before anything is written."""
    max_line_bytes: int = MAX_LINE_BYTES
    """ingest's own line limit (controller/ingest/lines.py): a longer line is dead-lettered, its bytes kept."""
    max_concurrent_ingests: int = 8
    """Requests submitting at once; one more waits `queue_seconds`, then gets 429 with Retry-After."""
    queue_seconds: float = 2.0
    submit_timeout_seconds: float = 10.0
    """The ledger write for one request: slower is answered 503 with Retry-After."""
    connect_timeout_seconds: float = 3.0
    retry_after_seconds: int = 5
    outbox_max_alerts: int = 200_000
    """Alerts in the ledger awaiting their signal (Temporal slow or down): past it, ingest is refused with 503."""
    outbox_signals_in_flight: int = 16
    """Signal-with-starts the outbox's flusher has in flight at once."""
    outbox_batch_alerts: int = 200
    """An incident holding this many unsignalled alerts is signalled at once (as the Submitter's BATCH_SIZE)."""
    outbox_max_delay_seconds: float = 1.0
    """Under sustained ingest, the longest an acknowledged alert waits for its signal (when ingest is idle it
    goes at once): signals gather alerts of many requests, fewer and larger, as `autonomy submit`'s do."""
    outbox_idle_seconds: float = 0.05
    """Ingest counts as idle (everything pending is signalled) after this long with no request in progress."""
    outbox_fold_seconds: float = 5.0
    """Under sustained ingest, how often signalled alerts are folded into the attacker profiles (when ingest is
    idle, at once): profiles describe sources for people, no decision reads them, and a fold costs ~0.1 s of CPU
    for 200 profiles however few alerts it adds."""
    outbox_retry_seconds: float = 1.0
    """After a failed flush (Temporal away), the wait before the next attempt; nothing pending is dropped."""
    level: Level | None = None
    """A declared level for every incident started here (drills); None: the scopes decide, as in production."""
    settle_seconds: float = 5.0
    quiet_seconds: float = 60.0
