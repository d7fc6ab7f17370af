"""The incident's factors, each a value in 0..1 with a one-line why.

Aggregation is by maximum, count or distinct count, never by average: adding alerts to an incident can never
lower a factor, so an attacker cannot dilute a real attack with harmless-looking requests (or engine noise).
Each factor takes `weighted`: with it, every hit counts for (1 - its feedback discount); without it, the
same factor as if nobody had given feedback, so the difference is shown as its own factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from autonomy_controller.controller.triage.facts import FAILED, GUESSED, IDS, WAF
from autonomy_controller.controller.triage.history import SourceHistory
from autonomy_controller.controller.triage.model import TriageModel
from autonomy_controller.controller.triage.scoring import ScoredAlert

FactorValue = tuple[float, str]


def log_scaled(count: float, saturation: int) -> float:
    """0 for 0, 1 at `saturation`, diminishing returns in between (1 alert ~0.18, 10 ~0.61 at 50)."""
    if count <= 0:
        return 0.0
    return min(1.0, math.log2(1 + count) / math.log2(1 + saturation))


def _keep(discount: float, weighted: bool) -> float:
    return 1.0 - discount if weighted else 1.0


def rule_strength(alerts: Sequence[ScoredAlert], weighted: bool) -> FactorValue:
    best, rule = 0.0, None
    for scored in alerts:
        for hit in scored.hits:
            value = hit.strength * _keep(hit.discount, weighted)
            if value > best:
                best, rule = value, hit.rule
    if rule is None:
        return 0.0, "no rule that indicates an attack fired"
    return min(1.0, best), f"strongest hit: rule {rule} (family, paranoia level and severity as the sensor logged them)"


def anomaly_score(alerts: Sequence[ScoredAlert], model: TriageModel, weighted: bool) -> FactorValue:
    """The highest per-request total: for WAF alerts CRS's anomaly points as the rules' paranoia levels vouch
    for them (ScoredAlert.anomaly: CRS adds a PL4 rule's points as a PL1 rule's); for IDS alerts the same idea,
    5 points x strength per distinct signature that fired on the request."""
    best, shown = 0.0, None
    ids_totals: dict[str, float] = {}
    ids_seen: set[tuple[str, str]] = set()
    for scored in alerts:
        facts = scored.facts
        if scored.anomaly is not None:
            value = scored.anomaly * _keep(scored.discount, weighted)
            if value > best or shown is None:
                logged = "" if facts.anomaly_score is None else f"CRS inbound anomaly score {facts.anomaly_score}, "
                best, shown = value, f"{logged}{scored.anomaly:.1f} by its rules' paranoia levels"
        elif facts.kind == IDS and not scored.engine_noise:
            for hit in scored.hits:
                if (facts.request, hit.rule) not in ids_seen:
                    ids_seen.add((facts.request, hit.rule))
                    total = ids_totals.get(facts.request, 0.0) + 5 * hit.strength * _keep(hit.discount, weighted)
                    ids_totals[facts.request] = total
                    if total > best or shown is None:
                        best, shown = total, f"IDS signatures' points {total:.1f} on one request"
    if shown is None:
        return 0.0, "no anomaly total (no CRS or IDS rule hit)"
    sat = model.saturation.anomaly_score
    return min(1.0, best / sat), f"highest per-request total: {shown} (value 1 at {sat})"


def libinjection(alerts: Sequence[ScoredAlert], weighted: bool) -> FactorValue:
    kept = [_keep(h.discount, weighted) for s in alerts for h in s.hits if h.libinjection]
    if not kept:
        return 0.0, "libinjection found no SQL or HTML syntax"
    return max(kept), f"libinjection parsed SQL/HTML syntax in {len(kept)} hit(s) (942100/941100)"


def attack_classes(
    alerts: Sequence[ScoredAlert], model: TriageModel, history: SourceHistory | None, weighted: bool
) -> tuple[FactorValue, list[str]]:
    classes: dict[str, float] = {}
    full = model.saturation.request_strength
    for scored in alerts:
        for hit in scored.hits:
            if hit.attack_class and hit.strength > 0:
                # A class counts in proportion to its strongest hit: one PL4 special-character rule is no SQLi.
                value = min(1.0, hit.strength / full) * _keep(hit.discount, weighted)
                classes[hit.attack_class] = max(classes.get(hit.attack_class, 0.0), value)
    own = sorted(classes)
    earlier = sorted(
        c.value
        for c in (history.categories if history else ())
        if c in model.attack_class_categories and c.value not in classes
    )
    for name in earlier:
        classes[name] = 1.0
    if not classes:
        return (0.0, "no attack class (protocol, scanner or engine events only)"), own
    sat = model.saturation.attack_classes
    why = f"{len(own)} attack class(es) here ({', '.join(own) or 'none'})"
    if earlier:
        why += f", {len(earlier)} more from this source's other incidents ({', '.join(earlier)})"
    return (min(1.0, sum(classes.values()) / sat), why), own


def requests_weight(
    alerts: Sequence[ScoredAlert], weighted: bool, crossed_only: bool = False, full: float | None = None
) -> dict[str, float]:
    """Distinct requests and how much each counts: (1 - feedback discount), and with `full`, in proportion to
    the request's strongest hit of intent (an attack class or a scanner) up to `full`. A request with only
    protocol or outbound rules, or only engine noise, counts for nothing there: one noisy rule on every request
    (920450 on a header all of a site's clients send, 920272 on Latin-1 text at PL3) is a storm, not a tool."""
    weights: dict[str, float] = {}
    for scored in alerts:
        if scored.engine_noise or (crossed_only and not scored.facts.crossed):
            continue
        weight = _keep(scored.discount, weighted)
        if full is not None:
            strongest = max((h.strength for h in scored.hits if h.intent), default=0.0)
            weight *= min(1.0, strongest / full)
        key = scored.facts.request
        weights[key] = max(weights.get(key, 0.0), weight)
    return weights


def repetition(alerts: Sequence[ScoredAlert], model: TriageModel, span: float, weighted: bool) -> FactorValue:
    sat = model.saturation
    counted = requests_weight(alerts, weighted, full=sat.request_strength)
    n, effective = len(counted), sum(counted.values())
    rate = f", {n / span * 60:.1f}/min" if span > 0 and n > 1 else ""
    return log_scaled(effective, sat.requests), (
        f"{n} distinct request(s) over {span:.1f}s{rate}, counting as {effective:.1f} by strength "
        f"(value 1 at {sat.requests})"
    )


def sensor_verdict(alerts: Sequence[ScoredAlert], model: TriageModel, weighted: bool) -> FactorValue:
    counted = requests_weight(alerts, weighted, crossed_only=True, full=model.saturation.request_strength)
    if not counted:
        return 0.0, "the sensor neither blocked a request nor crossed its anomaly threshold"
    effective = sum(counted.values())
    value = log_scaled(effective, model.saturation.requests)
    return value, (
        f"{len(counted)} request(s) blocked by the sensor or over its anomaly threshold, counting as "
        f"{effective:.1f} by their strongest hit of intent"
    )


def scanner(alerts: Sequence[ScoredAlert], model: TriageModel, weighted: bool) -> FactorValue:
    """CRS 913xxx / an IDS scan classtype (the sensor's fact), or a scanner user agent (attacker's text: it may
    raise suspicion, and its absence never lowers anything)."""
    rule_hits = [_keep(h.discount, weighted) for s in alerts for h in s.hits if h.scanner]
    if rule_hits:
        return max(rule_hits), f"scanner detection rule fired {len(rule_hits)} time(s) (CRS 913xxx / IDS scan)"
    fingerprints = model.scanner_user_agents
    for scored in alerts:
        agent = (scored.facts.user_agent or "").lower()
        found = next((f for f in fingerprints if f in agent), None) if agent else None
        if found:
            return 1.0, f"user agent contains scanner fingerprint {found!r}"
    return 0.0, "no scanner fingerprint"


def sensor_agreement(alerts: Sequence[ScoredAlert], history: SourceHistory | None, model: TriageModel) -> FactorValue:
    kinds = {s.facts.kind for s in alerts if not s.engine_noise and any(h.strength > 0 for h in s.hits)}
    if history is not None:
        waf = set(model.waf_sources)
        kinds |= {WAF if src in waf else IDS if src == "suricata" else src for src in history.sensors}
    if WAF in kinds and IDS in kinds:
        return 1.0, "a WAF and a network IDS both alerted on this source"
    return 0.0, f"one sensor family ({', '.join(sorted(kinds)) or 'none'})"


def login_outcome(alerts: Sequence[ScoredAlert], model: TriageModel) -> FactorValue:
    """The login service's own outcome (auth log): a login that succeeded after the guessing is full evidence
    that the account is the attacker's; failed guessing alone counts for at most `login.failed_share`, by the
    longest run of failures the service counted. Neither the user name nor anything the client sent is read."""
    guessed = [s.facts.login_failures for s in alerts if s.facts.login == GUESSED]
    if guessed:
        return 1.0, (
            f"a login succeeded after {max(guessed)} failed guesses against the account (the login service's "
            "count): the guessing succeeded"
        )
    failed = [s.facts.login_failures for s in alerts if s.facts.login == FAILED]
    if not failed:
        return 0.0, "no login outcome reported (no authentication log)"
    sat, share = model.saturation.failed_logins, model.login.failed_share
    return share * log_scaled(max(failed), sat), (
        f"up to {max(failed)} failed logins in a row from this source and none succeeded: the account is not "
        f"known to be the attacker's (at most {share:g} of the factor, reached at {sat})"
    )


def source_history(history: SourceHistory | None, model: TriageModel) -> FactorValue:
    """Only raises: a quiet past is cheap for an attacker to build, so it never counts in their favour."""
    if history is None:
        return 0.0, "no history for this source"
    sat = model.saturation
    parts = [
        (log_scaled(history.prior_malicious, sat.prior_malicious), f"{history.prior_malicious} malicious before"),
        (1.0 if history.confirmed_actions > 0 else 0.0, f"{history.confirmed_actions} confirmed action(s)"),
        (
            0.5 * log_scaled(history.prior_incidents, sat.prior_incidents),
            f"{history.prior_incidents} prior incident(s)",
        ),
    ]
    value = max(v for v, _ in parts)
    return value, "; ".join(why for _, why in parts)
