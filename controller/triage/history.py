"""What triage may know beyond the incident: the source's past (SourceHistory) and people's verdicts on rules
(RuleFeedback). Plain data, filled by the caller from the ledger; triage never reads storage itself.

Trust: history only ever *raises* a score. A quiet past is cheap to fake (send harmless requests for a week,
then attack), so "this source was noise before" never lowers anything. Feedback is people's judgement and is
the one thing allowed to lower a rule's weight, within the model's bound.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from autonomy_controller.controller.models import Category


@dataclass(frozen=True)
class SourceHistory:
    """The same source address before (and beside) this incident, from the ledger."""

    prior_incidents: int = 0
    prior_alerts: int = 0
    prior_malicious: int = 0
    """Earlier incidents of this source that triage called malicious."""
    confirmed_actions: int = 0
    """Containment against this source that a person approved or that ran and verified."""
    categories: frozenset[Category] = frozenset()
    """Attack categories of the source's other incidents (a tool-driven attack is split by category)."""
    sensors: frozenset[str] = frozenset()
    """Alert.source values of the source's other incidents (a WAF and an IDS seeing the same address agree)."""


@dataclass(frozen=True)
class FeedbackCounts:
    """How people answered actions proposed on this rule's alerts."""

    rejected: int = 0
    reverted: int = 0
    confirmed: int = 0
    """Approved and not reverted: brings the weight back (feedback is reversible)."""

    def discount(self, bound: float, prior: float) -> float:
        """Share of the rule's points to take away: grows with rejections, shrinks with confirmations, never
        above `bound`. `prior` confirmations are assumed, so a single rejection takes little."""
        against = max(self.rejected, 0) + max(self.reverted, 0)
        if against == 0:
            return 0.0
        return bound * against / (against + max(self.confirmed, 0) + prior)


@dataclass(frozen=True)
class RuleFeedback:
    """People's rejections and reverts per rule id, and per (rule id, URL path) for path-scoped false positives."""

    rules: Mapping[str, FeedbackCounts] = field(default_factory=dict)
    rule_paths: Mapping[tuple[str, str], FeedbackCounts] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rules or self.rule_paths)
