"""The offline planner: picks the best-matching playbook and fills it in. No model, no network, deterministic.

It is the default planner and the fallback when an LLM planner is unavailable, so it must always answer:
an incident no playbook matches still gets a triage ticket, and an action whose target the incident does not
know (or whose target fails its schema) is left out with a note in the ticket instead of failing the plan.
The planner only proposes; the guard still validates, scores and decides every action.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from autonomy_controller.actions.registry import get_spec
from autonomy_controller.controller.case.grouping import category_summary, category_views
from autonomy_controller.controller.case.rounds import effect_key, ttl_of
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.models import ImpactVerdict, Incident, Plan, ProposedAction, TriageVerdictName
from autonomy_controller.controller.planning.playbooks import (
    Playbook,
    PlaybookAction,
    load_playbooks,
    max_length,
    parse_playbook,
)
from autonomy_controller.controller.planning.templating import incident_context, sanitize_free_text, truncate

log = logging.getLogger(__name__)

PLANNER_NAME = "offline"
NOTES_HEADER = "\n\nPlanner notes:"

# Used when no loaded playbook matches. It lives in code, not YAML, so that even an incomplete playbook
# directory (no catch-all) can never produce an empty plan.
FALLBACK = parse_playbook(
    {
        "name": "builtin-triage",
        "description": "No playbook matched: open a ticket so a person triages the incident.",
        "priority": 0,
        "match": {},
        "actions": [
            {
                "action": "ticket.create",
                "params": {
                    "title": "Triage: {category} incident {incident_key} ({severity})",
                    "severity": "{severity}",
                    "body": (
                        "No playbook matched this incident; a person should triage it.\n"
                        "Source: {src_ip}\nAsset: {asset}\n"
                        "Alerts: {alert_count} ({first_seen} .. {last_seen})\n"
                        "Rules: {rule_ids}\nThe attacker's case, every category: {categories}\n"
                        "Signatures (untrusted): {signature}"
                    ),
                },
                "rationale": "No playbook covers {category} at {severity}; a human decides the response.",
                "confidence": 0.5,
            }
        ],
    },
    "builtin",
)


class OfflinePlanner:
    """Selects one playbook per incident by match, then priority, then name, and renders it into a Plan.

    Playbooks are loaded and fully validated once, here; `plan` does no I/O.
    `asset_groups` maps asset name -> inventory group (e.g. from the policy bundle's inventory) so playbooks
    can match on `asset_groups`; without it, such playbooks never match.
    """

    name = PLANNER_NAME

    def __init__(self, playbooks_dir: Path | None = None, asset_groups: Mapping[str, str] | None = None) -> None:
        self.playbooks_dir = playbooks_dir or Settings().playbooks_dir
        self.playbooks: list[Playbook] = load_playbooks(self.playbooks_dir)
        self.asset_groups: dict[str, str] = dict(asset_groups or {})

    def select(self, incident: Incident, triage: TriageVerdictName | None = None) -> Playbook:
        """The highest-priority matching playbook (already sorted at load), or the built-in triage."""
        return self._select(incident, incident_context(incident), triage)

    def plan(
        self, incident: Incident, triage: TriageVerdictName | None = None, impact: ImpactVerdict | None = None
    ) -> Plan:
        """`triage` is the controller's verdict, for playbooks that match on it (noise: record only).

        A case with several attack categories is planned one category at a time (playbooks are written per
        category) and the plans are merged: one action per action and target, so one attacker gets one block
        (the longest any category's playbook asks for) and one ticket, which names every category's evidence.
        """
        views = category_views(incident)
        case_categories = category_summary(incident, views)
        merged: dict[tuple[str, str | None], tuple[ProposedAction, str]] = {}
        names: list[str] = []
        notes: list[str] = []
        for view in views:
            context = incident_context(view, case_categories)
            playbook = self._select(view, context, triage, impact)
            actions, more = _render(playbook.actions, context, incident.key)
            if not actions and playbook.actions:
                # Every action needed a target the incident lacks: still hand the incident to a person.
                more.append(f"playbook {playbook.name} matched but produced no action; used {FALLBACK.name}")
                playbook = FALLBACK
                actions, fallback_notes = _render(FALLBACK.actions, context, incident.key)
                more.extend(fallback_notes)
            names.append(playbook.name)
            notes.extend(note for note in more if note not in notes)
            for action in actions:
                _merge(merged, action, playbook.name)
        actions = [a.model_copy(update={"id": f"a{n}"}) for n, (a, _) in enumerate(merged.values(), 1)]
        _attach_notes(actions, notes)
        # The playbooks the plan holds actions of (the primary category's alone when none has any: noise).
        used = [name for _, name in merged.values()] or names[:1]
        return Plan(
            incident_key=incident.key,
            planner=PLANNER_NAME,
            mode="select",
            playbook="+".join(dict.fromkeys(used)),
            actions=actions,
        )

    def _select(
        self,
        incident: Incident,
        context: dict[str, str | None],
        triage: TriageVerdictName | None,
        impact: ImpactVerdict | None = None,
    ) -> Playbook:
        group = self.asset_groups.get(incident.asset) if incident.asset else None
        matching = (pb for pb in self.playbooks if pb.match.matches(incident, context, group, triage, impact))
        return next(matching, FALLBACK)


def _render(
    templates: list[PlaybookAction], context: dict[str, str | None], incident_key: str
) -> tuple[list[ProposedAction], list[str]]:
    """Render each action; skip (with a note) those whose target is unknown or fails its schema."""
    actions: list[ProposedAction] = []
    notes: list[str] = []
    for template in templates:
        target = template.target
        if target is not None and not context.get(target[1]):
            notes.append(f"not proposed: {template.action} (incident has no single known {target[1]})")
            continue
        try:
            params = template.render(context)
        except ValueError as exc:
            # Only incident data can fail here (the playbook itself passed the same check at load time).
            log.warning("incident %s: %s skipped: %s", incident_key, template.action, exc)
            notes.append(f"not proposed: {template.action} ({sanitize_free_text(str(exc))})")
            continue
        actions.append(
            ProposedAction(
                id=f"a{len(actions) + 1}",
                action=template.action,
                params=params,
                rationale=template.render_rationale(context),
                confidence=template.confidence,
            )
        )
    return actions, notes


def _merge(merged: dict[tuple[str, str | None], tuple[ProposedAction, str]], action: ProposedAction, by: str) -> None:
    """Add one category's action (from playbook `by`) to the case's plan: a second one on the same target (or a
    second ticket or message) is the same action; it replaces the first only when it holds the effect longer."""
    key = effect_key(action.action, action.params)
    kept = merged.get(key)
    if kept is None or (ttl_of(action.params) or 0) > (ttl_of(kept[0].params) or 0):
        merged[key] = (action, by)


def _attach_notes(actions: list[ProposedAction], notes: list[str]) -> None:
    """Append skipped-action notes to the first ticket body, so the person triaging sees what was left out."""
    if not notes:
        return
    ticket = next((a for a in actions if a.action == "ticket.create"), None)
    if ticket is None:
        return
    body = str(ticket.params.get("body", "")) + NOTES_HEADER + "".join(f"\n- {note}" for note in notes)
    ticket.params["body"] = truncate(body, max_length(get_spec(ticket.action), "body") or len(body))
