"""The impact behind a decision: how far the case's attack got (controller/attackers/impact.py), as the plan that proposed
the action holds it, each evidence line citing the alert record it names.

The guard gives the policy `input.impact {verdict, assets}` from that plan (`none` when the plan holds no verdict),
and the risk score's `impact` credit reads it too, so "why did this run" needs the verdict, the assets reached and
the sensor records behind them: what the application answered and what no sensor blocked, never request text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autonomy_controller.controller.ledger import LedgerRecord
from autonomy_controller.controller.oversight.trail.model import Cite, Fact, Mark, Tone, ledger_cite
from autonomy_controller.controller.oversight.trail.runs import ActionContext

IMPACT_TONES = {"confirmed": Tone.BAD, "likely": Tone.BAD, "attempted": Tone.WARN, "none": Tone.INFO}


def impact_text(impact: Mapping[str, Any]) -> str:
    """`likely (stage possible_success): an attack reached web-01; 4096 bytes sent back` in one line."""
    said = f"{impact.get('verdict')} (stage {impact.get('stage') or '-'})"
    assets = [str(a) for a in impact.get("assets") or []]
    if assets:
        said += f": an attack reached {', '.join(assets)}; {impact.get('bytes_sent') or 0} bytes sent back"
    return said


def impact_facts(ctx: ActionContext, alerts_by_id: Mapping[str, LedgerRecord]) -> list[Fact]:
    """Facts for the decision step: the verdict the policy was given, then one line per evidence record."""
    plan = ctx.plan()
    impact = plan.payload.get("impact") if plan else None
    plan_cite = [ledger_cite(plan.seq)] if plan else []
    if not isinstance(impact, dict):
        return [
            Fact(
                text="impact given to the policy: none (the plan holds no impact verdict: made without the guard, "
                "or before impact assessment)",
                marks=[Mark(text="no impact verdict", tone=Tone.INFO)],
                cites=plan_cite,
            )
        ]
    verdict = str(impact.get("verdict"))
    facts = [
        Fact(
            text=f"impact given to the policy: {impact_text(impact)}",
            marks=[Mark(text=f"impact {verdict}", tone=IMPACT_TONES.get(verdict, Tone.WARN))],
            cites=plan_cite,
        )
    ]
    for item in impact.get("evidence") or []:
        if not isinstance(item, dict):
            continue
        alert = alerts_by_id.get(str(item.get("alert_id")))
        cites: list[Cite] = [ledger_cite(alert.seq)] if alert else []
        answered = [f"asset {item['asset']}"] if item.get("asset") else []
        answered += [f"status {item['status']}"] if item.get("status") is not None else []
        answered += [f"{item['bytes_sent']} bytes"] if item.get("bytes_sent") is not None else []
        facts.append(
            Fact(
                text=f"impact evidence: alert {item.get('alert_id')} from {item.get('sensor')}"
                + (f" ({', '.join(answered)})" if answered else "")
                + f": {item.get('why')}"
                + ("" if alert else " (the ledger holds no such alert in this case)"),
                marks=[] if alert else [Mark(text="alert not found", tone=Tone.BAD)],
                cites=cites + plan_cite,
            )
        )
        if alert is None:
            ctx.disagree(
                f"the plan's impact evidence names alert {item.get('alert_id')}, not in the ledger", *plan_cite
            )
    return facts
