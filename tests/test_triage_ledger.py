"""history_and_feedback on real ledgers (SQLite and PostgreSQL): the source's past, people's answers per rule,
incremental refresh by seq. Records are appended in the shapes the workflow writes (workflows/incident.py,
workflows/activities.py); tests/test_triage_feedback_loop.py drives the real workflow."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from autonomy_controller.controller.ledger import Ledger, LedgerError, RecordKind
from autonomy_controller.controller.ledger.outcomes import outcomes
from autonomy_controller.controller.models import Alert, Category
from autonomy_controller.controller.triage import FeedbackCounts, triage
from autonomy_controller.controller.triage.ledger_view import LedgerView, history_and_feedback, ledger_view
from tests.harness import alert
from tests.test_ledger import ledger_url  # noqa: F401  (the both-backends fixture)
from tests.test_triage import model

SRC = "198.51.100.66"
OTHER = "203.0.113.9"
_ids = itertools.count(1)


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger.from_url(ledger_url) as led:
        yield led


def alerts(led: Ledger, category: Category, src: str, n: int, **extra: Any) -> list[Alert]:
    made = [alert(next(_ids), src, category, **extra) for _ in range(n)]
    key = f"{category.value}:{src}"
    led.append_many(key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), None) for a in made])
    return made


def plan(led: Ledger, key: str, verdict: str, target: str, action: str = "network.block_ip", aid: str = "a1") -> None:
    led.append(
        key,
        RecordKind.PLAN,
        "planner:offline",
        {
            "incident_key": key,
            "planner": "offline",
            "actions": [{"id": aid, "action": action, "params": {"ip": target}}],
            "triage": {"verdict": verdict, "confidence": 0.9},
            "triage_detail": {"verdict": verdict},
        },
    )


def decide(led: Ledger, key: str, action: str = "network.block_ip", aid: str = "a1", verdict: str = "approve") -> None:
    led.append(
        key,
        RecordKind.DECISION,
        "guard",
        {
            "action_id": aid,
            "action": action,
            "verdict": verdict,
            "policy_revision": "r",
            "risk": None,
            "scope": "default",
            "effective_level": "L2",
            "triage": {"verdict": "suspicious", "confidence": 0.6},
        },
    )


def settle(led: Ledger, key: str, choice: str, aid: str = "a1") -> None:
    """A person's vote and the settlement the workflow writes after it."""
    led.append(
        key,
        RecordKind.APPROVAL,
        "user:carol",
        {"action_id": aid, "event": "vote", "approver": "carol", "choice": choice, "signed": False},
    )
    event = "approved" if choice == "approve" else "rejected"
    led.append(key, RecordKind.APPROVAL, "svc:controller", {"action_id": aid, "event": event, "detail": "by carol"})


def executed(led: Ledger, key: str, purpose: str = "execute", ok: bool = True, aid: str = "a1") -> None:
    kind = {"execute": RecordKind.EXECUTION, "revert": RecordKind.REVERT, "compensate": RecordKind.COMPENSATION}
    led.append(
        key,
        kind[purpose],
        "svc:controller",
        {"request": {"action_id": aid, "purpose": purpose}, "outcome": {"status": "done"}},
    )
    led.append(
        key, RecordKind.VERIFICATION, "svc:controller", {"action_id": aid, "purpose": purpose, "ok": ok, "detail": ""}
    )


def incident_of(made: list[Alert]) -> Any:
    from autonomy_controller.controller.case.grouping import incident_from_alerts

    first = made[0]
    return incident_from_alerts(f"{first.category.value}:{first.src_ip}", made)


def test_history_counts_the_sources_other_incidents_across_categories_and_sensors(ledger: Ledger) -> None:
    alerts(ledger, Category.SQLI, SRC, 3, source="modsecurity3")
    plan(ledger, f"sqli:{SRC}", "malicious", SRC)
    decide(ledger, f"sqli:{SRC}")
    settle(ledger, f"sqli:{SRC}", "approve")  # containment a person approved: confirmed
    alerts(ledger, Category.SCANNER, SRC, 2, source="suricata")
    plan(ledger, f"scanner:{SRC}", "suspicious", SRC)
    alerts(ledger, Category.XSS, OTHER, 5)  # another source: not this one's past
    plan(ledger, f"xss:{OTHER}", "malicious", OTHER)
    current = incident_of(alerts(ledger, Category.RCE, SRC, 1))

    history, _ = history_and_feedback(ledger, current)
    assert history is not None
    assert (history.prior_incidents, history.prior_alerts, history.prior_malicious) == (2, 5, 1)
    assert history.confirmed_actions == 1
    assert history.categories == {Category.SQLI, Category.SCANNER}
    assert history.sensors == {"modsecurity3", "suricata"}
    # History only raises: the same incident scores at least as high with it, and says why.
    with_past, alone = triage(current, model(), history=history), triage(current, model())
    assert with_past.score >= alone.score
    factor = next(f for f in with_past.factors if f.name == "source_history")
    assert factor.contribution > 0 and factor.trust == "ledger" and "1 malicious before" in factor.why
    # A new source has no past.
    stranger = incident_of(alerts(ledger, Category.RCE, "192.0.2.77", 1))
    assert history_and_feedback(ledger, stranger)[0] is None


def test_history_counts_containment_that_took_effect_and_not_what_a_person_reverted(ledger: Ledger) -> None:
    alerts(ledger, Category.SQLI, SRC, 1)
    plan(ledger, f"sqli:{SRC}", "suspicious", SRC)
    decide(ledger, f"sqli:{SRC}", verdict="execute")
    executed(ledger, f"sqli:{SRC}")  # ran alone and verified: it stood
    current = incident_of(alerts(ledger, Category.XSS, SRC, 1))
    history = history_and_feedback(ledger, current)[0]
    assert history is not None and history.confirmed_actions == 1
    # A person approves the unblock (proposed in another incident): the block no longer counts for the source.
    alerts(ledger, Category.OTHER, "192.0.2.1", 1)
    plan(ledger, "other:192.0.2.1", "noise", SRC, action="network.unblock_ip")
    decide(ledger, "other:192.0.2.1", action="network.unblock_ip")
    settle(ledger, "other:192.0.2.1", "approve")
    history = history_and_feedback(ledger, current)[0]
    assert history is not None and history.confirmed_actions == 0 and history.prior_incidents == 1


def test_feedback_counts_people_rejections_reverts_and_confirmations_per_rule_and_path(ledger: Ledger) -> None:
    rule = {"rule_ids": ["920450"], "url": "/app/search?q=1"}
    for n, src in enumerate(["192.0.2.10", "192.0.2.11", "192.0.2.12"]):
        key = f"protocol:{src}"
        alerts(ledger, Category.PROTOCOL, src, 2, **rule)
        plan(ledger, key, "suspicious", src)
        decide(ledger, key)
        settle(ledger, key, "reject" if n < 2 else "approve")
    # Not people's feedback: a timeout, a TTL revert, a compensation after failed verification.
    for src, story in [("192.0.2.20", "timeout"), ("192.0.2.21", "ttl"), ("192.0.2.22", "compensate")]:
        key = f"protocol:{src}"
        alerts(ledger, Category.PROTOCOL, src, 1, **rule)
        plan(ledger, key, "malicious", src)
        decide(ledger, key, verdict="approve" if story == "timeout" else "execute")
        if story == "timeout":
            ledger.append(key, RecordKind.APPROVAL, "svc:controller", {"action_id": "a1", "event": "timed_out"})
        else:
            executed(ledger, key, ok=story == "ttl")
            executed(ledger, key, purpose="revert" if story == "ttl" else "compensate")
    current = incident_of(alerts(ledger, Category.PROTOCOL, "192.0.2.99", 1, **rule))
    _, feedback = history_and_feedback(ledger, current)
    assert feedback is not None
    assert feedback.rules["920450"] == FeedbackCounts(rejected=2, reverted=0, confirmed=1)
    assert feedback.rule_paths[("920450", "/app/search")] == FeedbackCounts(rejected=2, confirmed=1)
    assert "942100" not in feedback.rules  # the incident does not carry it: not looked up

    # A person reverts the approved block: it moves from confirmed to reverted.
    alerts(ledger, Category.OTHER, "192.0.2.1", 1)
    plan(ledger, "other:192.0.2.1", "noise", "192.0.2.12", action="network.unblock_ip")
    decide(ledger, "other:192.0.2.1", action="network.unblock_ip")
    settle(ledger, "other:192.0.2.1", "approve")
    feedback = history_and_feedback(ledger, current)[1]
    assert feedback is not None and feedback.rules["920450"] == FeedbackCounts(rejected=2, reverted=1, confirmed=0)
    # The scorecards' fold attributes the same revert (one rule: outcomes.PeopleReverts).
    answers = [e.people_answer for i in outcomes(ledger) for e in i.episodes if e.containment]
    assert sorted(a for a in answers if a) == ["rejected", "rejected", "reverted"]


def test_the_view_folds_only_what_was_appended_since_and_matches_a_fresh_one(ledger: Ledger) -> None:
    current = incident_of(alerts(ledger, Category.SQLI, SRC, 1))
    view = ledger_view(ledger)
    assert view.through == ledger.head().seq
    assert history_and_feedback(ledger, current) == (None, None)
    alerts(ledger, Category.XSS, SRC, 2)
    decide(ledger, f"xss:{SRC}")
    settle(ledger, f"xss:{SRC}", "reject")
    ledger.append(f"xss:{SRC}", RecordKind.TRANSCRIPT, "planner:claude", {"big": "x" * 10_000})  # not read
    # One page at a time (page size 2) gives what the cached view gives: nothing missed, nothing twice.
    fresh = LedgerView(ledger, page=2)
    fresh.refresh()
    assert ledger_view(ledger) is view and view.through == fresh.through == ledger.head().seq
    assert view.history(current) == fresh.history(current) and view.history(current) is not None
    rules = {"942100", "949110"}
    assert view.feedback(rules, []) == fresh.feedback(rules, [])
    assert view.feedback(rules, []) is not None


def test_an_unreadable_record_fails_closed(ledger: Ledger) -> None:
    """A payload edited to non-JSON: no silent "no feedback" (that would give rules their weight back)."""
    current = incident_of(alerts(ledger, Category.SQLI, SRC, 1))
    with ledger.engine.begin() as conn:
        if ledger.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE ledger_record DISABLE TRIGGER ledger_record_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER ledger_record_no_update")
        conn.exec_driver_sql("UPDATE ledger_record SET payload = 'not json' WHERE seq = 1")
    with pytest.raises(LedgerError, match="run verify"):
        history_and_feedback(ledger, current)


def test_excerpts_refuse_keys_that_are_not_identifiers(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="plain identifiers"):
        ledger.excerpts(0, [RecordKind.ALERT], ["rule_ids') --"])
