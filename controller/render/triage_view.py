"""How a triage reads to a person: one home for the wording `evaluate`, the incident report and the audit trail
share, so the three never describe the same verdict differently.

Every function takes the JSON form the ledger holds (a TriageSummary or TriageResult dump), because the report
and the trail read ledger payloads, and returns plain text: each renderer escapes it for its medium (Rich
markup, Markdown, HTML). Factor `why` strings can quote rule ids and a scanner's user agent (the attacker's text),
so nothing here may be printed unescaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FACTOR_HEADERS = ["factor", "value", "weight", "points", "trust", "why"]
FACTOR_NUMERIC = [1, 2, 3]
"""Column indexes holding numbers (right-aligned in tables)."""


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def verdict_text(triage: Mapping[str, Any]) -> str:
    """ "malicious, confidence 0.86, score 79.1": what the verdict is and how sure, in one phrase."""
    score = triage.get("score")
    text = f"{triage.get('verdict')}, confidence {_number(triage.get('confidence'))}"
    return text + (f", score {_number(score)}" if score is not None else "")


def technique_ids(triage: Mapping[str, Any]) -> list[str]:
    """ATT&CK ids from either form: a summary lists ids, a full result lists {id, name}."""
    return [str(t.get("id") if isinstance(t, Mapping) else t) for t in triage.get("techniques") or []]


def techniques_text(triage: Mapping[str, Any]) -> str:
    """ "T1190 Exploit Public-Facing Application, T1059 ..." (names where the full result has them), or "-"."""
    named = [
        f"{t.get('id')} {t.get('name')}" if isinstance(t, Mapping) and t.get("name") else str(tid)
        for t, tid in zip(triage.get("techniques") or [], technique_ids(triage), strict=True)
    ]
    return ", ".join(named) or "-"


def lowered_text(summary: Mapping[str, Any]) -> str | None:
    """Who lowered the controller's verdict for the guard, and from what; None when nobody did."""
    if not summary.get("lowered_by"):
        return None
    return f"lowered by {summary.get('lowered_by')} from the controller's {summary.get('controller_verdict')}"


def guard_differs(detail: Mapping[str, Any], summary: Mapping[str, Any]) -> str | None:
    """Why the guard was given a lower verdict than triage computed, when it was (points the request's own text
    earned do not count for the guard; a planner may lower it): None when they agree."""
    if detail.get("verdict") == summary.get("verdict") and detail.get("confidence") == summary.get("confidence"):
        return None
    why = lowered_text(summary) or "without the points the request's own text earned"
    return f"the guard was given {verdict_text(summary)} ({why})"


def factor_rows(detail: Mapping[str, Any]) -> list[list[str]]:
    """One row per factor of a full triage result, in FACTOR_HEADERS order."""
    return [
        [
            str(f.get("name")),
            _number(f.get("value")),
            _number(f.get("weight")),
            _number(f.get("contribution")),
            str(f.get("trust")),
            str(f.get("why")),
        ]
        for f in detail.get("factors") or []
        if isinstance(f, Mapping)
    ]


def evidence_text(detail: Mapping[str, Any]) -> str | None:
    """The counts behind the factors (alerts, requests, rules, blocked share), so a reader can check them."""
    evidence = detail.get("evidence")
    if not isinstance(evidence, Mapping):
        return None
    share = evidence.get("blocked_share")
    blocked = f"{evidence.get('blocked')} blocked" + (f" ({share:.0%})" if isinstance(share, int | float) else "")
    sensors = ", ".join(map(str, evidence.get("sensors") or [])) or "-"
    return (
        f"{evidence.get('alerts')} alert(s), {evidence.get('requests')} distinct request(s), "
        f"{evidence.get('distinct_rules')} distinct rule(s), {blocked}, sensors {sensors}"
    )
