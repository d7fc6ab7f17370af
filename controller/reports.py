"""Incident reports, built from the ledger alone: what an auditor can re-derive, the report shows.

The report is a view, not a second source of truth: it reads the incident's hash-chained records and says
which seq each line comes from, so every statement in it can be checked against the ledger.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.ledger import Ledger, LedgerRecord, RecordKind

REPORT_FORMAT = "autonomy-incident-report/1"


@dataclass(frozen=True)
class ReportPaths:
    markdown: Path
    json: Path
    sha256: str


def record_summary(record: LedgerRecord) -> str:
    """One line per ledger record: the report's timeline, and the audit trail's incident-level notes."""
    p = record.payload
    kind = record.kind
    if kind is RecordKind.ALERT:
        rules = ",".join(p.get("rule_ids", [])[:6])
        return f"alert {p.get('id')} {p.get('category')} from {p.get('src_ip')} (rules {rules or '-'})"
    if kind is RecordKind.PLAN:
        names = ", ".join(a["action"] for a in p.get("actions", []))
        return f"plan by {p.get('planner')} ({p.get('playbook') or p.get('mode')}): {names or 'no actions'}"
    if kind is RecordKind.DECISION:
        shadow = " [shadow]" if p.get("shadow") else ""
        return f"{p.get('action_id')} {p.get('action')}: {p.get('verdict')} at {p.get('effective_level')}{shadow}"
    if kind is RecordKind.APPROVAL:
        choice = f"({p['choice']})" if p.get("choice") else ""
        words = [str(p.get("event")), str(p.get("approver") or ""), choice, str(p.get("detail") or "")]
        return f"{p.get('action_id')}: " + " ".join(w for w in words if w)
    if kind is RecordKind.PREFLIGHT:
        verdict = "go" if p.get("go") else "held"
        return f"{p.get('action_id')}: pre-flight {verdict}: {'; '.join(p.get('reasons', []))}"
    if kind in (RecordKind.EXECUTION, RecordKind.COMPENSATION, RecordKind.REVERT):
        req, out = p.get("request", {}), p.get("outcome", {})
        return f"{req.get('action_id')} {req.get('action')} {kind.value}: {out.get('status')}: {out.get('detail')}"
    if kind is RecordKind.VERIFICATION:
        state = "ok" if p.get("ok") else "FAILED"
        return f"{p.get('action_id')} {p.get('action')} verify ({p.get('purpose')}): {state}: {p.get('detail')}"
    if kind is RecordKind.LEVEL_CHANGE:
        return f"levels lowered to {p.get('lowered_to')}: {p.get('why')}"
    return kind.value


def build_report(incident_key: str, records: list[LedgerRecord]) -> dict[str, Any]:
    alerts = [r for r in records if r.kind is RecordKind.ALERT]
    actions: dict[str, dict[str, Any]] = {}

    def entry(action_id: str | None) -> dict[str, Any] | None:
        if not action_id:
            return None
        return actions.setdefault(action_id, {"action_id": action_id, "approvals": [], "steps": []})

    plan: dict[str, Any] | None = None
    for record in records:
        p = record.payload
        if record.kind is RecordKind.PLAN:
            plan = {k: p.get(k) for k in ("planner", "mode", "playbook", "model", "prompt_hash", "usage")}
            for proposed in p.get("actions", []):
                item = entry(proposed["id"])
                assert item is not None
                item.update(
                    action=proposed["action"], params=proposed.get("params"), rationale=proposed.get("rationale")
                )
        elif record.kind is RecordKind.DECISION:
            item = entry(p.get("action_id"))
            if item is not None and "decision" not in item:
                policy = p.get("policy") or {}
                item["decision"] = {
                    "seq": record.seq,
                    "verdict": p.get("verdict"),
                    "declared_level": p.get("declared_level"),
                    "effective_level": p.get("effective_level"),
                    "level_reasons": p.get("level_reasons", []),
                    "reasons": p.get("reasons", []),
                    "risk": p.get("risk"),
                    "policy_revision": p.get("policy_revision"),
                    "engine": policy.get("engine"),
                    "approver_groups": policy.get("approver_groups", []),
                    "quorum": policy.get("quorum", 0),
                    "shadow": p.get("shadow", False),
                }
        elif record.kind is RecordKind.APPROVAL:
            item = entry(p.get("action_id"))
            if item is not None:
                item["approvals"].append({"seq": record.seq, "at": record.created_at.isoformat(), **p})
        else:
            action_id = p.get("action_id") or (p.get("request") or {}).get("action_id")
            item = entry(action_id)
            if item is not None:
                item["steps"].append({"seq": record.seq, "kind": record.kind.value, "summary": record_summary(record)})
            if record.kind is RecordKind.VERIFICATION and item is not None:
                item.setdefault("verification", []).append(
                    {"seq": record.seq, "ok": p.get("ok"), "detail": p.get("detail")}
                )
    rule_ids = sorted({rule for r in alerts for rule in r.payload.get("rule_ids", [])})
    return {
        "format": REPORT_FORMAT,
        "incident_key": incident_key,
        "first_alert_at": alerts[0].payload.get("observed_at") if alerts else None,
        "first_record_at": records[0].created_at.isoformat() if records else None,
        "last_record_at": records[-1].created_at.isoformat() if records else None,
        "alert_count": len(alerts),
        "rule_ids": rule_ids,
        "categories": sorted({str(r.payload.get("category")) for r in alerts}),
        "sources": sorted({str(r.payload.get("src_ip")) for r in alerts if r.payload.get("src_ip")}),
        "sensor_blocked_all": bool(alerts) and all(r.payload.get("blocked") for r in alerts),
        "plan": plan,
        "actions": list(actions.values()),
        "timeline": [
            {
                "seq": r.seq,
                "at": r.created_at.isoformat(),
                "kind": r.kind.value,
                "actor": r.actor,
                "what": record_summary(r),
            }
            for r in records
        ],
        "ledger_head": {"seq": records[-1].seq, "hash": records[-1].hash} if records else None,
    }


def _risk_lines(risk: dict[str, Any] | None) -> list[str]:
    if not risk:
        return ["  - risk: not scored (denied before scoring)"]
    lines = [f"  - risk {risk['score']}:"]
    for f in risk.get("factors", []):
        lines.append(f"    - {f['name']} = {f['value']} x {f['weight']} -> {f['contribution']}: {f['why']}")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    out = [f"# Incident {report['incident_key']}", ""]
    out.append(
        f"- alerts: {report['alert_count']} ({', '.join(report['categories']) or '-'}) "
        f"from {', '.join(report['sources']) or '-'}"
    )
    out.append(f"- WAF/IDS rule ids: {', '.join(report['rule_ids']) or '-'}")
    out.append(f"- sensor blocked every request: {'yes' if report['sensor_blocked_all'] else 'no'}")
    out.append(f"- first alert observed: {report['first_alert_at']}; last step recorded: {report['last_record_at']}")
    plan = report.get("plan") or {}
    out.append(f"- plan: {plan.get('planner', '-')} / {plan.get('playbook') or plan.get('mode') or '-'}")
    out += ["", "## Actions", ""]
    for item in report["actions"]:
        decision = item.get("decision") or {}
        out.append(f"### {item['action_id']} {item.get('action', '?')} -> {decision.get('verdict', 'undecided')}")
        out.append(f"- params: `{json.dumps(item.get('params'), sort_keys=True)}`")
        out.append(
            f"- level: declared {decision.get('declared_level')}, effective {decision.get('effective_level')}"
            + (f" ({'; '.join(decision['level_reasons'])})" if decision.get("level_reasons") else "")
        )
        out += _risk_lines(decision.get("risk"))
        out.append(f"- policy ({decision.get('engine')}, revision `{decision.get('policy_revision')}`):")
        out += [f"  - {reason}" for reason in decision.get("reasons", [])]
        for vote in item["approvals"]:
            who = vote.get("approver") or ""
            choice = f"({vote['choice']})" if vote.get("choice") else ""
            words = " ".join(w for w in (str(vote.get("event")), who, choice, str(vote.get("detail") or "")) if w)
            out.append(f"- approval [{vote['seq']}]: {words}")
        out += [f"- [{step['seq']}] {step['summary']}" for step in item["steps"]]
        out.append("")
    out += ["## Timeline", "", "| seq | at | kind | actor | what |", "|---|---|---|---|---|"]
    for row in report["timeline"]:
        what = str(row["what"]).replace("|", "\\|")
        out.append(f"| {row['seq']} | {row['at']} | {row['kind']} | {row['actor']} | {what} |")
    head = report.get("ledger_head")
    if head:
        out += ["", f"Ledger head of this incident: seq {head['seq']}, hash `{head['hash']}`."]
    return "\n".join(out) + "\n"


def safe_name(incident_key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in incident_key)


def write_incident_report(ledger: Ledger, incident_key: str, reports_dir: Path) -> ReportPaths:
    report = build_report(incident_key, ledger.records(incident_key))
    reports_dir.mkdir(parents=True, exist_ok=True)
    name = safe_name(incident_key)
    json_text = json.dumps(report, indent=2, ensure_ascii=False, default=str)
    md_path, json_path = reports_dir / f"{name}.md", reports_dir / f"{name}.json"
    md_path.write_text(render_markdown(report))
    json_path.write_text(json_text)
    return ReportPaths(markdown=md_path, json=json_path, sha256=hashlib.sha256(json_text.encode()).hexdigest())
