"""The triage model as declared config (levels/triage.yaml): weights, thresholds, caps and the tables factors read.

Kept beside risk.yaml and validated the same way: every error found at once, each as 'triage.yaml: key: message'
(LevelConfigError), so a broken model is caught whole at load time. `revision` hashes the validated model, so
every verdict names the exact weights that made it.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autonomy_controller.controller.models import Category, Severity
from autonomy_controller.controller.validation import LevelConfigError, error_lines

TRIAGE_FILE = "triage.yaml"
TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
_CRS_FAMILY = re.compile(r"^9\d\d$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Unit = Field(ge=0.0, le=1.0)


class Weights(_Strict):
    """Points each factor adds at value 1. The score is min(100, sum), so no single factor decides alone."""

    rule_strength: float = Field(ge=0)
    anomaly_score: float = Field(ge=0)
    libinjection: float = Field(ge=0)
    attack_classes: float = Field(ge=0)
    repetition: float = Field(ge=0)
    sensor_verdict: float = Field(ge=0)
    scanner: float = Field(ge=0)
    sensor_agreement: float = Field(ge=0)
    source_history: float = Field(ge=0)
    login_outcome: float = Field(ge=0)

    @model_validator(mode="after")
    def _reachable(self) -> Weights:
        if sum(self.model_dump().values()) < 100:
            raise ValueError("weights must add up to at least 100, or no incident can reach a score of 100")
        return self


class Thresholds(_Strict):
    malicious: float = Field(gt=0, le=100, description="score at or above: malicious")
    noise: float = Field(ge=0, lt=100, description="score below: noise; in between: suspicious")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.noise >= self.malicious:
            raise ValueError("noise must be below malicious")
        return self


class ConfidenceCap(_Strict):
    requests: int = Field(ge=1, description="incidents with at most this many distinct requests...")
    max: float = Field(ge=0, le=1, description="...get at most this confidence")


class ConfidenceModel(_Strict):
    margin_points: float = Field(gt=0, description="points past a threshold at which confidence stops growing")
    max: float = Field(ge=0.5, le=1)
    caps: list[ConfidenceCap] = Field(description="few requests, little evidence: whatever the score")

    @field_validator("caps")
    @classmethod
    def _ascending(cls, caps: list[ConfidenceCap]) -> list[ConfidenceCap]:
        if [c.requests for c in caps] != sorted({c.requests for c in caps}):
            raise ValueError("caps must be in strictly ascending order of requests")
        if [c.max for c in caps] != sorted(c.max for c in caps):
            raise ValueError("caps must not give more evidence a lower confidence")
        return caps


class Caps(_Strict):
    protocol_only_score: float = Field(
        ge=0, le=100, description="highest score when only protocol/outbound rules fired (no attack, no scanner)"
    )
    unrated_high_severity_floor: float = Field(
        ge=0,
        le=100,
        description="lowest score when a sensor without rule metadata (OCSF, native) reports high/critical: "
        "triage cannot tell that sensor's false positives apart, so it never calls them noise",
    )


class Saturation(_Strict):
    """Where a factor's value reaches 1 (log-scaled, so one alert and a hundred never score the same)."""

    anomaly_score: int = Field(ge=1)
    requests: int = Field(ge=2)
    request_strength: float = Field(
        gt=0,
        le=1,
        description="a request (or an attack class) whose strongest hit of intent reaches this counts fully for "
        "repetition, sensor_verdict and attack_classes; weaker ones in proportion",
    )
    attack_classes: int = Field(ge=1)
    prior_incidents: int = Field(ge=2)
    prior_malicious: int = Field(ge=1)
    failed_logins: int = Field(ge=2, description="failed logins in a row from one source (the service's count)")


class LoginModel(_Strict):
    """What a login service's own outcome counts for (auth-log records, controller/ingest/auth_log.py)."""

    failed_share: float = Field(
        ge=0,
        lt=1,
        description="failed guessing alone reaches at most this share of the login factor: only a login that "
        "succeeded after the guessing is full evidence that the account is the attacker's",
    )


class FeedbackModel(_Strict):
    max_discount: float = Field(ge=0, le=0.5, description="most a rule's share of the score can lose (<= 50%)")
    max_path_discount: float = Field(
        ge=0, le=0.5, description="most for a rule on one path: the path is the attacker's choice, so less"
    )
    prior: float = Field(gt=0, description="pseudo-count of confirmations: one rejection is not a verdict")

    @model_validator(mode="after")
    def _path_bounded(self) -> FeedbackModel:
        if self.max_path_discount > self.max_discount:
            raise ValueError("max_path_discount must not exceed max_discount")
        return self


class CrsModel(_Strict):
    family_strength: dict[str, float] = Field(description="CRS file number -> how strongly a hit means attack")
    attack_classes: dict[str, str] = Field(description="CRS file number -> attack class it detects")
    paranoia: dict[int, float] = Field(description="paranoia level -> trust in the rule (PL1 few false positives)")
    unknown_paranoia: float = Unit
    libinjection_rules: list[str]
    scanner_families: list[str]
    unknown_rule_strength: float = Unit

    @field_validator("family_strength", "attack_classes")
    @classmethod
    def _families(cls, table: dict[str, Any]) -> dict[str, Any]:
        bad = [k for k in table if not _CRS_FAMILY.match(k)]
        if bad:
            raise ValueError(f"CRS families are three digits starting with 9, not {bad}")
        return table

    @field_validator("family_strength", "paranoia")
    @classmethod
    def _unit_values(cls, table: dict[Any, float]) -> dict[Any, float]:
        bad = [k for k, v in table.items() if not 0 <= v <= 1]
        if bad:
            raise ValueError(f"values must be in 0..1 ({bad})")
        return table

    @field_validator("paranoia")
    @classmethod
    def _levels(cls, table: dict[int, float]) -> dict[int, float]:
        if sorted(table) != [1, 2, 3, 4]:
            raise ValueError("needs exactly paranoia levels 1, 2, 3, 4")
        return table


class SuricataModel(_Strict):
    severity_strength: dict[int, float]
    unknown_severity: float = Unit
    classtype_strength: dict[str, float] = Field(description="EVE alert.category, lower case -> strength")
    unknown_classtype: float = Unit
    response_alert: float = Field(ge=0, le=1, description="multiplier for alerts on the server's answer (to_client)")
    broad_signature_prefixes: list[str]
    broad_signature: float = Field(ge=0, le=1, description="multiplier for rule sets written to be broad")
    engine_noise_sids: list[Annotated[tuple[int, int], Strict(False)]] = Field(
        description="[low, high] signature id ranges of Suricata's own decoder/stream/app-layer events"
    )

    @field_validator("classtype_strength")
    @classmethod
    def _lower(cls, table: dict[str, float]) -> dict[str, float]:
        bad = [k for k in table if k != k.lower()]
        if bad:
            raise ValueError(f"classtypes are matched in lower case: {bad}")
        return table

    @field_validator("engine_noise_sids")
    @classmethod
    def _ranges(cls, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
        if any(lo > hi for lo, hi in ranges):
            raise ValueError("each range is [low, high] with low <= high")
        return ranges


class AttackMapping(_Strict):
    """MITRE ATT&CK as data: technique names, and which techniques each sensor fact points to."""

    techniques: dict[str, str]
    crs_families: dict[str, list[str]]
    suricata_classtypes: dict[str, list[str]]
    categories: dict[Annotated[Category, Strict(False)], list[str]]  # YAML spells categories as text

    @field_validator("techniques")
    @classmethod
    def _ids(cls, techniques: dict[str, str]) -> dict[str, str]:
        bad = [t for t in techniques if not TECHNIQUE_ID.match(t)]
        if bad:
            raise ValueError(f"not ATT&CK technique ids (T1234 or T1234.001): {bad}")
        return techniques

    @field_validator("crs_families", "suricata_classtypes", "categories")
    @classmethod
    def _named(cls, table: dict[Any, list[str]], info: ValidationInfo) -> dict[Any, list[str]]:
        """Every technique a table points to has a name (checked per table, so each error names its table)."""
        if "techniques" not in info.data:
            return table  # the techniques table itself is wrong: that is the error to report, not every reference
        named = info.data["techniques"]
        unnamed = [f"{getattr(k, 'value', k)}: {t}" for k, ids in table.items() for t in ids if t not in named]
        if unnamed:
            raise ValueError(f"techniques without a name in attack.techniques: {unnamed}")
        return table


class TriageModel(_Strict):
    weights: Weights
    thresholds: Thresholds
    confidence: ConfidenceModel
    caps: Caps
    saturation: Saturation
    login: LoginModel
    feedback: FeedbackModel
    crs: CrsModel
    suricata: SuricataModel
    other_severity_strength: dict[Annotated[Severity, Strict(False)], float] = Field(
        description="alerts without rule metadata (OCSF, native): strength by severity, times the alert's confidence"
    )
    attack_class_categories: list[Annotated[Category, Strict(False)]]
    waf_sources: list[str] = Field(description="Alert.source values whose raw record is a ModSecurity transaction")
    scanner_user_agents: list[str] = Field(description="lower-case substrings; may raise suspicion, never lower it")
    attack: AttackMapping

    @field_validator("other_severity_strength")
    @classmethod
    def _every_severity(cls, table: dict[Severity, float]) -> dict[Severity, float]:
        missing = [s.value for s in Severity if s not in table]
        if missing or any(not 0 <= v <= 1 for v in table.values()):
            raise ValueError(f"needs every severity with a value in 0..1 (missing {missing})")
        return table

    @field_validator("scanner_user_agents")
    @classmethod
    def _agents(cls, agents: list[str]) -> list[str]:
        bad = [a for a in agents if not a or a != a.lower()]
        if bad:
            raise ValueError(f"user-agent fingerprints are non-empty lower-case substrings: {bad}")
        return agents

    @cached_property
    def revision(self) -> str:
        """Hash of the validated model: equal weights, equal revision, whatever the file's comments."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "triage-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def load_triage_model(levels_dir: Path) -> TriageModel:
    """levels_dir/triage.yaml validated; every problem raised at once as LevelConfigError('triage.yaml: key: msg')."""
    path = levels_dir / TRIAGE_FILE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LevelConfigError([f"{TRIAGE_FILE}: file missing in {levels_dir}"]) from None
    except OSError as exc:
        raise LevelConfigError([f"{TRIAGE_FILE}: unreadable: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise LevelConfigError([f"{TRIAGE_FILE}: not valid YAML: {exc}".replace("\n", " ")]) from None
    try:
        return TriageModel.model_validate(document if document is not None else {})
    except ValidationError as exc:
        raise LevelConfigError([f"{TRIAGE_FILE}: {line}" for line in error_lines(exc)]) from None
