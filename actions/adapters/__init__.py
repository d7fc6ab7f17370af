"""The adapters a worker runs, by registry action name.

Actions without an adapter here (network.*, host.*, identity.*: their enforcement points come later) are
simply absent, and the workflow fails them closed with "no adapter configured for <action>": an action is
never half-run by a placeholder.
"""

from __future__ import annotations

from actions.adapters.base import Adapter
from actions.adapters.investigate import HostActivityAdapter, IpReputationAdapter, RelatedAlertsAdapter
from actions.adapters.ticket import TicketAdapter
from actions.adapters.webhook import WebhookAdapter
from controller.config import Settings
from controller.ledger import Ledger

WEBHOOK_JOURNAL_DIR = "webhook-deliveries"
"""Under Settings.state_dir: notify.webhook's delivery journal (one marker file per idempotency key)."""


def build_adapters(settings: Settings, ledger: Ledger) -> dict[str, Adapter]:
    """Every configured adapter, keyed by the action it executes. Builds no connections and reads no config
    files yet (each adapter does on use), so a worker starts even when, say, the channels file is missing."""
    adapters: list[Adapter] = [
        TicketAdapter(settings.tickets_dir),
        WebhookAdapter(settings.channels_file, settings.state_dir / WEBHOOK_JOURNAL_DIR),
        RelatedAlertsAdapter(ledger),
        IpReputationAdapter(ledger),
        HostActivityAdapter(ledger),
    ]
    return {adapter.action: adapter for adapter in adapters}
