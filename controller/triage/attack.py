"""MITRE ATT&CK techniques for an incident, from the mapping tables in levels/triage.yaml (data, not code).

Sources, all written by rule authors or vendors, never by the request: CRS rule families of the matched rules,
Suricata classtypes and the rule's own `mitre_technique_id` metadata, and the alert's category as a fallback
for sensors without rule metadata.
"""

from __future__ import annotations

from collections.abc import Iterable

from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.triage.facts import AlertFacts
from autonomy_controller.controller.triage.model import AttackMapping
from autonomy_controller.controller.triage.result import AttackTechnique


def techniques(pairs: Iterable[tuple[Alert, AlertFacts]], mapping: AttackMapping) -> list[AttackTechnique]:
    """Distinct techniques, sorted by id (so the same incident always lists them the same way)."""
    named: dict[str, str] = {}

    def add(ids: Iterable[str], names: dict[str, str | None] | None = None) -> None:
        for tid in ids:
            name = mapping.techniques.get(tid) or (names or {}).get(tid) or "unnamed technique"
            named.setdefault(tid, name)

    for alert, facts in pairs:
        for hit in facts.hits:
            if hit.family is not None and not hit.is_total:
                add(mapping.crs_families.get(hit.family, ()))
        if facts.classtype:
            add(mapping.suricata_classtypes.get(facts.classtype, ()))
        if facts.sensor_techniques:
            add((tid for tid, _ in facts.sensor_techniques), dict(facts.sensor_techniques))
        add(mapping.categories.get(alert.category, ()))
    return [AttackTechnique(id=tid, name=named[tid]) for tid in sorted(named)]
