"""What triage returns: a verdict, how sure it is, and every factor that made it (the shape a person audits)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TriageVerdict(StrEnum):
    """How malicious an incident looks from the sensors' facts alone (not what to do about it)."""

    MALICIOUS = "malicious"
    SUSPICIOUS = "suspicious"
    NOISE = "noise"


class TriageFactor(BaseModel):
    """One reason for the score, shaped like RiskFactor: value 0..1 times weight gives the points it adds.

    `contribution` is negative only for `rule_feedback` (people's rejections) and for caps, so the factors'
    contributions always add up to the score.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    value: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0)
    contribution: float = Field(description="points this factor adds to (or, feedback and caps, takes from) the score")
    why: str
    trust: Literal["sensor", "request", "ledger", "people", "model", "claim"] = Field(
        description="where the value comes from: the sensor's own facts, the request the attacker wrote (may only "
        "raise), the ledger (the source's past; may only raise), people's feedback, the model's caps, a claim (native "
        "JSON no sensor vouches for: its points are shown, never acted on)"
    )


class AttackTechnique(BaseModel):
    """A MITRE ATT&CK technique, id and name (from levels/triage.yaml, or the IDS rule author's metadata)."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str


class TriageEvidence(BaseModel):
    """Counts behind the factors, so a reader can check each one against the alerts."""

    alerts: int
    requests: int = Field(description="distinct requests/flows: one HTTP request that trips three IDS rules is one")
    distinct_rules: int
    attack_classes: list[str] = Field(default_factory=list)
    blocked: int = Field(description="requests the sensor blocked or whose anomaly evaluation crossed its threshold")
    blocked_share: float = Field(ge=0.0, le=1.0)
    reached_application: int = Field(description="requests the application answered below 400 (impact, not intent)")
    statuses: dict[str, int] = Field(default_factory=dict, description="HTTP status the application answered")
    max_anomaly_score: int | None = None
    min_paranoia_level: int | None = None
    libinjection_hits: int = 0
    scanner_hits: int = 0
    engine_noise_alerts: int = 0
    sensors: list[str] = Field(default_factory=list)
    span_seconds: float = 0.0
    failed_logins: int = Field(default=0, description="alerts of failed guesses a login service reported")
    guessed_logins: int = Field(default=0, description="logins that succeeded after guessing (the service's count)")
    claims: int = Field(
        default=0, description="alerts whose provenance is claim: counted nowhere above, their facts not read"
    )


class TriageResult(BaseModel):
    verdict: TriageVerdict
    confidence: float = Field(ge=0.0, le=1.0)
    score: float = Field(ge=0.0, le=100.0)
    factors: list[TriageFactor]
    techniques: list[AttackTechnique] = Field(default_factory=list)
    evidence: TriageEvidence
    model_revision: str = Field(description="hash of the triage model (levels/triage.yaml) that made this verdict")

    @property
    def attacker_influenced_points(self) -> float:
        """Points resting on what the request says (a scanner user agent) or on a claim (native JSON no sensor
        vouches for): a verdict that raises autonomy must stand without them (score - these points)."""
        return round(sum(f.contribution for f in self.factors if f.trust in ("request", "claim")), 2)
