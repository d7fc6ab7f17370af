"""The service's Prometheus collectors, in a registry of its own per app (two apps in one process, as in the
tests, never share counts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.alerts = Counter(
            "autonomy_http_alerts_ingested",
            "Alerts accepted over HTTP (new to the ledger), by record format.",
            ["format"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "autonomy_http_alerts_duplicate",
            "Alerts received again (same alert id): nothing attached twice.",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "autonomy_http_dead_letters", "Records kept in the dead-letter file, byte for byte.", registry=self.registry
        )
        self.incidents = Counter(
            "autonomy_http_incidents_submitted",
            "Signal-with-starts sent by the outbox (one per incident per flush).",
            registry=self.registry,
        )
        self.outbox = Gauge(
            "autonomy_http_outbox_alerts",
            "Alerts in the ledger whose signal to their workflow has not been sent yet.",
            registry=self.registry,
        )
        self.writes = Counter(
            "autonomy_http_ledger_writes",
            "Ledger writes of ingest requests: requests that queue while one runs share the next (one transaction).",
            registry=self.registry,
        )
        self.unfolded = Gauge(
            "autonomy_http_unfolded_alerts",
            "Alerts signalled but not yet in the attacker profiles (folded after each flush).",
            registry=self.registry,
        )
        self.refused = Counter(
            "autonomy_http_ingest_refused",
            "Ingest requests refused whole, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "autonomy_http_request_seconds",
            "Request latency by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.chat_posts = Counter(
            "autonomy_chat_posts",
            "Pending approvals sent to the chat webhook: posted, unreachable, or the webhook's error status.",
            ["outcome"],
            registry=self.registry,
        )
        self.chat_interactions = Counter(
            "autonomy_chat_interactions",
            "Chat button presses: voted, refused (by us or the workflow), untrusted (signature), malformed.",
            ["outcome"],
            registry=self.registry,
        )
