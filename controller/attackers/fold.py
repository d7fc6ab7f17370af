"""Folding ledger records into profiles: an alert adds what it shows, an action record what the controller did.

Pure: no database here (store.py loads and saves). Records arrive in seq order, each once (the store's cursor).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from autonomy_controller.actions.registry import class_of
from autonomy_controller.controller.attackers import exchange
from autonomy_controller.controller.attackers.observe import Observation
from autonomy_controller.controller.attackers.profile import ActionTaken, AttackerProfile, Limits, PathStats, network_of
from autonomy_controller.controller.attackers.stages import path_success, stage_shown
from autonomy_controller.controller.ledger import RecordExcerpt, RecordKind
from autonomy_controller.controller.ledger.outcomes import SETTLEMENTS, SUCCESS, action_target

UNCONNECTED = "its source held no connection the sensor saw (a forged address would read the same)"
"""Said of a stage reached on such evidence: shown, but it orders no eviction (docs/sensors.md, "Forged sources")."""
TRACKED_CLASSES = ("contain_network", "contain_host", "contain_identity", "restore")
"""What the controller did about a source: containment, and restores (a person's undo)."""


def new_profile(address: str, at: datetime) -> AttackerProfile:
    return AttackerProfile(address=address, network=network_of(address), first_seen=at, last_seen=at)


def add_alert(profile: AttackerProfile, obs: Observation, incident: str | None, limits: Limits) -> None:
    """Fold one alert (or access-log line: `incident` None, it is in no case) into the profile."""
    profile.alerts += 1
    profile.first_seen = min(profile.first_seen, obs.at)
    profile.last_seen = max(profile.last_seen, obs.at)
    profile.through_seq = max(profile.through_seq, obs.seq)
    profile.cite(obs.seq, limits.seqs)
    profile.sensors[obs.sensor] = profile.sensors.get(obs.sensor, 0) + 1  # a sensor name is ingest's, not the client's
    profile.categories[obs.category] = profile.categories.get(obs.category, 0) + 1
    if incident is not None:
        profile.count("incidents", profile.incidents, incident, limits.incidents)
    for tid, name in obs.techniques:
        if tid in profile.techniques or len(profile.techniques) < limits.techniques:
            profile.techniques[tid] = name
        else:
            profile.dropped["techniques"] = profile.dropped.get("techniques", 0) + 1
    if obs.asset:
        profile.count("assets", profile.assets, obs.asset, limits.assets)
    if obs.user_agent:
        profile.count("user_agents", profile.user_agents, obs.user_agent, limits.user_agents)
    _outcome(profile, obs)
    obs = _pair(profile, obs, limits)
    path = _path(profile, obs, limits)
    shown = stage_shown(profile, obs, path)
    if shown is not None:
        why = shown.why if obs.connected else f"{shown.why}; {UNCONNECTED}"
        profile.reach(shown.stage, obs.at, obs.seq, why, obs.connected, shown.path)


def _pair(profile: AttackerProfile, obs: Observation, limits: Limits) -> Observation:
    """An alert whose answer its sensor did not see takes the access log's record of the same request; a record
    settles the alerts that were waiting for it (exchange.py). The observation as it is to be counted."""
    if obs.request is None:
        return obs
    if obs.outcome_only:
        for waiting in exchange.answered(profile, obs):
            if obs.refused:
                _refused_after_all(profile, waiting.path, obs)
        exchange.remember_answer(profile, obs, limits.pairing)
        return obs
    if not obs.unanswered:
        return obs
    answer = exchange.answer_of(profile, obs)
    if answer is not None:
        return replace(obs, status=answer.status, blocked=answer.blocked)
    exchange.wait_for_answer(profile, obs, limits.pairing)
    return obs


def _refused_after_all(profile: AttackerProfile, path: str | None, record: Observation) -> None:
    """An attack counted as not refused while its answer was unknown, which the access log's record shows refused:
    counted refused, and a possible_success that rested on it alone withdrawn (another path's may stand)."""
    stats = profile.paths.get(path) if path is not None else None
    if stats is None or not stats.attacks_through:
        return  # the path was pushed out of the table: nothing counted to move
    stats.attacks_through -= 1
    stats.attacks_refused += 1
    if stats.attacks_through:
        return
    withdrawn = [s for s in profile.stages if s.stage == "possible_success" and s.path == path]
    if not withdrawn:
        return
    profile.stages = [s for s in profile.stages if s not in withdrawn]
    for s in withdrawn:  # the attack stays an attempt (reached here when its 2xx came first, never recorded)
        why = f"an attack on {path}, which the access log's record showed refused"
        profile.reach("exploitation_attempt", s.at, s.seq, why, s.connected)
    other = next((p for p, s in profile.paths.items() if s.attacks_through and s.app_success), None)
    if other is not None:
        profile.reach("possible_success", record.at, record.seq, path_success(other), record.connected, other)


def _outcome(profile: AttackerProfile, obs: Observation) -> None:
    out = profile.outcomes
    out.waf_blocked += obs.waf_blocked
    if obs.app_answered and obs.status is not None:
        by_sensor = out.app_status.setdefault(obs.sensor, {})
        status_class = f"{obs.status // 100}xx"
        by_sensor[status_class] = by_sensor.get(status_class, 0) + 1
        if obs.app_success and obs.bytes_sent:
            out.bytes_sent += obs.bytes_sent


def _path(profile: AttackerProfile, obs: Observation, limits: Limits) -> PathStats | None:
    if obs.path is None:
        return None
    stats = profile.paths.get(obs.path)
    if stats is None:
        if len(profile.paths) >= limits.paths and not _make_room(profile, obs):
            profile.dropped["paths"] = profile.dropped.get("paths", 0) + 1
            return None
        stats = profile.paths[obs.path] = PathStats()
    stats.requests += 1
    if obs.attack:
        if obs.refused:
            stats.attacks_refused += 1
        else:
            stats.attacks_through += 1
    stats.app_success += obs.app_success
    return stats


def _make_room(profile: AttackerProfile, obs: Observation) -> bool:
    """Drop a path of less worth (counted in `dropped`) for one that holds a half of possible_success: an attack
    nothing refused, or the application's 2xx (stages.py: both on one path, in either order). Otherwise a scan's
    paths, or refused attacks on many, filled the cap first and hid an attack that got through. A path where one got
    through is never dropped; one the application answered 2xx only for an attack that got through."""
    through = obs.attack and not obs.refused
    if not (through or obs.app_success):
        return False
    spare = [
        (stats.app_success > 0, stats.attacks_refused > 0, stats.requests, path)
        for path, stats in profile.paths.items()
        if not stats.attacks_through and (through or not stats.app_success)
    ]
    if not spare:
        return False
    del profile.paths[min(spare)[-1]]
    profile.dropped["paths"] = profile.dropped.get("paths", 0) + 1
    return True


def add_action_record(profile: AttackerProfile, record: RecordExcerpt, limits: Limits) -> None:
    """A DECISION on a tracked action class starts an entry; its approval, execution, verification and undo
    records move the entry's status."""
    p = record.payload
    if record.kind is RecordKind.DECISION:
        action = str(p.get("action"))
        if class_of(action) not in TRACKED_CLASSES:
            return
        taken = ActionTaken(
            incident=record.incident_key,
            action_id=str(p.get("action_id")),
            action=action,
            verdict=str(p.get("verdict")),
            status=str(p.get("verdict")),
            shadow=bool(p.get("shadow")),
            at=record.created_at,
            seqs=[record.seq],
        )
        profile.actions.append(taken)
        _tally(profile, taken.status)
        if len(profile.actions) > limits.actions:
            del profile.actions[0]
            profile.dropped["actions"] = profile.dropped.get("actions", 0) + 1
        return
    request: dict[str, Any] = p["request"] if isinstance(p.get("request"), dict) else {}
    action_id = p.get("action_id") or request.get("action_id")
    found = next(
        (a for a in reversed(profile.actions) if a.incident == record.incident_key and a.action_id == action_id),
        None,
    )
    if found is None:
        return
    taken = found
    status = _status(record.kind, p)
    if status is None:
        return
    if record.kind is RecordKind.EXECUTION and taken.target is None:
        taken.target = action_target(taken.action, request.get("params"))
    taken.status = status
    taken.seqs.append(record.seq)
    _tally(profile, status)


def _status(kind: RecordKind, p: dict[str, Any]) -> str | None:
    succeeded = (p.get("outcome") or {}).get("status") in SUCCESS if isinstance(p.get("outcome"), dict) else False
    if kind is RecordKind.APPROVAL:
        return str(p["event"]) if p.get("event") in SETTLEMENTS else None
    if kind is RecordKind.EXECUTION:
        return "executed" if succeeded else "execution_failed"
    if kind is RecordKind.VERIFICATION and p.get("purpose", "execute") == "execute":
        return "verified" if p.get("ok") else "verification_failed"
    if kind is RecordKind.COMPENSATION:
        return "compensated" if succeeded else None
    if kind is RecordKind.REVERT:
        return "reverted" if succeeded else None
    return None


def _tally(profile: AttackerProfile, status: str) -> None:
    profile.controller[status] = profile.controller.get(status, 0) + 1
