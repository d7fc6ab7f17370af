"""Incident reports, built from the ledger alone: what an auditor can re-derive, the report shows.

The report is a view, not a second source of truth: it reads the incident's hash-chained records and says
which seq each line comes from, so every statement in it can be checked against the ledger.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from autonomy_controller.controller.ledger import Ledger, LedgerError, LedgerRecord, RecordKind, observations
from autonomy_controller.controller.models import canonical_ip
from autonomy_controller.controller.render import markdown as md
from autonomy_controller.controller.render import triage_view

REPORT_FORMAT = "autonomy-incident-report/1"
PLAN_FIELDS = (
    *("planner", "mode", "playbook", "model", "prompt_hash", "usage"),
    *("planner_outcome", "planner_error", "planner_reason"),  # Claude asked, and why its plan did not run
)
"""What a report says of the plan record (the ledger keeps the rest: the transcript, the actions dropped)."""
log = logging.getLogger(__name__)


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


def triage_of_plan(record: LedgerRecord) -> dict[str, Any] | None:
    """The controller's triage as the PLAN record holds it: the full result (`triage_detail`: factors,
    techniques with names, evidence) with the summary the guard was given (`triage`), and the planner's own
    reading when it gave one. None for a plan made without triage (the guard was unavailable)."""
    p = record.payload
    detail, summary = p.get("triage_detail"), p.get("triage")
    full = detail if isinstance(detail, dict) else summary if isinstance(summary, dict) else None
    if full is None:
        return None
    return {
        "seq": record.seq,
        "verdict": full.get("verdict"),
        "confidence": full.get("confidence"),
        "score": full.get("score"),
        "model_revision": full.get("model_revision"),
        "techniques": full.get("techniques") or [],
        "factors": full.get("factors") or [],
        "evidence": full.get("evidence"),
        "for_guard": summary,
        "planner_triage": p.get("planner_triage"),
    }


def impact_of_plan(record: LedgerRecord, alert_seqs: dict[str, int]) -> dict[str, Any] | None:
    """The impact verdict as the PLAN record holds it (controller/attackers/impact.py: what sensors blocked and what the
    application answered), each evidence line with the ledger seq of the alert it names. None for a plan made
    without one (the guard was unavailable, or the record predates impact)."""
    impact = record.payload.get("impact")
    if not isinstance(impact, dict):
        return None
    evidence = [e for e in impact.get("evidence") or [] if isinstance(e, dict)]
    return {
        "seq": record.seq,
        "round": record.payload.get("round", 1),
        "verdict": impact.get("verdict"),
        "stage": impact.get("stage"),
        "assets": list(impact.get("assets") or []),
        "bytes_sent": impact.get("bytes_sent"),
        "evidence": [{**e, "seq": alert_seqs.get(str(e.get("alert_id")))} for e in evidence],
    }


def _lowered(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions whose triage a planner lowered: the guard weighed less than the controller said."""
    return [
        {**decision["triage"], "action_id": item["action_id"], "seq": decision["seq"]}
        for item in actions
        if (decision := item.get("decision"))
        and isinstance(decision.get("triage"), dict)
        and decision["triage"].get("lowered_by")
    ]


def build_report(
    incident_key: str, records: list[LedgerRecord], observed: Sequence[LedgerRecord] = ()
) -> dict[str, Any]:
    """The report document; `observed` are the source's access-log records (controller/ledger/observations.py: kept
    outside the case), so impact evidence naming one cites its ledger seq."""
    alerts = [r for r in records if r.kind is RecordKind.ALERT]
    actions: dict[str, dict[str, Any]] = {}

    def entry(action_id: str | None) -> dict[str, Any] | None:
        if not action_id:
            return None
        return actions.setdefault(action_id, {"action_id": action_id, "approvals": [], "steps": []})

    plan: dict[str, Any] | None = None
    triage: dict[str, Any] | None = None
    alert_seqs = {str(r.payload.get("id")): r.seq for r in [*observed, *alerts]}
    impacts: list[dict[str, Any]] = []
    for record in records:
        p = record.payload
        if record.kind is RecordKind.PLAN:
            plan = {k: p.get(k) for k in PLAN_FIELDS}
            triage = triage_of_plan(record)
            impact = impact_of_plan(record, alert_seqs)
            impacts += [impact] if impact else []
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
                    "triage": p.get("triage"),
                }
        elif record.kind is RecordKind.APPROVAL:
            item = entry(p.get("action_id"))
            if item is not None:
                # the ledger's own seq and time win over any same-named key in the payload
                item["approvals"].append({**p, "seq": record.seq, "at": record.created_at.isoformat()})
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
        "attacker_page": case_page_link(incident_key),
        "sensor_blocked_all": bool(alerts) and all(r.payload.get("blocked") for r in alerts),
        "plan": plan,
        "triage": {**triage, "lowered": _lowered(list(actions.values()))} if triage else None,
        "impact": {**impacts[-1], "rounds": [{k: i[k] for k in ("seq", "round", "verdict", "stage")} for i in impacts]}
        if impacts
        else None,
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
    lines = [f"  - risk {md.text(risk.get('score'))}:"]
    for f in risk.get("factors", []):
        parts = [f.get(k) for k in ("name", "value", "weight", "contribution", "why")]
        name, value, weight, contribution, why = (md.text(part) for part in parts)
        lines.append(f"    - {name} = {value} x {weight} -> {contribution}: {why}")
    return lines


def _listed(values: list[Any]) -> str:
    return ", ".join(md.text(v) for v in values) or "-"


def _lowered_lines(lowered: list[dict[str, Any]]) -> list[str]:
    """One line per distinct lowering (a planner lowers the incident's triage for every action alike), naming
    the actions and their decision records."""
    t = md.text
    if not lowered:
        return ["- lowered by a planner: no"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for item in lowered:
        key = (triage_view.lowered_text(item) or "", triage_view.verdict_text(item))
        groups.setdefault(key, []).append(item)
    return [
        f"- {t(how)}: the policy was given {t(given)} for "
        + ", ".join(f"{t(i['action_id'])} \\[ledger seq {t(i['seq'])}\\]" for i in items)
        for (how, given), items in groups.items()
    ]


def _triage_lines(triage: dict[str, Any] | None) -> list[str]:
    """The Triage section: verdict, model, techniques, evidence, who lowered it, and every factor."""
    t = md.text
    if triage is None:
        return [
            "No triage recorded: the plan was made without one (the guard was unavailable, or the record"
            " predates triage), so no level's triage bar was met.",
            "",
        ]
    out = [
        f"- verdict: {t(triage_view.verdict_text(triage))} \\[ledger seq {t(triage['seq'])}\\]",
        f"- model revision: {md.code(triage.get('model_revision') or '-')}",
        f"- ATT&CK techniques: {t(triage_view.techniques_text(triage))}",
    ]
    evidence = triage_view.evidence_text(triage)
    out += [f"- evidence: {t(evidence)}"] if evidence else []
    summary = triage.get("for_guard")
    differs = triage_view.guard_differs(triage, summary) if isinstance(summary, dict) else None
    out += [f"- for the guard: {t(differs)}"] if differs else []
    out += _lowered_lines(triage.get("lowered") or [])
    own = triage.get("planner_triage")
    if isinstance(own, dict):
        out.append(f"- the planner's own triage: {t(triage_view.verdict_text(own))}: {t(own.get('rationale') or '-')}")
    rows = triage_view.factor_rows(triage)
    if rows:
        align = ["---:" if i in triage_view.FACTOR_NUMERIC else "---" for i in range(len(triage_view.FACTOR_HEADERS))]
        out += ["", "| " + " | ".join(triage_view.FACTOR_HEADERS) + " |", "|" + "|".join(align) + "|"]
        out += ["| " + " | ".join(t(cell) for cell in row) + " |" for row in rows]
    return [*out, ""]


IMPACT_HEADERS = ["alert", "ledger seq", "sensor", "asset", "status", "bytes sent", "why"]


def _impact_lines(impact: dict[str, Any] | None) -> list[str]:
    """The Impact section: how far the attack got (the latest plan's verdict, and each round's when the case was
    decided again), the assets reached, and the evidence, each line citing its ledger record."""
    t = md.text
    if impact is None:
        return [
            "No impact verdict recorded: the plan was made without one (the guard was unavailable, or the record"
            " predates impact assessment).",
            "",
        ]
    out = [
        f"- verdict: {t(impact.get('verdict'))} (stage {t(impact.get('stage'))}) \\[ledger seq {t(impact['seq'])}\\]",
        f"- assets an attack reached: {_listed(impact.get('assets') or [])}",
        f"- bytes the application sent back on those answers: {t(impact.get('bytes_sent'))}",
    ]
    rounds = impact.get("rounds") or []
    if len(rounds) > 1:
        out.append(
            "- by decision round: "
            + "; ".join(f"{t(r['round'])}: {t(r['verdict'])} \\[ledger seq {t(r['seq'])}\\]" for r in rounds)
        )
    evidence = impact.get("evidence") or []
    if not evidence:
        return [*out, "- evidence: none (no attack request got through)", ""]
    out += ["", "| " + " | ".join(IMPACT_HEADERS) + " |", "|---|---:|---|---|---:|---:|---|"]
    for e in evidence:
        cells = [e.get(k) for k in ("alert_id", "seq", "sensor", "asset", "status", "bytes_sent", "why")]
        out.append("| " + " | ".join(t("-" if cell is None else cell) for cell in cells) + " |")
    return [*out, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown. Every value goes through controller/render/markdown.py: ids, rule ids, URLs, plan text,
    comments and adapter details are attacker-, model- or person-controlled, and must read as text in any
    CommonMark viewer (no tag, link, image, heading, list item or table cell of their making)."""
    t = md.text
    out = [f"# Incident {t(report['incident_key'])}", ""]
    page = report.get("attacker_page")  # built from a canonical address: file-safe characters only
    out.append(
        f"- alerts: {t(report['alert_count'])} ({_listed(report['categories'])}) from {_listed(report['sources'])}"
        + (f" ([attacker page]({page}))" if page else "")
    )
    out.append(f"- WAF/IDS rule ids: {_listed(report['rule_ids'])}")
    out.append(f"- sensor blocked every request: {'yes' if report['sensor_blocked_all'] is True else 'no'}")
    out.append(
        f"- first alert observed: {t(report['first_alert_at'])}; last step recorded: {t(report['last_record_at'])}"
    )
    plan = report.get("plan") or {}
    out.append(f"- plan: {t(plan.get('planner') or '-')} / {t(plan.get('playbook') or plan.get('mode') or '-')}")
    if plan.get("planner_outcome") not in (None, "ok"):  # Claude was asked and its plan did not run: say why
        why = "; ".join(str(plan[k]) for k in ("planner_error", "planner_reason") if plan.get(k))
        out.append(f"- Claude's plan not used: {t(plan['planner_outcome'])}" + (f" ({t(why)})" if why else ""))
    out += ["", "## Triage", ""]
    out += _triage_lines(report.get("triage"))
    out += ["## Impact", ""]
    out += _impact_lines(report.get("impact"))
    out += ["## Actions", ""]
    for item in report["actions"]:
        decision = item.get("decision") or {}
        verdict = decision.get("verdict") or "undecided"
        out.append(f"### {t(item['action_id'])} {t(item.get('action', '?'))} -> {t(verdict)}")
        out.append(f"- params: {md.code(json.dumps(item.get('params'), sort_keys=True))}")
        reasons = decision.get("level_reasons") or []
        out.append(
            f"- level: declared {t(decision.get('declared_level'))}, effective {t(decision.get('effective_level'))}"
            + (f" ({'; '.join(t(r) for r in reasons)})" if reasons else "")
        )
        out += _risk_lines(decision.get("risk"))
        given = decision.get("triage")
        out.append(
            f"- triage given to the policy: {t(triage_view.verdict_text(given))}"
            + (f" ({t(triage_view.lowered_text(given))})" if triage_view.lowered_text(given) else "")
            if isinstance(given, dict)
            else "- triage given to the policy: none (no level's triage bar is met)"
        )
        out.append(f"- policy ({t(decision.get('engine'))}, revision {md.code(decision.get('policy_revision'))}):")
        out += [f"  - {t(reason)}" for reason in decision.get("reasons", [])]
        for vote in item["approvals"]:
            choice = f"({vote['choice']})" if vote.get("choice") else ""
            words = [str(vote.get("event")), str(vote.get("approver") or ""), choice, str(vote.get("detail") or "")]
            out.append(f"- approval \\[{t(vote['seq'])}\\]: {t(' '.join(w for w in words if w))}")
        out += [f"- \\[{t(step['seq'])}\\] {t(step['summary'])}" for step in item["steps"]]
        out.append("")
    out += ["## Timeline", "", "| seq | at | kind | actor | what |", "|---|---|---|---|---|"]
    for row in report["timeline"]:
        cells = (row["seq"], row["at"], row["kind"], row["actor"], row["what"])
        out.append("| " + " | ".join(t(cell) for cell in cells) + " |")
    head = report.get("ledger_head")
    if head:
        out += ["", f"Ledger head of this incident: seq {t(head['seq'])}, hash {md.code(head['hash'])}."]
    return "\n".join(out) + "\n"


def safe_name(incident_key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in incident_key)


ATTACKER_PAGES = "attackers"
"""The folder, beside the reports, of the attacker pages (controller/oversight/attacker_page.py)."""


def attacker_page_link(address: str) -> str:
    """Where a report or audit trail finds its source's attacker page: a relative link, file-safe for IPv6."""
    return f"{ATTACKER_PAGES}/{safe_name(address)}.html"


def case_page_link(incident_key: str) -> str | None:
    """The attacker page of a `src:` case's source (None for other cases, and for a key that is not one)."""
    address = observations.case_address(incident_key)
    if address is None:
        return None
    try:
        return attacker_page_link(address) if canonical_ip(address) == address else None
    except ValueError:
        return None


def write_incident_report(ledger: Ledger, incident_key: str, reports_dir: Path) -> ReportPaths:
    report = build_report(incident_key, ledger.records(incident_key), observations.case_records(ledger, incident_key))
    reports_dir.mkdir(parents=True, exist_ok=True)
    name = safe_name(incident_key)
    # One line: json's C encoder serves only unindented output (indent=2 took the pure-Python one, ~1 ms a
    # report in bench.loop); `jq .` or any JSON viewer lays it out.
    json_text = json.dumps(report, ensure_ascii=False, default=str)
    md_path, json_path = reports_dir / f"{name}.md", reports_dir / f"{name}.json"
    md_path.write_text(render_markdown(report))
    json_path.write_text(json_text)
    if report["attacker_page"]:
        write_case_page(ledger, incident_key, reports_dir / report["attacker_page"])
    return ReportPaths(markdown=md_path, json=json_path, sha256=hashlib.sha256(json_text.encode()).hexdigest())


def write_case_page(ledger: Ledger, incident_key: str, out: Path) -> None:
    """The attacker page of a `src:` case's source, beside its report (the link's target). A page that cannot be
    written (no profile yet: the loop folds after each batch) leaves the report as it is: it only describes."""
    from autonomy_controller.controller.attackers import (
        AttackerStore,  # the profiles' code (and its configuration) only when needed
    )
    from autonomy_controller.controller.oversight.attacker_page import write_page

    address = observations.case_address(incident_key)
    try:
        store = AttackerStore(ledger)
        profile = store.get(address) if address else None
        if profile is not None:
            write_page(ledger, profile, store.linked(profile), out)
    except (SQLAlchemyError, LedgerError, OSError, ValueError) as exc:
        log.warning("attacker page for %s not written (the report is): %s", incident_key, exc)
