"""The kill-chain stage an observation shows, given what the profile knew before it (docs/attackers.md, "Stages").

    recon                 any detection from the source (a scanner, a protocol violation, an unclassified rule)
    exploitation_attempt  an attack-class alert (SQLi, XSS, RCE, LFI/RFI, injections, brute force)
    possible_success      an attack request answered 2xx that no sensor blocked; or a 2xx from the application on
                          a path that drew an attack nothing refused (no block, no 4xx/5xx seen: an IDS alert
                          the WAF did not cover), in either order. An IDS alert that did not see its answer takes
                          the one the access log recorded for the same request (exchange.py)
    post_exploitation     malware, C2, lateral movement or exfiltration from the source

An access-log record alone (an answer, not a detection) reaches no stage, and neither does a claim (our own Alert
JSON no sensor vouches for: docs/sensors.md, "Provenance"). Stages only go up, on all evidence and on connected
evidence (profile.py `reach`), but for a possible_success resting on an attack the access log's record later
shows refused (fold.py). "Possible" is meant: a 2xx says the application answered, not that the attack worked;
a person confirms.
"""

from __future__ import annotations

from typing import NamedTuple

from autonomy_controller.controller.attackers.observe import Observation
from autonomy_controller.controller.attackers.profile import AttackerProfile, PathStats, Stage


class Shown(NamedTuple):
    stage: Stage
    why: str
    path: str | None = None
    """The path whose two halves made possible_success (fold.py withdraws it if the attack there proves refused)."""


def stage_shown(profile: AttackerProfile, obs: Observation, path: PathStats | None) -> Shown | None:
    """The stage `obs` shows and why; `path` is the profile's stats for obs.path after counting obs."""
    if obs.claim:
        return None  # its sender chose its category: a stage would outrank (and so outlive) sensor-seen attackers
    if obs.post_exploitation:
        return Shown("post_exploitation", f"{obs.category} alert from {obs.sensor}")
    if obs.attack and not obs.blocked and obs.status is not None and 200 <= obs.status < 300:
        return Shown("possible_success", f"{obs.category} request answered {obs.status}, not blocked ({obs.sensor})")
    if path is not None and path.attacks_through and path.app_success and (obs.attack or obs.app_success):
        return Shown("possible_success", path_success(obs.path), obs.path)
    if obs.attack:
        return Shown("exploitation_attempt", f"{obs.category} alert from {obs.sensor}")
    if not obs.outcome_only:
        return Shown("recon", f"{obs.category} alert from {obs.sensor}")
    return None


def path_success(path: str | None) -> str:
    return f"the application answered 2xx on {path}, where an attack was not refused"
