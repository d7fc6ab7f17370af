"""What every route shares: the ledger, the Temporal client, the token store, the metrics.

The Temporal client is made at start-up when Temporal answers, else on the first request that needs it (at
most one attempt per `connect_timeout_seconds`, so a Temporal outage costs each request a refusal, not a
wait). Once made, the SDK reconnects by itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from temporalio.client import Client

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest import DeadLetter
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.service.config import ServiceConfig
from autonomy_controller.controller.service.metrics import Metrics
from autonomy_controller.controller.service.outbox import Outbox
from autonomy_controller.controller.service.refusals import RefusalRecorder
from autonomy_controller.controller.service.tokens import TokenStore, tokens_file
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.operations import LoopError, TemporalUnavailable, open_client, temporal_connection


class Unavailable(RuntimeError):
    """A dependency (Temporal, the ledger) cannot serve now: 503 with Retry-After, nothing acknowledged."""


@dataclass
class Service:
    settings: Settings
    config: ServiceConfig
    address: str
    ledger: Ledger
    tokens: TokenStore
    dead_letter: DeadLetter
    metrics: Metrics = field(default_factory=Metrics)
    ingest_slots: asyncio.Semaphore = field(init=False)
    outbox: Outbox = field(init=False)
    refusals: RefusalRecorder = field(init=False)
    """Votes refused before they reach a workflow, into the ledger, bounded (controller/service/refusals.py)."""
    connection: TemporalConnection | None = None
    """Resolved and checked at open: a bad TLS or API-key setting stops the service's start, naming it."""
    _client: Client | None = None
    _last_attempt: float = float("-inf")
    _last_error: str = ""
    _connecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.ingest_slots = asyncio.Semaphore(self.config.max_concurrent_ingests)
        self.outbox = Outbox(self.ledger, self.config, self.settings.state_dir, self.metrics, self.client)
        self.refusals = RefusalRecorder(self.ledger)

    @classmethod
    def open(cls, settings: Settings, config: ServiceConfig, address: str) -> Service:
        return cls(
            settings=settings,
            config=config,
            address=address,
            connection=temporal_connection(address),
            ledger=Ledger.from_url(settings.ledger_url),
            tokens=TokenStore(tokens_file(settings.state_dir)),
            dead_letter=DeadLetter(settings.dead_letter_path),
        )

    async def client(self) -> Client:
        """The Temporal client, or Unavailable saying why (the last attempt's reason within the back-off)."""
        if self._client is not None:
            return self._client
        async with self._connecting:
            if self._client is None:
                if time.monotonic() - self._last_attempt < self.config.connect_timeout_seconds:
                    raise Unavailable(self._last_error)
                self._last_attempt = time.monotonic()
                try:
                    self._client = await open_client(
                        self.connection or self.address, self.config.connect_timeout_seconds
                    )
                except (TemporalUnavailable, LoopError) as exc:
                    self._last_error = str(exc)
                    raise Unavailable(self._last_error) from exc
        return self._client

    def close(self) -> None:
        self.ledger.close()
