"""triage(incident) -> TriageResult: the factors summed into a score, capped, cut into a verdict, with a
confidence that also depends on how much evidence there is.

Pure and fast (no I/O, no clock): the same incident, model, history and feedback always give the same result,
which replay and `simulate` depend on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Literal

from autonomy_controller.controller.models import Alert, Incident, Severity, TriageSummary
from autonomy_controller.controller.triage import factors as f
from autonomy_controller.controller.triage.attack import techniques
from autonomy_controller.controller.triage.facts import FAILED, GUESSED, OTHER, alert_facts
from autonomy_controller.controller.triage.history import RuleFeedback, SourceHistory
from autonomy_controller.controller.triage.model import TriageModel
from autonomy_controller.controller.triage.result import TriageEvidence, TriageFactor, TriageResult, TriageVerdict
from autonomy_controller.controller.triage.scoring import AlertScorer, ScoredAlert

Trust = Literal["sensor", "request", "ledger", "people", "model", "claim"]
RULE_FACTORS = (
    "rule_strength",
    "anomaly_score",
    "libinjection",
    "attack_classes",
    "repetition",
    "sensor_verdict",
    "scanner",
)
"""The factors that rest on rule hits, so the ones people's feedback can discount."""


def triage(
    incident: Incident,
    model: TriageModel,
    history: SourceHistory | None = None,
    feedback: RuleFeedback | None = None,
) -> TriageResult:
    waf_sources = frozenset(model.waf_sources)
    scorer = AlertScorer(model, feedback)
    # Claims (native JSON no operator vouched for) are no sensor's facts: scored, counted and mapped as nothing.
    claims = [a for a in incident.alerts if a.is_claim]
    alerts = [scorer.score(a, alert_facts(a, waf_sources)) for a in incident.alerts if not a.is_claim]
    span = (incident.last_seen - incident.first_seen).total_seconds()
    values, own_classes = _values(alerts, model, history, span, weighted=False)
    factors = [_factor(name, value, why, _trust(name, value, alerts), model) for name, (value, why) in values.items()]
    if any(h.discount > 0 for s in alerts for h in s.hits):
        weighted, _ = _values(alerts, model, history, span, weighted=True)
        factors.append(_feedback_factor(values, weighted, alerts, model))
    score = sum(x.contribution for x in factors)
    cap = _cap(alerts, claims, model, score)
    if cap is not None:
        factors.append(cap)
        score += cap.contribution
    if claims:
        factors.append(_claims_factor(claims))
    score = round(min(100.0, max(0.0, score)), 1)
    evidence = _evidence(alerts, own_classes, span, len(claims))
    verdict, confidence = _verdict(score, evidence.requests, model)
    return TriageResult(
        verdict=verdict,
        confidence=confidence,
        score=score,
        factors=factors,
        techniques=techniques(((s.alert, s.facts) for s in alerts), model.attack),
        evidence=evidence,
        model_revision=model.revision,
    )


def _values(
    alerts: Sequence[ScoredAlert], model: TriageModel, history: SourceHistory | None, span: float, weighted: bool
) -> tuple[dict[str, f.FactorValue], list[str]]:
    classes, own = f.attack_classes(alerts, model, history, weighted)
    return {
        "rule_strength": f.rule_strength(alerts, weighted),
        "anomaly_score": f.anomaly_score(alerts, model, weighted),
        "libinjection": f.libinjection(alerts, weighted),
        "attack_classes": classes,
        "repetition": f.repetition(alerts, model, span, weighted),
        "sensor_verdict": f.sensor_verdict(alerts, model, weighted),
        "scanner": f.scanner(alerts, model, weighted),
        "sensor_agreement": f.sensor_agreement(alerts, history, model),
        "source_history": f.source_history(history, model),
        "login_outcome": f.login_outcome(alerts, model),
    }, own


def _factor(name: str, value: float, why: str, trust: Trust, model: TriageModel) -> TriageFactor:
    weight = getattr(model.weights, name)
    value = round(min(1.0, max(0.0, value)), 4)
    return TriageFactor(
        name=name, value=value, weight=weight, contribution=round(weight * value, 2), why=why, trust=trust
    )


def _trust(name: str, value: float, alerts: Sequence[ScoredAlert]) -> Trust:
    if name == "source_history":
        return "ledger"
    if name == "scanner" and value > 0 and not any(h.scanner for s in alerts for h in s.hits):
        return "request"  # only the user agent matched: the attacker's text, allowed to raise, never to lower
    return "sensor"


def _feedback_factor(
    plain: dict[str, f.FactorValue],
    weighted: dict[str, f.FactorValue],
    alerts: Sequence[ScoredAlert],
    model: TriageModel,
) -> TriageFactor:
    """What people's rejections took away: the rule factors with and without feedback, side by side."""
    before = sum(getattr(model.weights, n) * plain[n][0] for n in RULE_FACTORS)
    after = sum(getattr(model.weights, n) * weighted[n][0] for n in RULE_FACTORS)
    lost = max(0.0, before - after)
    rules = sorted({(h.rule, round(h.discount, 2)) for s in alerts for h in s.hits if h.discount > 0})
    named = ", ".join(f"{rule} -{d:.0%}" for rule, d in rules[:5]) + (" ..." if len(rules) > 5 else "")
    return TriageFactor(
        name="rule_feedback",
        value=round(lost / before, 4) if before > 0 else 0.0,
        weight=model.feedback.max_discount,
        contribution=-round(lost, 2),
        why=f"people rejected or reverted actions on these rules before ({named}); at most "
        f"-{model.feedback.max_discount:.0%} of a rule's points",
        trust="people",
    )


def _claims_factor(claims: Sequence[Alert]) -> TriageFactor:
    """Why some alerts moved nothing: the triage explanation names them."""
    named = ", ".join(sorted({a.source for a in claims})[:5])
    return TriageFactor(
        name="native_claims",
        value=0.0,
        weight=0.0,
        contribution=0.0,
        why=f"{len(claims)} alert(s) in our Alert JSON claim to come from {named}: no sensor vouches for them, so "
        "none of their raw record, severity, confidence or blocked flag was read as a sensor fact (an operator "
        "declares a trusted feed with --trust-native)",
        trust="claim",
    )


def _cap(
    alerts: Sequence[ScoredAlert], claims: Sequence[Alert], model: TriageModel, score: float
) -> TriageFactor | None:
    """The model's limits, as a factor: protocol oddities alone (a numeric Host header on every request) are not
    intent, so at most suspicious; a high-severity alert from a sensor triage cannot rate (no rule metadata:
    OCSF, a trusted native feed) is at least suspicious, so an EDR's C2 detection is never de-noised away. A claim
    of high severity raises the score to that floor too, so a person still sees it, but as the claim's points
    (trust `claim`): the guard's summary does without them (guard_summary)."""
    caps = model.caps
    floor = caps.unrated_high_severity_floor
    unrated = [s.alert for s in alerts if s.facts.kind == OTHER and s.alert.severity.rank >= Severity.HIGH.rank]
    claimed = [a for a in claims if a.severity.rank >= Severity.HIGH.rank]
    if (unrated or claimed) and score < floor:
        first = (unrated or claimed)[0]
        said = "reported" if unrated else "is claimed (native JSON, no sensor vouches) to have reported"
        return TriageFactor(
            name="floor_unrated_sensor",
            value=0.0,
            weight=0.0,
            contribution=round(floor - score, 2),
            why=f"{first.source} {said} {first.severity.value} and carries no rule metadata to judge it by: score "
            f"raised to {floor:g}",
            trust="model" if unrated else "claim",
        )
    attack_or_scan = any(h.attack_class or h.scanner for s in alerts for h in s.hits if h.strength > 0)
    limit = caps.protocol_only_score
    if attack_or_scan or unrated or score <= limit:
        return None
    return TriageFactor(
        name="cap_protocol_only",
        value=0.0,
        weight=0.0,
        contribution=-round(score - limit, 2),
        why=f"only protocol/outbound rules fired: score capped at {limit:g}",
        trust="model",
    )


def _verdict(score: float, requests: int, model: TriageModel) -> tuple[TriageVerdict, float]:
    """Verdict by thresholds; confidence 0.5 at a threshold up to `max` a margin past it, capped by evidence."""
    t, c = model.thresholds, model.confidence
    if score >= t.malicious:
        verdict, margin = TriageVerdict.MALICIOUS, score - t.malicious
    elif score < t.noise:
        verdict, margin = TriageVerdict.NOISE, t.noise - score
    else:
        verdict, margin = TriageVerdict.SUSPICIOUS, min(score - t.noise, t.malicious - score)
    confidence = 0.5 + (c.max - 0.5) * min(1.0, margin / c.margin_points)
    cap = next((cap.max for cap in c.caps if requests <= cap.requests), c.max)
    return verdict, round(min(confidence, cap), 2)


def _evidence(alerts: Sequence[ScoredAlert], classes: list[str], span: float, claims: int) -> TriageEvidence:
    requests = f.requests_weight(alerts, weighted=False)
    crossed = {s.facts.request for s in alerts if s.facts.crossed}
    statuses: dict[str, int] = {}
    status_of: dict[str, int] = {}
    for s in alerts:
        if s.facts.status is not None:
            status_of[s.facts.request] = s.facts.status
    statuses = dict(sorted(Counter(str(v) for v in status_of.values()).items()))
    paranoia = [h.paranoia for s in alerts for h in s.hits if h.paranoia is not None and h.strength > 0]
    scores = [s.facts.anomaly_score for s in alerts if s.facts.anomaly_score is not None]
    all_requests = {s.facts.request for s in alerts}
    return TriageEvidence(
        alerts=len(alerts),
        requests=len(requests),
        distinct_rules=len({r for s in alerts for r in s.alert.rule_ids}),
        attack_classes=classes,
        blocked=len(crossed),
        blocked_share=round(len(crossed) / len(all_requests), 4) if all_requests else 0.0,
        reached_application=sum(1 for v in status_of.values() if v < 400),
        statuses=statuses,
        max_anomaly_score=max(scores) if scores else None,
        min_paranoia_level=min(paranoia) if paranoia else None,
        libinjection_hits=sum(1 for s in alerts for h in s.hits if h.libinjection),
        scanner_hits=sum(1 for s in alerts for h in s.hits if h.scanner),
        engine_noise_alerts=sum(1 for s in alerts if s.engine_noise),
        sensors=sorted({s.alert.source for s in alerts}),
        span_seconds=round(span, 3),
        failed_logins=sum(1 for s in alerts if s.facts.login == FAILED),
        guessed_logins=sum(1 for s in alerts if s.facts.login == GUESSED),
        claims=claims,
    )


def guard_summary(result: TriageResult, model: TriageModel) -> TriageSummary:
    """What the guard may act on: the verdict and its confidence as they stand without the points the request's
    own text (a scanner user agent) or a claim (native JSON) earned, so attacker-written text can push a verdict up
    for people to see but never turn "a person approves" into "the machine acts alone". The confidence too: at the
    same verdict those points still buy margin past the threshold, and a level's bar is a confidence (malicious at
    0.8)."""
    verdict, confidence = result.verdict, result.confidence
    influenced = result.attacker_influenced_points
    if influenced > 0:
        verdict, confidence = _verdict(result.score - influenced, result.evidence.requests, model)
    return TriageSummary(
        verdict=verdict.value,
        confidence=confidence,
        score=result.score,
        model_revision=result.model_revision,
        techniques=[t.id for t in result.techniques],
    )
