"""Per-alert scoring: how strongly each rule hit means "attack", and how much people's feedback discounts it.

Strength reads only the rule's own metadata as the sensor logged it (CRS family, paranoia-level tag, severity;
IDS severity, classtype, signature id), so an attacker can change it only by sending a different attack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.triage.facts import IDS, WAF, AlertFacts, Hit
from autonomy_controller.controller.triage.history import RuleFeedback
from autonomy_controller.controller.triage.model import TriageModel


@dataclass(frozen=True, slots=True)
class ScoredHit:
    rule: str
    strength: float
    discount: float
    """Share of this hit's points that people's feedback takes away (0 without feedback)."""
    attack_class: str | None = None
    libinjection: bool = False
    scanner: bool = False
    paranoia: int | None = None
    points: int = 0
    """CRS anomaly points as the sensor logged them (severity), and below the same trusted by paranoia level."""
    trusted_points: float = 0.0

    @property
    def intent(self) -> bool:
        """The hit names an attack class or a scanner: evidence of intent, not a protocol oddity (a storm of one
        noisy protocol rule on every request of a benign user counts for strength, never for counts)."""
        return self.strength > 0 and (self.attack_class is not None or self.scanner)


@dataclass(frozen=True, slots=True)
class ScoredAlert:
    alert: Alert
    facts: AlertFacts
    hits: tuple[ScoredHit, ...]
    discount: float
    """Strength-weighted discount of the alert's hits: how much of this alert's weight feedback removes."""
    engine_noise: bool = False
    anomaly: float | None = None
    """The request's CRS anomaly points as its rules' paranoia levels vouch for them (a PL1 rule's all, a PL4
    rule's a quarter), each logged rule once, at most the sensor's own total. CRS adds every level's points alike
    and once per matched variable, so at PL3/PL4 a benign request with Latin-1 text in ten fields totals 58."""


class AlertScorer:
    """Scores the alerts of one triage call; remembers each distinct rule hit's strength (they repeat a lot)."""

    def __init__(self, model: TriageModel, feedback: RuleFeedback | None) -> None:
        self.model = model
        self.feedback = feedback if feedback else None
        self._memo: dict[Hit, ScoredHit] = {}

    def score(self, alert: Alert, facts: AlertFacts) -> ScoredAlert:
        if facts.kind == WAF:
            hits = tuple(self._waf_hit(h, facts.path) for h in facts.hits if not h.is_total)
            return _scored(alert, facts, hits, anomaly=self._anomaly(facts, hits))
        rule = alert.rule_ids[0] if alert.rule_ids else alert.id
        discount = self._discount(rule, facts.path)
        if facts.kind == IDS:
            noise = _engine_noise(facts, self.model)
            strength = 0.0 if noise else _ids_strength(alert, facts, self.model)
            scanner = facts.classtype == "detection of a network scan"
            hit = ScoredHit(rule, strength, discount, _ids_class(alert, self.model), scanner=scanner)
            return _scored(alert, facts, (hit,), engine_noise=noise)
        strength = self.model.other_severity_strength[alert.severity] * alert.confidence
        scanner = alert.category.value == "scanner"
        return _scored(
            alert, facts, (ScoredHit(rule, strength, discount, _ids_class(alert, self.model), scanner=scanner),)
        )

    def _waf_hit(self, hit: Hit, path: str | None) -> ScoredHit:
        scored = self._memo.get(hit)
        if scored is None:
            crs = self.model.crs
            family, paranoia = hit.family, hit.paranoia
            base = crs.family_strength.get(family, 0.0) if family else crs.unknown_rule_strength
            trust = crs.paranoia.get(paranoia, crs.unknown_paranoia) if paranoia else crs.unknown_paranoia
            scored = ScoredHit(
                rule=hit.rule,
                strength=base * trust * hit.points / 5,  # CRS points: critical 5 ... notice 2
                discount=0.0,
                attack_class=crs.attack_classes.get(family) if family else None,
                libinjection=hit.rule in crs.libinjection_rules,
                scanner=family in crs.scanner_families,
                paranoia=paranoia,
                points=hit.points,
                trusted_points=hit.points * trust,
            )
            self._memo[hit] = scored
        discount = self._discount(hit.rule, path)
        return replace(scored, discount=discount) if discount else scored

    def _anomaly(self, facts: AlertFacts, hits: tuple[ScoredHit, ...]) -> float | None:
        total = facts.anomaly_score
        if not hits:  # CRS's total with no rule beside it: trusted as an untagged rule
            return None if total is None else total * self.model.crs.unknown_paranoia
        trusted = sum(h.trusted_points for h in {h.rule: h for h in hits}.values())
        return trusted if total is None else min(float(total), trusted)

    def _discount(self, rule: str, path: str | None) -> float:
        """The larger of the rule's discount and the rule-on-this-path discount, each within its bound."""
        feedback = self.feedback
        if feedback is None:
            return 0.0
        fb = self.model.feedback
        found = 0.0
        counts = feedback.rules.get(rule)
        if counts is not None:
            found = counts.discount(fb.max_discount, fb.prior)
        if path is not None:
            scoped = feedback.rule_paths.get((rule, path))
            if scoped is not None:
                found = max(found, scoped.discount(fb.max_path_discount, fb.prior))
        return found


def _scored(
    alert: Alert,
    facts: AlertFacts,
    hits: tuple[ScoredHit, ...],
    engine_noise: bool = False,
    anomaly: float | None = None,
) -> ScoredAlert:
    total = sum(h.strength for h in hits)
    discount = sum(h.strength * h.discount for h in hits) / total if total > 0 else 0.0
    return ScoredAlert(alert, facts, hits, discount, engine_noise, anomaly)


def _ids_strength(alert: Alert, facts: AlertFacts, model: TriageModel) -> float:
    s = model.suricata
    strength = s.severity_strength.get(facts.ids_severity or 0, s.unknown_severity)
    strength *= s.classtype_strength.get(facts.classtype or "", s.unknown_classtype)
    if facts.to_client:
        strength *= s.response_alert
    if (alert.signature or "").upper().startswith(tuple(s.broad_signature_prefixes)):
        strength *= s.broad_signature
    return strength


def _ids_class(alert: Alert, model: TriageModel) -> str | None:
    """The alert's category when it names an attack (classify read it from the rule author's words)."""
    return alert.category.value if alert.category in model.attack_class_categories else None


def _engine_noise(facts: AlertFacts, model: TriageModel) -> bool:
    sid = facts.signature_id
    return sid is not None and any(lo <= sid <= hi for lo, hi in model.suricata.engine_noise_sids)
