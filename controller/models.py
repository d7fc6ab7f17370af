"""The product's contracts: the shapes that ingest, planners, the guard, workflows and outside tools exchange.

These are kept stable on purpose (docs/architecture.md, "Contracts"): tests, examples, the Rego input document and
Temporal histories all depend on the field names. Add fields; do not rename them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomy_controller.controller.addresses import canonical_address

Stage = Literal["none", "recon", "exploitation_attempt", "possible_success", "post_exploitation"]
STAGES: tuple[Stage, ...] = ("none", "recon", "exploitation_attempt", "possible_success", "post_exploitation")
"""The kill-chain stages in order (docs/attackers.md, "Stages"); an attacker profile's stage is the highest
reached. Vocabulary: the case's decision rounds rank them without loading the profile store."""


def stage_rank(stage: Stage) -> int:
    return STAGES.index(stage)


def parse_observed_at(value: object) -> datetime | None:
    """An ISO-8601 time from a stored payload (a record's `observed_at`), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class Category(StrEnum):
    """Attack category of an alert, the key playbooks and level scopes match on."""

    SQLI = "sqli"
    XSS = "xss"
    RCE = "rce"
    LFI = "lfi"
    RFI = "rfi"
    PHP_INJECTION = "php_injection"
    JAVA_INJECTION = "java_injection"
    PROTOCOL = "protocol"
    SCANNER = "scanner"
    BRUTE_FORCE = "brute_force"
    MALWARE = "malware"
    C2 = "c2"
    LATERAL_MOVEMENT = "lateral_movement"
    EXFILTRATION = "exfiltration"
    OTHER = "other"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Level(StrEnum):
    """Autonomy level, after SAE J3016's driving-automation levels (see levels/)."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"

    @property
    def rank(self) -> int:
        return int(self.value[1])

    @classmethod
    def lowest(cls, *levels: Level) -> Level:
        return min(levels, key=lambda lv: lv.rank)


class Verdict(StrEnum):
    """What may happen to a proposed action. Only `execute` (now) and `approve` (after approvals) ever run."""

    EXECUTE = "execute"
    APPROVE = "approve"
    RECOMMEND = "recommend"
    DENY = "deny"


def canonical_ip(value: str | None) -> str | None:
    """Normalise an address so that grouping keys and policy lookups compare equal for equal addresses."""
    if value is None or value == "":
        return None
    return canonical_address(value)  # controller/addresses.py: no zone id, nothing but an address


def utcnow() -> datetime:
    return datetime.now(UTC)


class Provenance(StrEnum):
    """Who vouches for an alert's facts (docs/sensors.md, "Provenance"). Set by the ingest parser that produced the
    alert, never read from the input: a record cannot claim it."""

    SENSOR = "sensor"
    """Parsed by our adapter from the sensor's own format: `raw` is that sensor's record, triage reads its facts."""
    TRUSTED_FEED = "trusted_feed"
    """Our Alert JSON on a channel an operator declared may speak for this `source` (`--trust-native`, a token's
    `trust_native`): read as that sensor's facts."""
    CLAIM = "claim"
    """Our Alert JSON on any other channel: what the sender says. Triage reads none of its `raw` as sensor facts, so
    it may lower a verdict, never raise one. Also any alert nobody marked (records from before provenance)."""


class Alert(BaseModel):
    """One normalised sensor alert. `evidence` and `raw` are attacker-controlled and never read as instructions."""

    model_config = ConfigDict(frozen=True)

    id: str
    source: str = Field(description="sensor format, e.g. modsecurity3, modsecurity2, suricata, ocsf, native")
    observed_at: datetime
    category: Category
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    src_ip: str | None = None
    dst_ip: str | None = None
    dst_port: int | None = Field(default=None, ge=0, le=65535)
    asset: str | None = None
    user: str | None = None
    url: str | None = None
    rule_ids: list[str] = Field(default_factory=list)
    signature: str | None = None
    blocked: bool = Field(default=False, description="the sensor already blocked the request")
    src_connected: bool = Field(
        default=False,
        description="the sensor saw src_ip hold a connection (TCP carrying application data: an HTTP request, a "
        "login, a TLS session), so the address is not forged; a one-way packet's source (UDP, ICMP, a bare SYN) "
        'may be anyone\'s (docs/sensors.md, "Forged sources")',
    )
    evidence: str = Field(default="", description="untrusted text: request line, matched data, user agent")
    raw: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(
        default=Provenance.CLAIM, description="who vouches for the facts: set by the ingest parser (Provenance)"
    )

    @property
    def is_claim(self) -> bool:
        return self.provenance == Provenance.CLAIM

    @field_validator("src_ip", "dst_ip", mode="before")
    @classmethod
    def _canonical_ip(cls, value: str | None) -> str | None:
        return canonical_ip(value)


class Incident(BaseModel):
    """A case: one attacker's alerts under one key (controller/case/grouping.py), one workflow. `category` is the
    primary one; each category's alerts stay visible (`controller.case.grouping.category_views`)."""

    key: str
    category: Category
    severity: Severity
    src_ip: str | None = None
    asset: str | None = None
    source_asset: str | None = Field(
        default=None,
        description="our asset the sensors reported as the source of the case's alerts (the origin of malware, "
        "C2 or lateral movement; claims aside), named by the guard's enrich; `asset` is where they went, else this",
    )
    first_seen: datetime
    last_seen: datetime
    alerts: list[Alert]

    @property
    def vouched_alerts(self) -> list[Alert]:
        """The alerts whose confidence and `blocked` the case's figures rest on: the sensors' (and trusted feeds'),
        so a claim (native JSON) can never lift them; a case of claims alone has only its claims to go by."""
        vouched = [a for a in self.alerts if not a.is_claim]
        return vouched or self.alerts

    @property
    def confidence(self) -> float:
        return max((a.confidence for a in self.vouched_alerts), default=0.0)

    @property
    def blocked(self) -> bool:
        """True only when the sensor blocked every alert of the incident (claims aside, when a sensor reported)."""
        alerts = self.vouched_alerts
        return bool(alerts) and all(a.blocked for a in alerts)


TriageVerdictName = Literal["malicious", "suspicious", "noise"]
TRIAGE_RANK: dict[str, int] = {"noise": 0, "suspicious": 1, "malicious": 2}


class PlannerTriage(BaseModel):
    """A planner's (the LLM's) own reading of the incident: untrusted, so it may lower autonomy, never raise it."""

    verdict: TriageVerdictName
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: str = Field(default="", max_length=2_000)


ImpactVerdict = Literal["none", "attempted", "likely", "confirmed"]
IMPACT_RANK: dict[str, int] = {"none": 0, "attempted": 1, "likely": 2, "confirmed": 3}


class ImpactEvidence(BaseModel):
    """One sensor record behind an impact verdict (controller/attackers/impact.py)."""

    alert_id: str
    sensor: str
    asset: str | None = None
    status: int | None = None
    bytes_sent: int | None = None
    why: str


class ImpactSummary(BaseModel):
    """How far a case's attack got, from sensor facts only (what sensors blocked, what the application answered,
    bytes sent back, the inventory): never from request text. Set by the controller's plan step; in the policy
    input (`impact.verdict`), the risk score, reports and decision records."""

    verdict: ImpactVerdict = "none"
    stage: str = Field(default="none", description="the kill-chain stage the case's alerts show (docs/attackers.md)")
    assets: list[str] = Field(default_factory=list, description="assets an attack reached (answered 2xx, unblocked)")
    bytes_sent: int = Field(default=0, description="body bytes of the application's 2xx answers to the source")
    evidence: list[ImpactEvidence] = Field(default_factory=list)


class SourceStanding(BaseModel):
    """How long the sensors had known a case's source before the case, and how much of its traffic the application
    answered: a long, steady history is what an address shared by many (a NAT, a proxy) shows. From the source's
    attacker profile (sensor facts: access log, WAF, IDS), set by the controller's plan step. It may only ask a
    person (policies/guardrails/network.rego): a source that built one has shown itself for days beforehand."""

    address: str
    known_days: int = Field(ge=0, description="whole days from the profile's first sighting to the case's first alert")
    answered: int = Field(
        ge=0, description="requests of the source the application answered 2xx, as its profile counts"
    )


class TriageSummary(BaseModel):
    """The triage the guard decided on: the controller's (controller/triage), lowered by the planner's when that
    says less. In the policy input (verdict, confidence) and in every decision record."""

    verdict: TriageVerdictName
    confidence: float = Field(ge=0.0, le=1.0)
    score: float | None = Field(default=None, description="the controller's 0-100 score")
    model_revision: str = ""
    controller_verdict: TriageVerdictName | None = Field(
        default=None, description="what the controller said, when the planner lowered it"
    )
    lowered_by: str | None = Field(default=None, description="who lowered it: planner:<name>")
    techniques: list[str] = Field(default_factory=list, description="MITRE ATT&CK technique ids")

    def lowered_to(self, planner: PlannerTriage | None, planner_name: str) -> TriageSummary:
        """This triage, lowered by a planner's when that says less (a lower verdict, or the same with less
        confidence). A planner that says more changes nothing."""
        if planner is None:
            return self
        mine, theirs = TRIAGE_RANK[self.verdict], TRIAGE_RANK[planner.verdict]
        if theirs > mine or (theirs == mine and planner.confidence >= self.confidence):
            return self
        confidence = planner.confidence if theirs == mine else min(self.confidence, planner.confidence)
        return self.model_copy(
            update={
                "verdict": planner.verdict,
                "confidence": confidence,
                "controller_verdict": self.verdict,
                "lowered_by": planner_name,
            }
        )


ControllerTriage = TriageSummary | TriageVerdictName
"""The controller's triage: its summary (what the model is told), or a bare verdict from a caller without one."""


def verdict_of(triage: ControllerTriage | None) -> TriageVerdictName | None:
    """The verdict playbooks match on, from either form of the controller's triage."""
    return triage.verdict if isinstance(triage, TriageSummary) else triage


class ProposedAction(BaseModel):
    id: str
    action: str = Field(description="registry name such as network.block_ip")
    params: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)


class Plan(BaseModel):
    incident_key: str
    planner: str = Field(description="which planner made the plan: offline, claude, file")
    mode: Literal["select", "design"] = "select"
    playbook: str | None = None
    actions: list[ProposedAction] = Field(default_factory=list)
    model: str | None = None
    usage: dict[str, Any] | None = None
    prompt_hash: str | None = None
    hold_reason: str | None = Field(default=None, description="set when the planner holds the incident for a person")
    planner_triage: PlannerTriage | None = Field(
        default=None, description="the planner's own triage (untrusted: it may lower autonomy, never raise it)"
    )
    triage: TriageSummary | None = Field(
        default=None,
        description="the controller's triage, set by the controller's plan step after planning (never by a planner); "
        "the workflow's guard step reads it from there",
    )
    impact: ImpactSummary | None = Field(
        default=None, description="the controller's impact verdict, set with `triage` by the controller's plan step"
    )
    standing: list[SourceStanding] = Field(
        default_factory=list, description="the case's connected sources the sensors knew before it (the plan step's)"
    )


class ActionClass(StrEnum):
    """Levels grant autonomy per class, so a new action inherits a sane default from its class."""

    INVESTIGATE = "investigate"
    NOTIFY = "notify"
    TICKET = "ticket"
    CONTAIN_NETWORK = "contain_network"
    CONTAIN_HOST = "contain_host"
    CONTAIN_IDENTITY = "contain_identity"
    RESTORE = "restore"


class BlastRadius(StrEnum):
    """How much can break if the action is wrong; ordered from harmless to wide."""

    NONE = "none"
    SINGLE_ADDRESS = "single_address"
    NETWORK_RANGE = "network_range"
    HOST = "host"
    IDENTITY = "identity"

    @property
    def weight(self) -> float:
        return {"none": 0.0, "single_address": 0.25, "network_range": 0.6, "host": 0.75, "identity": 0.8}[self.value]


class TargetKind(StrEnum):
    IP = "ip"
    HOST = "host"
    USER = "user"
    NONE = "none"


class ActionSpec(BaseModel):
    """Registry metadata for one action. Compensation, TTL revert, risk and policy all read this."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    action_class: ActionClass
    description: str
    blast_radius: BlastRadius
    reversible: bool
    undo_action: str | None = None
    verify: str = Field(description="how the adapter checks that the effect really happened")
    idempotent: bool = True
    target_kind: TargetKind = TargetKind.NONE
    target_param: str | None = Field(default=None, description="the param that names the target")
    params_model: type[BaseModel] = Field(exclude=True)

    @property
    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


class RiskFactor(BaseModel):
    name: str
    value: float = Field(ge=0.0, le=1.0)
    weight: float = Field(ge=0.0)
    contribution: float = Field(description="points this factor adds to the 0-100 score")
    why: str


class RiskAssessment(BaseModel):
    score: float = Field(ge=0.0, le=100.0)
    factors: list[RiskFactor]


class ApprovalRequirement(BaseModel):
    """A group that must contribute at least `quorum` of an approval's votes (e.g. 2 iam-admins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    quorum: int = Field(ge=1)


class PolicyResult(BaseModel):
    """What the policy engine said, verbatim enough for an auditor to tie it to one policy revision."""

    engine: str
    decision_id: str
    policy_revision: str
    verdict: Verdict
    deny_reasons: list[str] = Field(default_factory=list)
    approval_reasons: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    approver_groups: list[str] = Field(default_factory=list)
    quorum: int = Field(default=0, description="distinct approvers needed, from any of approver_groups")
    approval_requirements: list[ApprovalRequirement] = Field(
        default_factory=list, description="per-group minimums on top of the quorum"
    )
    veto_window: bool = Field(
        default=False,
        description="an unanswered approval may fall back to the level's veto window: only the level asked for it",
    )


class TrialDecision(BaseModel):
    """What a candidate level would have decided for the same action (a shadow trial); never acted on.

    Kept inside the live decision's record so the two can never drift apart, and so promote-check can join
    the candidate's verdict with what people and verifications did to the live action.
    """

    scope: str
    level: Level = Field(description="the candidate level the trial assigns to the scope")
    effective_level: Level
    level_reasons: list[str] = Field(default_factory=list)
    verdict: Verdict
    reasons: list[str] = Field(default_factory=list)
    approver_groups: list[str] = Field(default_factory=list)
    quorum: int = 0


class GuardDecision(BaseModel):
    action_id: str
    action: str
    verdict: Verdict
    declared_level: Level
    effective_level: Level
    level_reasons: list[str] = Field(default_factory=list, description="why the effective level is lower")
    risk: RiskAssessment | None = None
    policy: PolicyResult | None = None
    reasons: list[str] = Field(default_factory=list)
    policy_revision: str = ""
    latency_ms: float = 0.0
    decided_at: datetime = Field(default_factory=utcnow)
    decision_time: datetime | None = Field(
        default=None, description="the time the policy was given (input.time): the clock, or a replayed alert's"
    )
    scope: str = Field(default="default", description="the scope that assigned the declared level (levels/scopes.yaml)")
    trials: list[TrialDecision] = Field(default_factory=list, description="shadow trials' verdicts for this action")
    triage: TriageSummary | None = Field(default=None, description="the triage the policy was given")
    impact: ImpactSummary | None = Field(
        default=None,
        description="the impact the policy was given, without its evidence (the plan record holds it): pre-flight "
        "decides again on it, since the policy reads it (its reasons, and a custom rule may read its assets)",
    )
    standing: list[SourceStanding] = Field(
        default_factory=list, description="the sources' standing the policy was given: pre-flight decides again on it"
    )
