"""Autonomy levels as declared config, and the one place that decides which level applies to an incident.

The level files say *what the machine may do alone* per action class (the policy reads them as data); the
scopes file says *which level applies where*. Validation reports every error with its file and key, so a
broken level file is caught whole at load time instead of one surprise per decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autonomy_controller.controller.models import ActionClass, Category, Level, Verdict
from autonomy_controller.controller.triage.model import TriageModel, load_triage_model
from autonomy_controller.controller.triage.result import TriageVerdict
from autonomy_controller.controller.validation import LevelConfigError, error_lines

M = TypeVar("M", bound=BaseModel)

LEVEL_FILES = {level: f"{level.value}.yaml" for level in Level}
SCOPES_FILE = "scopes.yaml"
RISK_FILE = "risk.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnTimeout(StrEnum):
    REJECT = "reject"
    ESCALATE = "escalate"
    EXECUTE_REVERSIBLE = "execute_reversible"


class RiskLimits(_Strict):
    auto_max: float = Field(ge=0, le=100, description="execute alone only at or below this risk")
    approve_max: float = Field(ge=0, le=100, description="above this, recommend only")

    @model_validator(mode="after")
    def _ordered(self) -> RiskLimits:
        if self.auto_max > self.approve_max:
            raise ValueError("auto_max must not exceed approve_max")
        return self


class ApprovalRule(_Strict):
    quorum: int = Field(ge=1, le=10)
    timeout_seconds: int = Field(ge=60)
    on_timeout: OnTimeout = OnTimeout.REJECT
    escalate_to: str | None = Field(
        default=None, description="approver group added when the first timeout passes (on_timeout: escalate)"
    )

    @model_validator(mode="after")
    def _escalation_named(self) -> ApprovalRule:
        if self.on_timeout is OnTimeout.ESCALATE and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs escalate_to (the approver group to escalate to)")
        return self


class Budget(_Strict):
    """A blast-radius cap for one action class: how many may run per window (all incidents) and per incident."""

    per_window: int | None = Field(default=None, ge=0)
    window_seconds: int = Field(default=3600, ge=60)
    per_incident: int | None = Field(default=None, ge=0)


class CircuitBreaker(_Strict):
    """Health downgrade: too many failed verifications or compensations in a window lower every level."""

    window_seconds: int = Field(default=3600, ge=60)
    max_failures: int = Field(ge=1, description="verification failures + compensations that trip the breaker")
    lower_to: Level


class OperatingDomain(_Strict):
    """J3016's operational design domain: where a level's autonomy holds. Empty lists mean 'any'."""

    categories: list[Category] = Field(default_factory=list)
    environments: list[str] = Field(default_factory=list)
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)


class Fallback(_Strict):
    level: Level
    why: str


class PromotionCriteria(_Strict):
    """What a shadow trial must show before a scope is promoted to this level (`autonomy levels promote-check`).

    The evidence is the trial's decisions in the ledger joined with what people and verifications then did,
    so a promotion rests on this deployment's own history rather than on a vendor's benchmark.
    """

    min_days_in_shadow: float = Field(default=14, ge=0, description="days since the trial's first decision")
    min_decisions: int = Field(default=50, ge=1, description="trial decisions recorded")
    max_override_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="of the actions this level would have run alone and a person decided, the share they rejected",
    )
    max_verification_failures: int = Field(
        default=0, ge=0, description="failed verifications or compensations among the trial's executed actions"
    )


class TriageRequirement(_Strict):
    """What triage must say before containment may run alone at a level (controller/triage, docs/triage.md).

    Short of it, containment the level would execute goes to a person (`otherwise`), so a single stray false
    positive never blocks anyone alone. Triage can only lower autonomy here: meeting the bar changes nothing.
    """

    verdict: TriageVerdict = Field(description="the least malicious verdict that may contain alone")
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    otherwise: Literal["approve", "recommend"] = Field(
        default="approve", description="what containment becomes when triage falls short"
    )


class LevelSpec(_Strict):
    level: Level
    name: str
    j3016: str
    enabled: bool = True
    classes: dict[ActionClass, Verdict]
    risk: RiskLimits
    approval: ApprovalRule
    operating_domain: OperatingDomain | None = None
    fallback: Fallback | None = None
    budgets: dict[ActionClass, Budget] = Field(default_factory=dict)
    planner_fallback: Literal["offline", "hold"] = Field(
        default="offline",
        description="LLM planner unavailable or its answer invalid: use the offline playbooks, or hold for a person",
    )
    promotion: PromotionCriteria | None = Field(
        default=None, description="what a shadow trial must show before a scope is promoted to this level"
    )
    triage: TriageRequirement | None = Field(
        default=None, description="the triage containment needs before it runs alone (none: the mode decides)"
    )

    @model_validator(mode="after")
    def _j3016_rules(self) -> LevelSpec:
        missing = [c.value for c in ActionClass if c not in self.classes]
        if missing:
            raise ValueError(f"classes: every action class needs a rule, missing {missing}")
        if self.level is Level.L1 and not self.enabled:
            raise ValueError(
                "enabled: L1 cannot be disabled: a disabled level runs as the one below, and L1 is the floor"
            )
        if self.level.rank >= 3 and (self.operating_domain is None or self.fallback is None):
            raise ValueError(f"{self.level} must declare operating_domain and fallback (J3016 level 3 and up)")
        if self.fallback is not None and self.fallback.level.rank >= self.level.rank:
            raise ValueError("fallback.level must be lower than the level itself")
        if self.approval.on_timeout is OnTimeout.EXECUTE_REVERSIBLE and self.level.rank < 4:
            raise ValueError("approval.on_timeout: execute_reversible (veto window) is only allowed from L4 up")
        return self


DEFAULT_SCOPE = "default"
SCOPE_KINDS = ("asset_group", "user_group", "environment", "category")
"""Scope names are `default` or `<kind>:<value>`; on a tie of levels the more specific kind (first) governs."""


def parse_scope_name(name: str) -> tuple[str, str] | None:
    """(kind, value) for `kind:value`, None for `default`; ValueError naming the accepted forms otherwise."""
    if name == DEFAULT_SCOPE:
        return None
    kind, sep, value = name.partition(":")
    if not sep or kind not in SCOPE_KINDS or not value:
        forms = ", ".join(f"{k}:<name>" for k in SCOPE_KINDS)
        raise ValueError(f"scope {name!r}: expected 'default' or one of {forms}")
    if kind == "category" and value not in Category._value2member_map_:
        raise ValueError(f"scope {name!r}: unknown category (one of {', '.join(c.value for c in Category)})")
    return kind, value


class Scopes(_Strict):
    default: Level
    kill_switch: bool = False
    kill_switch_level: Level = Level.L1
    shadow: bool = False
    circuit_breaker: CircuitBreaker | None = None
    environments: dict[str, Level] = Field(default_factory=dict)
    asset_groups: dict[str, Level] = Field(default_factory=dict)
    user_groups: dict[str, Level] = Field(
        default_factory=dict, description="identity groups (policies/identities/data.yaml users.<name>.groups)"
    )
    categories: dict[Category, Level] = Field(default_factory=dict)
    trials: dict[str, Level] = Field(
        default_factory=dict,
        description="shadow trials: scope name -> candidate level, decided and recorded beside the live one",
    )

    @field_validator("trials")
    @classmethod
    def _trial_scopes_named(cls, trials: dict[str, Level]) -> dict[str, Level]:
        problems = []
        for name in trials:
            try:
                parse_scope_name(name)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return trials

    def overrides(self, scope: IncidentScope) -> list[tuple[str, Level]]:
        """The scope names matching an incident that assign a level, most specific first."""
        candidates = [
            ("asset_group", scope.asset_group, self.asset_groups.get(scope.asset_group) if scope.asset_group else None),
            *(("user_group", group, self.user_groups.get(group)) for group in scope.user_groups),
            ("environment", scope.environment, self.environments.get(scope.environment)),
            ("category", scope.category.value, self.categories.get(scope.category)),
        ]
        return [(f"{kind}:{value}", level) for kind, value, level in candidates if level is not None]

    def assigned(self, scope: IncidentScope) -> tuple[str, Level]:
        """The governing scope name and its level: the lowest override wins, else the default."""
        overrides = self.overrides(scope)
        if not overrides:
            return DEFAULT_SCOPE, self.default
        lowest = Level.lowest(*(level for _, level in overrides))
        return next((name, level) for name, level in overrides if level is lowest)

    def trials_for(self, scope: IncidentScope) -> list[tuple[str, Level]]:
        """The trials whose scope the incident belongs to (`default` = incidents no override matches)."""
        if not self.trials:  # every plan asks: without trials, nothing to match
            return []
        names = {DEFAULT_SCOPE} if not self.overrides(scope) else set()
        names |= {f"user_group:{group}" for group in scope.user_groups}
        names |= {
            f"asset_group:{scope.asset_group}",
            f"environment:{scope.environment}",
            f"category:{scope.category.value}",
        }
        return [(name, level) for name, level in self.trials.items() if name in names]

    def with_level(self, name: str, level: Level) -> Scopes:
        """These scopes with one scope set to `level`: the config a trial's candidate decisions are made under."""
        parsed = parse_scope_name(name)
        if parsed is None:
            return self.model_copy(update={"default": level})
        kind, value = parsed
        field_name = {
            "asset_group": "asset_groups",
            "user_group": "user_groups",
            "environment": "environments",
            "category": "categories",
        }[kind]
        key: Any = Category(value) if kind == "category" else value
        return self.model_copy(update={field_name: {**getattr(self, field_name), key: level}})


class RiskModel(_Strict):
    weights: dict[
        Literal[
            "blast_radius",
            "irreversibility",
            "asset_criticality",
            "target_count",
            "uncertainty",
            "production",
            "sensor_blocked",
            "impact",
        ],
        Annotated[float, Field(ge=0, allow_inf_nan=False)],  # YAML's .nan would make every score 0
    ]
    criticality: dict[Literal["low", "medium", "high", "crown_jewel"], Annotated[float, Field(ge=0, le=1)]]
    unknown_asset: float = Field(ge=0, le=1)
    external_address: float = Field(ge=0, le=1)
    privileged_user: float = Field(ge=0, le=1)
    regular_user: float = Field(ge=0, le=1)
    unknown_user: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _weights_usable(self) -> RiskModel:
        shares = sum(w for name, w in self.weights.items() if name != "impact")  # impact is a credit (risk.py)
        if shares <= 0:
            raise ValueError("weights must be non-negative and not all zero")
        missing = sorted({"low", "medium", "high", "crown_jewel"} - self.criticality.keys())
        if missing:
            raise ValueError(f"criticality: every level needs a value, missing {missing}")
        if self.weights.get("impact", 0.0) > shares:
            raise ValueError("the impact credit may not outweigh all other factors together")
        return self


NOT_POLICY_DATA = {"promotion"}
"""Level keys no decision depends on: left out of the policy data so changing them keeps the policy revision."""


@dataclass(frozen=True)
class LevelConfig:
    levels: dict[Level, LevelSpec]
    scopes: Scopes
    risk: RiskModel
    source_dir: Path
    triage: TriageModel

    def policy_data(self) -> dict[str, Any]:
        """The levels as the policy sees them (data.levels), keyed by level name."""
        return {lv.value: spec.model_dump(mode="json", exclude=NOT_POLICY_DATA) for lv, spec in self.levels.items()}


@dataclass(frozen=True)
class IncidentScope:
    """The facts scopes and the operating domain are matched on: an incident's, or one target's."""

    category: Category
    environment: str = "unknown"
    asset_group: str | None = None
    confidence: float = 1.0
    user_groups: tuple[str, ...] = ()
    subject: str = ""
    """What the scope describes, for reasons: "" for the incident, "asset dc-01" or "user dave" for a target."""


@dataclass(frozen=True)
class LevelResolution:
    declared: Level
    effective: Level
    reasons: list[str] = field(default_factory=list)
    shadow: bool = False
    scope: str = DEFAULT_SCOPE
    """The scope that assigned the declared level (scorecards group by it); `declared` when it was given."""

    def capped_by(self, other: LevelResolution, why: str) -> LevelResolution:
        """This resolution, lowered to `other`'s effective level when that is lower (saying why)."""
        if other.effective.rank >= self.effective.rank:
            return self
        reasons = [*self.reasons, f"{why} is at {other.effective}: level lowered to {other.effective}"]
        return replace(self, effective=other.effective, reasons=reasons, scope=other.scope)


def _load_yaml(path: Path, errors: list[str]) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        errors.append(f"{path.name}: file missing in {path.parent}")
    except yaml.YAMLError as exc:
        errors.append(f"{path.name}: not valid YAML: {exc}".replace("\n", " "))
    return None


def _validate(model: type[M], path: Path, raw: Any, errors: list[str]) -> M | None:
    if raw is None:
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors.extend(f"{path.name}: {line}" for line in error_lines(exc))
        return None


def load_level_config(levels_dir: Path) -> LevelConfig:
    """Load and validate every file, collecting all errors before raising, so one run shows them all."""
    errors: list[str] = []
    levels: dict[Level, LevelSpec] = {}
    for level, name in LEVEL_FILES.items():
        path = levels_dir / name
        spec = _validate(LevelSpec, path, _load_yaml(path, errors), errors)
        if spec is not None:
            if spec.level is not level:
                errors.append(f"{name}: level: says {spec.level} but the file is {name}")
            levels[level] = spec
    scopes_path, risk_path = levels_dir / SCOPES_FILE, levels_dir / RISK_FILE
    scopes = _validate(Scopes, scopes_path, _load_yaml(scopes_path, errors), errors)
    risk = _validate(RiskModel, risk_path, _load_yaml(risk_path, errors), errors)
    triage: TriageModel | None = None
    try:
        triage = load_triage_model(levels_dir)
    except LevelConfigError as exc:
        errors.extend(exc.errors)
    if errors or scopes is None or risk is None or triage is None:
        raise LevelConfigError(errors or ["level config incomplete"])
    return LevelConfig(levels=levels, scopes=scopes, risk=risk, source_dir=levels_dir, triage=triage)


def _in_domain(spec: LevelSpec, scope: IncidentScope) -> str | None:
    """Why the incident is outside the level's operating domain, or None when inside it."""
    domain = spec.operating_domain
    if domain is None:
        return None
    if domain.categories and scope.category not in domain.categories:
        return f"category {scope.category.value} is outside {spec.level}'s operating domain"
    if domain.environments and scope.environment not in domain.environments:
        return f"environment {scope.environment} is outside {spec.level}'s operating domain"
    if scope.confidence < domain.min_confidence:
        return (
            f"confidence {scope.confidence:.2f} is below {spec.level}'s operating-domain minimum "
            f"{domain.min_confidence:.2f}"
        )
    return None


@dataclass(frozen=True)
class HealthCap:
    """A ceiling from the controller's own health (the circuit breaker), with the reason it says why."""

    level: Level
    why: str


def resolve_level(
    config: LevelConfig, scope: IncidentScope, declared: Level | None = None, health: HealthCap | None = None
) -> LevelResolution:
    """Effective level = min(assigned or declared, kill switch, health, L5 disabled, out-of-domain fallback)."""
    scopes = config.scopes
    reasons: list[str] = []
    if declared is None:
        scope_name, declared = scopes.assigned(scope)
    else:
        scope_name = "declared"
    effective = declared
    if scopes.kill_switch and scopes.kill_switch_level.rank < effective.rank:
        effective = scopes.kill_switch_level
        reasons.append(f"kill switch on: level lowered to {effective}")
    if health is not None and health.level.rank < effective.rank:
        effective = health.level
        reasons.append(f"{health.why}: level lowered to {effective}")
    # Walk down while the level is disabled or the incident is outside its operating domain.
    while True:
        spec = config.levels[effective]
        if not spec.enabled:
            lower = spec.fallback.level if spec.fallback else Level(f"L{effective.rank - 1}")
            reasons.append(f"{effective} is disabled: running as {lower}")
            effective = lower
            continue
        out_of_domain = _in_domain(spec, scope)
        if out_of_domain and spec.fallback is not None:
            reasons.append(f"{out_of_domain}: falling back to {spec.fallback.level}")
            effective = spec.fallback.level
            continue
        break
    return LevelResolution(
        declared=declared, effective=effective, reasons=reasons, shadow=scopes.shadow, scope=scope_name
    )


def resolve_most_restrictive(
    config: LevelConfig, scopes: list[IncidentScope], declared: Level | None = None, health: HealthCap | None = None
) -> LevelResolution:
    """The lowest of the levels resolved for each scope an incident touches (every asset the sensors saw in it,
    every asset an alert names). More scopes can only lower the level: an alert naming a harmless asset never
    lifts an incident about a domain controller."""
    if not scopes:
        raise ValueError("an incident has at least one scope")
    resolution = resolve_level(config, scopes[0], declared=declared, health=health)
    for scope in scopes[1:]:
        resolution = resolution.capped_by(resolve_level(config, scope, declared=declared, health=health), scope.subject)
    return resolution


def cap_for_target(
    config: LevelConfig, target: IncidentScope, health: HealthCap | None = None
) -> LevelResolution | None:
    """The level the scopes that name a target allow (its asset group or user groups, its environment), or None
    when no override names it: a target can only lower an action's level, never lift it, and the default
    (which applies to what no scope names) is already the incident's to apply."""
    # The category is the incident's: it already applied to the incident's own scopes.
    overrides = [(name, level) for name, level in config.scopes.overrides(target) if not name.startswith("category:")]
    if not overrides:
        return None
    name, lowest = min(overrides, key=lambda override: override[1].rank)
    return replace(resolve_level(config, target, declared=lowest), scope=name)
