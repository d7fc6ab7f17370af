"""Playbooks: the declarative responses the offline planner selects from (workflows/playbooks/*.yaml).

A playbook is checked whole when it is loaded, not when an incident first needs it: every action must exist
in the registry, every template must use allowlisted fields in the places their kind permits, and every
action is rendered once with sample values and validated against the action's param schema. A broken
playbook therefore fails at start-up (and in tests) with 'file: key: message', never mid-incident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from autonomy_controller.actions.registry import (
    FREE_TEXT_PARAMS,
    InvalidParamsError,
    UnknownActionError,
    get_spec,
    validate_params,
)
from autonomy_controller.controller.models import (
    ActionSpec,
    Category,
    ImpactVerdict,
    Incident,
    Severity,
    TriageVerdictName,
)
from autonomy_controller.controller.planning import templating
from autonomy_controller.controller.planning.templating import FIELDS, TARGET_FIELDS, FieldKind, Template, TemplateError

PLAYBOOK_GLOB = "*.yaml"

# Human-facing text params: the only places free text (signature, url, evidence) may appear. Listed
# explicitly, so a new action's string params are closed to free text until someone decides otherwise.

Requirement = Literal["src_ip", "dst_ip", "asset", "source_asset", "user"]


class PlaybookError(ValueError):
    """Every problem found in the playbooks, each as 'file: key: message', so one run shows them all."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid playbooks:\n  " + "\n  ".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """When a playbook applies. Omitted conditions match anything."""

    categories: list[Category] = Field(default_factory=list, description="empty: any category")
    min_severity: Severity = Severity.INFO
    max_severity: Severity = Severity.CRITICAL
    blocked: bool | None = Field(default=None, description="did the sensor block every alert; null: either")
    assets: list[str] = Field(default_factory=list, description="empty: any asset")
    asset_groups: list[str] = Field(default_factory=list, description="inventory groups; empty: any")
    requires: list[Requirement] = Field(default_factory=list, description="facts the incident must have")
    triage: list[TriageVerdictName] = Field(
        default_factory=list, description="the controller's triage verdicts this playbook is for; empty: any"
    )
    impact: list[ImpactVerdict] = Field(
        default_factory=list,
        description="the case's impact verdicts (controller/attackers/impact.py) it is for; empty: any",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Match:
        if self.min_severity.rank > self.max_severity.rank:
            raise ValueError("min_severity must not exceed max_severity")
        return self

    def matches(
        self,
        incident: Incident,
        context: dict[str, str | None],
        asset_group: str | None,
        triage: TriageVerdictName | None = None,
        impact: ImpactVerdict | None = None,
    ) -> bool:
        # Without a triage (a caller that has none) a triage-specific playbook does not apply; likewise impact.
        if self.triage and triage not in self.triage:
            return False
        if self.impact and impact not in self.impact:
            return False
        if self.categories and incident.category not in self.categories:
            return False
        if not self.min_severity.rank <= incident.severity.rank <= self.max_severity.rank:
            return False
        if self.blocked is not None and incident.blocked is not self.blocked:
            return False
        if self.assets and incident.asset not in self.assets:
            return False
        if self.asset_groups and asset_group not in self.asset_groups:
            return False
        return all(context.get(field) for field in self.requires)


class PlaybookAction(_Strict):
    """One action template. Parsed and sample-validated at load time (see module docstring)."""

    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    rationale: str = Field(min_length=1)
    confidence: float = Field(ge=0.0, le=1.0)

    _templates: dict[str, Template] = PrivateAttr(default_factory=dict)
    _target: tuple[str, str] | None = PrivateAttr(default=None)
    _limits: dict[str, int | None] = PrivateAttr(default_factory=dict)
    _rationale: Template = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> PlaybookAction:
        try:
            spec = get_spec(self.action)
        except UnknownActionError as exc:
            raise ValueError(f"action: {exc}") from None
        problems: list[str] = []
        try:
            self._rationale = _checked("rationale", self.rationale, FIELDS.keys() - _FREE_TEXT)
        except ValueError as exc:
            problems.append(str(exc))
        for name, value in self.params.items():
            try:
                if isinstance(value, list | dict):
                    raise ValueError(f"params.{name}: only scalar values and string templates are supported")
                if isinstance(value, str):
                    self._templates[name] = self._compile_param(spec, name, value)
            except ValueError as exc:
                problems.append(str(exc))
        if not problems:
            try:
                self.render(templating.sample_context())  # the schema check, with plausible values
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _compile_param(self, spec: ActionSpec, name: str, value: str) -> Template:
        key = f"params.{name}"
        if name == spec.target_param:
            template = _checked(key, value, TARGET_FIELDS[spec.target_kind])
            allowed = " or ".join(f"{{{f}}}" for f in sorted(TARGET_FIELDS[spec.target_kind]))
            if template.single_field is None:
                raise ValueError(f"{key}: the target must be exactly one placeholder ({allowed}), got {value!r}")
            self._target = (name, template.single_field)
            return template
        if name in FREE_TEXT_PARAMS.get(spec.name, frozenset()):
            self._limits[name] = max_length(spec, name)
            return _checked(key, value, FIELDS.keys())
        return _checked(key, value, FIELDS.keys() - _FREE_TEXT - _TARGETS)

    @property
    def target(self) -> tuple[str, str] | None:
        """(param, field) when the action's target comes from the incident, e.g. ('ip', 'src_ip')."""
        return self._target

    def render(self, context: dict[str, str | None]) -> dict[str, Any]:
        """Params with every template filled, validated and normalised by the action's schema.

        The target param is substituted whole (never through text rendering), so what the schema validates
        is exactly the value the sensor reported. Raises ValueError naming each bad param.
        """
        params: dict[str, Any] = dict(self.params)
        for name, template in self._templates.items():
            if self._target is not None and name == self._target[0]:
                params[name] = context.get(self._target[1])
            else:
                params[name] = templating.render(template, context, self._limits.get(name))
        try:
            validated = validate_params(get_spec(self.action), params)
        except InvalidParamsError as exc:
            raise ValueError("params: " + "; ".join(exc.errors)) from None
        return validated.model_dump(mode="json", exclude_none=True)

    def render_rationale(self, context: dict[str, str | None]) -> str:
        return templating.render(self._rationale, context, 1000)


class Playbook(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,63}$")
    description: str = Field(min_length=1)
    priority: int = Field(ge=0, le=1000, description="higher wins; ties go to the alphabetically first name")
    match: Match
    actions: list[PlaybookAction] = Field(
        default_factory=list, description="empty: record only (the ledger and the report keep the incident)"
    )

    @model_validator(mode="after")
    def _record_only_for_noise(self) -> Playbook:
        # An empty list by mistake would silently drop incidents: only triage's noise may be recorded and left.
        if not self.actions and self.match.triage != ["noise"]:
            raise ValueError("actions: empty; only a playbook matching triage [noise] alone may record only")
        return self


_FREE_TEXT = frozenset(name for name, kind in FIELDS.items() if kind is FieldKind.FREE_TEXT)
_TARGETS = frozenset(name for name, kind in FIELDS.items() if kind is FieldKind.TARGET)


def _checked(key: str, text: str, allowed: Any) -> Template:
    try:
        template = templating.parse(text)
    except TemplateError as exc:
        raise ValueError(f"{key}: {exc}") from None
    refused = sorted(set(template.fields) - set(allowed))
    if refused:
        placeholders = ", ".join(f"{{{f}}}" for f in refused)
        raise ValueError(f"{key}: {placeholders} not allowed here (free text only in ticket/notify text)")
    return template


def max_length(spec: ActionSpec, name: str) -> int | None:
    limit = spec.params_schema.get("properties", {}).get(name, {}).get("maxLength")
    return int(limit) if limit is not None else None


def _format_error(source: str, err: Any) -> str:
    key = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{source}: {key}: {message}"


def parse_playbook(raw: Any, source: str) -> Playbook:
    """Validate one playbook document; `source` names it in errors (a file name, or 'builtin')."""
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        raise PlaybookError([_format_error(source, err) for err in exc.errors()]) from None


def load_playbooks(directory: Path) -> list[Playbook]:
    """Every playbook in `directory`, best first (priority, then name), after checking all of them.

    A missing or empty directory is an error rather than an empty list: a typo in the configured path must
    not silently reduce every incident to a triage ticket.
    """
    if not directory.is_dir():
        raise PlaybookError([f"{directory}: playbook directory not found"])
    errors: list[str] = []
    playbooks: dict[str, tuple[str, Playbook]] = {}
    for path in sorted(directory.glob(PLAYBOOK_GLOB)):
        try:
            raw = yaml.safe_load(path.read_text())
            playbook = parse_playbook(raw, path.name)
        except yaml.YAMLError as exc:
            errors.append(f"{path.name}: not valid YAML: {exc}".replace("\n", " "))
            continue
        except PlaybookError as exc:
            errors.extend(exc.errors)
            continue
        if playbook.name in playbooks:
            errors.append(f"{path.name}: name: {playbook.name!r} already defined in {playbooks[playbook.name][0]}")
            continue
        playbooks[playbook.name] = (path.name, playbook)
    if not playbooks and not errors:
        errors.append(f"{directory}: no {PLAYBOOK_GLOB} playbooks found")
    if errors:
        raise PlaybookError(errors)
    return sorted((pb for _, pb in playbooks.values()), key=lambda pb: (-pb.priority, pb.name))
