"""The Block Kit message for one pending approval, and its update after a vote.

Alert evidence, rule messages, parameters and comments are attacker- or person-controlled. In Slack's mrkdwn,
`<...>` makes links and mentions (`<!channel>`, `<@U123>`, `<https://x|click>`), so every outside value is
escaped as Slack documents (`&`, `<`, `>` as entities) and carried in text objects marked `verbatim` (no
auto-linking of bare URLs or channel names). What is left to an attacker is cosmetic (`*bold*`): no ping, no
link, no button. Titles are `plain_text`, which Slack never formats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from autonomy_controller.controller.service.approvals import Pending, describe_vote
from autonomy_controller.workflows.contracts import ActionState, ActionStatus

TEXT_LIMIT = 3000
"""Slack's limit for a section's text (and 2000 for a field's, 150 for a header's, 2000 for a button value)."""
EVIDENCE_CHARS = 400
APPROVE, REJECT = "approve", "reject"
VOTE_BLOCK = "autonomy-vote"

Block = dict[str, Any]


def escape(text: object) -> str:
    """mrkdwn-safe text: Slack's three control characters as entities (`&` first)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, limit), "verbatim": True}


def plain(text: str, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": _cut(text, limit), "emoji": False}


def button_value(item: Pending) -> str:
    """What a button carries back: the workflow (incident key and run) and the action id."""
    return json.dumps({"incident": item.incident, "run": item.run_id, "action": item.state.action_id}, sort_keys=True)


def message(item: Pending, outcome: str | None = None) -> dict[str, Any]:
    """The message: what a person needs to decide, and Approve / Reject while the action still awaits votes."""
    state, decision = item.state, item.decision
    title = f"{_title(state)}: {state.action} on {state.target or item.incident}"
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, 150)},
        {"type": "section", "fields": [mrkdwn(f"*{name}*\n{escape(value)}", 2000) for name, value in _facts(item)]},
        {"type": "section", "text": mrkdwn("*Votes so far*\n" + _lines([describe_vote(v) for v in state.votes]))},
        {"type": "section", "text": mrkdwn("*Planner's rationale*\n" + escape(item.rationale or "-"))},
        {"type": "section", "text": mrkdwn("*Policy reasons*\n" + _lines(decision.get("reasons")))},
        {"type": "section", "text": mrkdwn("*Level reasons*\n" + _lines(decision.get("level_reasons")))},
        {"type": "section", "text": mrkdwn("*Risk factors*\n" + _factors(decision.get("risk") or {}))},
        {"type": "section", "text": mrkdwn("*Evidence (latest alerts)*\n" + _evidence(item.alerts))},
    ]
    if outcome:
        blocks.append({"type": "section", "text": mrkdwn(outcome)})
    value = button_value(item)
    if state.status is ActionStatus.AWAITING_APPROVAL and len(value) <= 2000:
        blocks.append(
            {
                "type": "actions",
                "block_id": VOTE_BLOCK,
                "elements": [_button(APPROVE, "Approve", "primary", value), _button(REJECT, "Reject", "danger", value)],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [mrkdwn(f"incident {escape(item.incident)} · run {escape(item.run_id)} · autonomy-controller")],
        }
    )
    return {"text": _cut(title, TEXT_LIMIT), "blocks": blocks}


def _button(action_id: str, label: str, style: str, value: str) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": plain(label), "style": style, "value": value}


def refusal(reason: str) -> dict[str, Any]:
    """An answer only the person who pressed the button sees; the message stays as it was."""
    return {"response_type": "ephemeral", "replace_original": False, "text": _cut(f"Refused: {reason}", TEXT_LIMIT)}


def _title(state: ActionState) -> str:
    return "Approval needed" if state.status is ActionStatus.AWAITING_APPROVAL else f"Now {state.status.value}"


def _facts(item: Pending) -> list[tuple[str, object]]:
    state, decision = item.state, item.decision
    triage = decision.get("triage") or {}
    return [
        ("Incident", item.incident),
        ("Action", f"{state.action} ({state.action_id}, round {state.round})"),
        ("Parameters", ", ".join(f"{k}={v}" for k, v in sorted(item.params.items())) or "-"),
        (
            "Verdict",
            f"{decision.get('verdict', state.verdict)} at {decision.get('effective_level', '?')}"
            f" (declared {decision.get('declared_level', '?')})",
        ),
        (
            "Triage",
            f"{triage.get('verdict')} (confidence {triage.get('confidence')}, score {triage.get('score')})"
            if triage
            else "-",
        ),
        ("Risk score", (decision.get("risk") or {}).get("score", "-")),
        ("Approver groups", ", ".join(decision.get("approver_groups") or []) or "-"),
        ("Quorum still needed", "; ".join(state.missing) or "-"),
        ("Who may vote", ", ".join(state.waiting_on) or "nobody"),
        ("Deadline", _deadline(state.deadline)),
    ]  # Slack allows 10 fields in a section


def _deadline(deadline: datetime | None) -> str:
    return deadline.isoformat(timespec="seconds") if deadline else "no deadline"


def _lines(values: object) -> str:
    items = [str(v) for v in values] if isinstance(values, list) else []
    return "\n".join(f"• {escape(v)}" for v in items) or "-"


def _factors(risk: Mapping[str, Any]) -> str:
    rows = [
        f"• {escape(f.get('name'))} = {escape(f.get('value'))} (weight {escape(f.get('weight'))}, "
        f"{escape(f.get('contribution'))} points): {escape(f.get('why'))}"
        for f in risk.get("factors") or []
    ]
    return "\n".join(rows) or "-"


def _evidence(alerts: object) -> str:
    rows = []
    for alert in alerts if isinstance(alerts, list | tuple) else []:
        evidence = str(alert.get("evidence", ""))
        short = evidence if len(evidence) <= EVIDENCE_CHARS else evidence[:EVIDENCE_CHARS] + "…"
        rows.append(
            f"• {escape(alert.get('observed_at'))} {escape(alert.get('source'))} from {escape(alert.get('src_ip'))}"
            f" ({escape(alert.get('category'))}; rules {escape(', '.join(alert.get('rule_ids') or []))}): "
            f"{escape(short)}"
        )
    return "\n".join(rows) or "-"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
