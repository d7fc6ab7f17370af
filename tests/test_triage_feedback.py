"""People's feedback on rules: a rule people keep rejecting loses weight, within a bound, visibly, reversibly."""

from __future__ import annotations

import pytest

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.models import Incident
from autonomy_controller.controller.triage import FeedbackCounts, RuleFeedback, TriageResult, TriageVerdict, triage
from autonomy_controller.controller.triage.engine import RULE_FACTORS
from tests.test_triage import ATTACKER, CORPUS, NETNS, alerts_of, incidents_of, model

MANY = 10**6


def factor(result: TriageResult, name: str) -> float:
    return next(f.contribution for f in result.factors if f.name == name)


def rule_points(result: TriageResult) -> float:
    return sum(f.contribution for f in result.factors if f.name in RULE_FACTORS)


def accept_charset_storm() -> Incident:
    """CRS 3.3.4 flags every request carrying Accept-Charset (920450, PL1, critical): the CSIC "one noisy rule
    on all traffic" case. The corpus requests where 920450 is the only rule that fired."""
    alerts = [a for a in alerts_of(CORPUS) if set(a.rule_ids) - {"949110", "980130"} == {"920450"}]
    assert len(alerts) >= 30
    return incident_from_alerts("src:127.0.0.1", alerts)


def test_discount_grows_with_rejections_within_the_bound_and_confirmations_undo_it() -> None:
    fb = model().feedback
    assert FeedbackCounts().discount(fb.max_discount, fb.prior) == 0.0
    one = FeedbackCounts(rejected=1).discount(fb.max_discount, fb.prior)
    ten = FeedbackCounts(rejected=8, reverted=2).discount(fb.max_discount, fb.prior)
    endless = FeedbackCounts(rejected=MANY).discount(fb.max_discount, fb.prior)
    assert 0 < one < 0.15 < ten < endless < fb.max_discount <= 0.5
    confirmed = FeedbackCounts(rejected=10, confirmed=90).discount(fb.max_discount, fb.prior)
    assert confirmed < ten / 4


def test_a_rule_storm_is_noise_and_people_rejecting_its_rule_take_visible_points() -> None:
    """A protocol rule on every request is no tool's requests (repetition counts requests of intent), so the storm
    is noise without anyone's feedback; people's rejections of the rule still take points, visibly."""
    storm = accept_charset_storm()
    plain = triage(storm, model())
    assert plain.verdict is TriageVerdict.NOISE
    rejected = triage(storm, model(), feedback=RuleFeedback(rules={"920450": FeedbackCounts(rejected=40)}))
    assert rejected.verdict is TriageVerdict.NOISE and rejected.score < plain.score
    lost = factor(rejected, "rule_feedback")
    assert lost < 0 and rejected.score == pytest.approx(plain.score + lost, abs=0.15)
    # The other factors are shown as they were without feedback: the difference is one visible factor.
    assert rule_points(rejected) == pytest.approx(rule_points(plain))


def test_feedback_takes_at_most_half_of_the_rules_points_even_on_a_real_attack() -> None:
    storm = incidents_of(NETNS)[f"src:{ATTACKER}"]
    plain = triage(storm, model())
    every_rule = {r: FeedbackCounts(rejected=MANY) for a in storm.alerts for r in a.rule_ids}
    rejected = triage(storm, model(), feedback=RuleFeedback(rules=every_rule))
    lost = -factor(rejected, "rule_feedback")
    assert 0 < lost <= model().feedback.max_discount * rule_points(plain) + 0.01
    assert rejected.score >= plain.score - 0.5 * rule_points(plain) - 0.01
    assert rejected.verdict is not TriageVerdict.NOISE


def test_feedback_is_reversible_and_absent_feedback_changes_nothing() -> None:
    storm = accept_charset_storm()
    plain = triage(storm, model())
    assert triage(storm, model(), feedback=RuleFeedback()) == plain
    unrelated = triage(storm, model(), feedback=RuleFeedback(rules={"942100": FeedbackCounts(rejected=MANY)}))
    assert unrelated == plain and not any(f.name == "rule_feedback" for f in unrelated.factors)
    after = RuleFeedback(rules={"920450": FeedbackCounts(rejected=40, confirmed=2000)})
    restored = triage(storm, model(), feedback=after)
    assert -factor(restored, "rule_feedback") < 1.0 and restored.verdict is plain.verdict


def test_rule_on_path_feedback_is_smaller_and_only_where_people_said_so() -> None:
    """942100 rejected on /item: the 12 sqli requests to /item lose at most max_path_discount of their points;
    the attacker chose that path, so it is bounded lower than a rule-wide rejection, and other paths keep theirs."""
    storm = incidents_of(NETNS)[f"src:{ATTACKER}"]
    on_item = [a for a in storm.alerts if (a.url or "").startswith("/item?")]
    elsewhere = [a for a in storm.alerts if not (a.url or "").startswith("/item?")]
    assert len(on_item) >= 10 and elsewhere
    scoped = RuleFeedback(rule_paths={("942100", "/item"): FeedbackCounts(rejected=MANY)})
    item = incident_from_alerts(storm.key, on_item)
    plain, discounted = triage(item, model()), triage(item, model(), feedback=scoped)
    lost = -factor(discounted, "rule_feedback")
    assert 0 < lost <= model().feedback.max_path_discount * rule_points(plain) + 0.01
    other = incident_from_alerts(storm.key, elsewhere)
    assert triage(other, model(), feedback=scoped) == triage(other, model())
