"""A case's sources as the sensors knew them before the case (models.SourceStanding), read from their profiles.

An address many people share (a company's NAT, a proxy, a mobile carrier's gateway) shows a long, steady history:
known for days, much of its traffic answered by the application. Blocking it cuts off everyone behind it, so the
policy asks a person for that block (policies/guardrails/network.rego). The fact comes from sensors only, and it
can only ask a person: a source that wants to look shared must first send ordinary traffic for days.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from autonomy_controller.controller.attackers.store import AttackerStore
from autonomy_controller.controller.models import SourceStanding

SECONDS_PER_DAY = 86_400.0


def source_standing(store: AttackerStore, addresses: Iterable[str], case_start: datetime) -> list[SourceStanding]:
    """The standing of each address that has a profile, in the order given (an address without one has none)."""
    found: list[SourceStanding] = []
    for address in addresses:
        profile = store.get(address)
        if profile is None:
            continue
        known = max(0, int((case_start - profile.first_seen).total_seconds() // SECONDS_PER_DAY))
        answered = sum(classes.get("2xx", 0) for classes in profile.outcomes.app_status.values())
        found.append(SourceStanding(address=profile.address, known_days=known, answered=answered))
    return found
