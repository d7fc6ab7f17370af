"""The adapters a worker runs, by registry action name.

Actions without an adapter here are simply absent, and the workflow fails them closed with "no adapter configured
for <action>": an action is never half-run by a placeholder. network.* and host.* get nftables adapters only when
the enforcement file (Settings.enforcement_file) configures them, and identity.* gets directory adapters (LDAP)
only when that file has an `identity:` section.
"""

from __future__ import annotations

from autonomy_controller.actions.adapters.base import Adapter
from autonomy_controller.actions.adapters.identity import identity_adapters
from autonomy_controller.actions.adapters.investigate import (
    HostActivityAdapter,
    IpReputationAdapter,
    RelatedAlertsAdapter,
    bundle_inventory,
)
from autonomy_controller.actions.adapters.nftables.adapters import enforcement_adapters
from autonomy_controller.actions.adapters.ticket import TicketAdapter
from autonomy_controller.actions.adapters.webhook import WebhookAdapter
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger

WEBHOOK_JOURNAL_DIR = "webhook-deliveries"
"""Under Settings.state_dir: notify.webhook's delivery journal (one marker file per idempotency key)."""


def build_adapters(settings: Settings, ledger: Ledger) -> dict[str, Adapter]:
    """Every configured adapter, keyed by the action it executes. Builds no connections, so a worker starts even
    when, say, the channels file is missing. The enforcement file is the one file read here, because whether it
    exists decides which adapters there are (a broken one yields adapters that fail with its error)."""
    adapters: list[Adapter] = [
        TicketAdapter(settings.tickets_dir),
        WebhookAdapter(settings.channels_file, settings.state_dir / WEBHOOK_JOURNAL_DIR),
        RelatedAlertsAdapter(ledger),
        IpReputationAdapter(ledger),
        HostActivityAdapter(ledger, bundle_inventory(settings)),
        *enforcement_adapters(settings.enforcement_file),
        *identity_adapters(settings.enforcement_file),
    ]
    return {adapter.action: adapter for adapter in adapters}
