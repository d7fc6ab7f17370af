"""The source's past and people's feedback, read from the ledger for triage."""

from __future__ import annotations

from controller.ledger import Ledger
from controller.models import Incident
from controller.triage.history import RuleFeedback, SourceHistory


def history_and_feedback(ledger: Ledger, incident: Incident) -> tuple[SourceHistory | None, RuleFeedback | None]:
    """(history of the incident's source, people's feedback per rule); None where the ledger has nothing."""
    return None, None
