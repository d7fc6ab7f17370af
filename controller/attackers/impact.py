"""A case's impact verdict: how far its attack got, from sensor facts only (issue 13, docs/attackers.md "Impact").

    none       no attack-class alert (recon, engine noise, access-log records only)
    attempted  attack-class alerts, none of which got through
    likely     the case reached "possible success": an attack request no sensor blocked was answered 2xx, or the
               application answered 2xx on a path where an attack was not refused (controller/attackers/stages.py)
    confirmed  post-exploitation evidence from the source (malware, C2, lateral movement, exfiltration alerts)

The case's alerts are read exactly as attacker profiles read them (controller/attackers/observe.py) and folded
into a scratch profile (controller/attackers/fold.py), so status, bytes, "blocked" and the asset are parsed in
one place. What decides is what the sensors and the application said (rule categories, the sensor's block, the
HTTP status and body bytes the server sent back, the inventory): request text (paths, User-Agents) is only
shown as evidence, so a client cannot talk its way to a verdict. "Likely" means what it says: a 2xx says the
application answered, not that the attack worked; a person confirms.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from autonomy_controller.controller.attackers import tracking_config
from autonomy_controller.controller.attackers.fold import add_alert, new_profile
from autonomy_controller.controller.attackers.observe import Observation, TrackingConfig, observe
from autonomy_controller.controller.attackers.profile import AttackerProfile, Limits, Stage
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError
from autonomy_controller.controller.ingest import nginx_access
from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.controller.models import Alert, ImpactEvidence, ImpactSummary, ImpactVerdict, stage_rank

log = logging.getLogger(__name__)
EVIDENCE_MAX = 8
"""Evidence records kept per verdict (the ledger holds them all): decision records stay small."""
SCRATCH = Limits(paths=4096, assets=256)
"""A case's own attacked paths and assets: wide enough that no cap hides a 2xx on a path an attack went through
(paths no attack went to are not kept: `_on_attacked_paths`)."""
VERDICT: dict[Stage, ImpactVerdict] = {
    "none": "none",
    "recon": "none",
    "exploitation_attempt": "attempted",
    "possible_success": "likely",
    "post_exploitation": "confirmed",
}


def case_impact(guard: Guard | UnavailableGuard, alerts: Sequence[Alert], settings: Settings) -> ImpactSummary | None:
    """The impact verdict a case's plan and decisions rest on, in the loop's plan step, evaluate and simulate alike
    (the tracking config of `settings`). None without a guard: every action is denied then anyway."""
    return assess(alerts, tracking_config(settings)) if isinstance(guard, Guard) else None


def assess(alerts: Sequence[Alert], config: TrackingConfig) -> ImpactSummary:
    """The verdict of a case's alerts (as the ledger holds them: the raw record carries status and bytes)."""
    # A claim (native JSON no sensor vouches for) shows no impact: impact credits the risk score (more autonomy).
    ordered = sorted((a for a in alerts if not a.is_claim), key=lambda a: (a.observed_at, a.id))
    if not ordered:
        return ImpactSummary()
    profile = new_profile(ordered[0].src_ip or "0.0.0.0", ordered[0].observed_at)
    # n stands in for the ledger seq: order only
    observed = [(alert, observe(n, alert.model_dump(mode="json"), config)) for n, alert in enumerate(ordered, start=1)]
    seen = _on_attacked_paths(observed)
    for _, obs in seen:
        add_alert(profile, obs, "case", SCRATCH)
    shown = [(obs, e) for alert, obs in seen if (e := _evidence(alert, obs, profile)) is not None]
    evidence = [e for _, e in shown]
    # Reached: the application answered an attack that got through. An answer to post-exploitation traffic the
    # source sent is not one: the source wrote the request (one matching a malware rule is easy to write), and any
    # static file answers it 2xx. (No verdict's `assets` lets a host be isolated alone: policies/guardrails/
    # entities.rego reads only the case's connected source.)
    reached = sorted({e.asset for obs, e in shown if e.asset and e.status is not None and not obs.post_exploitation})
    return ImpactSummary(
        verdict=VERDICT[profile.stage],
        stage=profile.stage,
        assets=reached,
        bytes_sent=sum(e.bytes_sent or 0 for e in evidence),
        evidence=evidence[:EVIDENCE_MAX],
    )


def case_stage(alerts: Sequence[Alert], config: TrackingConfig) -> Stage:
    """The stage a batch of alerts shows on its own (the Submitter passes it with the batch: the workflow
    decides a case again when its stage rises, controller/case/rounds.py)."""
    return assess(alerts, config).stage  # type: ignore[return-value]


def batch_stage(alerts: Sequence[Alert]) -> Stage | None:
    """The Submitter's hook: the stage a batch shows, from the whole records (the workflow gets slim copies).
    None when the tracking config cannot be read: the case then re-plans on growth alone, as before stages."""
    try:
        return case_stage(alerts, tracking_config(Settings()))
    except (LevelConfigError, PolicyBundleError, ValueError, OSError) as exc:
        log.warning("batch stage not computed (the case re-plans on growth alone): %s", exc)
        return None


def _on_attacked_paths(observed: list[tuple[Alert, Observation]]) -> list[tuple[Alert, Observation]]:
    """The observations with only the URL paths an attack went to: no other path can decide the verdict (stages.py
    reads a path's answers only where an attack was), and a scan's thousands of paths would fill the scratch
    profile's SCRATCH.paths first, turning away the one the attack got through."""
    attacked = {obs.path for _, obs in observed if obs.attack}
    return [(alert, obs if obs.path in attacked else replace(obs, path=None)) for alert, obs in observed]


def _evidence(alert: Alert, obs: Observation, profile: AttackerProfile) -> ImpactEvidence | None:
    """Why `obs` counts toward the verdict, or None when it does not."""
    if obs.post_exploitation:
        why = f"{obs.category} alert from {obs.sensor}"
    elif obs.attack and not obs.blocked and obs.status is not None and 200 <= obs.status < 300:
        why = f"{obs.category} request answered {obs.status}, not blocked"
    elif obs.app_success and obs.path is not None and _through(profile, obs.path):
        why = f"the application answered {obs.status} on a path where an attack was not refused"
    else:
        return None
    sent = obs.bytes_sent if obs.app_success else None
    return ImpactEvidence(
        alert_id=alert.id, sensor=obs.sensor, asset=obs.asset, status=obs.status, bytes_sent=sent, why=why
    )


def _through(profile: AttackerProfile, path: str) -> bool:
    stats = profile.paths.get(path)
    return stats is not None and stats.attacks_through > 0


RAISES_FROM = stage_rank("possible_success")
"""The only stage an access-log line can take a case to (controller/attackers/stages.py): an answer, not an attack."""


def late_stage(ledger: Ledger, incident_key: str, observed: Sequence[Alert]) -> str | None:
    """The stage a case shows with the access-log lines `observed`, when these lines may have raised it (a 2xx
    answer, a case for the source in the ledger); None when they cannot (no signal is sent).

    Only these lines are read with the case's alerts, not every line of the source: a line raises a stage only on a
    path the case's attacks went to (stages.py), an earlier line was judged when it came (or by the case's plan,
    which reads them all), and re-reading a flooding source's every line for each batch of it cost seconds per
    batch, growing with the flood."""
    if not any(_success(alert) for alert in observed) or ledger.incident_head(incident_key) is None:
        return None
    alerts = [Alert.model_validate(r.payload) for r in ledger.records(incident_key, [RecordKind.ALERT])]
    if not alerts:
        return None  # the key holds records, none an alert: no case to wake
    stage = batch_stage([*alerts, *observed])
    return stage if stage is not None and stage_rank(stage) >= RAISES_FROM else None


def _success(alert: Alert) -> bool:
    status = nginx_access.application_status(alert.raw)
    return status is not None and 200 <= status < 300
