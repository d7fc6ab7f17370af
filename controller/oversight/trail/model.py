"""The trail as data: what `audit trail --json` prints and what the Markdown and HTML renderers read.

Every line is a Fact that carries its citations (a ledger seq or a history event id), so a renderer can never
print a statement without its source, and a test can check the sources as well as the words.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

TRAIL_FORMAT = "autonomy-audit-trail/1"


class Source(StrEnum):
    LEDGER = "ledger"
    HISTORY = "history"


class Cite(BaseModel):
    """Where a line comes from: a ledger seq, or an event id in one run's workflow history."""

    source: Source
    ref: int
    run_id: str | None = None

    def __str__(self) -> str:
        return f"ledger seq {self.ref}" if self.source is Source.LEDGER else f"history event {self.ref}"


def ledger_cite(seq: int) -> Cite:
    return Cite(source=Source.LEDGER, ref=seq)


def history_cite(event_id: int, run_id: str) -> Cite:
    return Cite(source=Source.HISTORY, ref=event_id, run_id=run_id)


class Tone(StrEnum):
    OK = "ok"
    WARN = "warn"
    BAD = "bad"
    INFO = "info"


class Mark(BaseModel):
    """A label an auditor must not miss (verdict, UNSIGNED, FAILED): a badge in HTML, bold in Markdown."""

    text: str
    tone: Tone = Tone.INFO


class Fact(BaseModel):
    text: str
    code: str | None = Field(default=None, description="a literal (untrusted evidence, params) shown verbatim")
    marks: list[Mark] = Field(default_factory=list)
    cites: list[Cite] = Field(default_factory=list)


class Grid(BaseModel):
    headers: list[str]
    rows: list[list[str]]
    numeric: list[int] = Field(default_factory=list)


class StepKind(StrEnum):
    EVIDENCE = "evidence"
    PROPOSAL = "proposal"
    RISK = "risk"
    DECISION = "decision"
    APPROVAL = "approval"
    PREFLIGHT = "preflight"
    EXECUTION = "execution"
    VERIFICATION = "verification"
    COMPENSATION = "compensation"
    REVERT = "revert"


STEP_TITLES: dict[StepKind, str] = {
    StepKind.EVIDENCE: "Alert evidence",
    StepKind.PROPOSAL: "Proposal",
    StepKind.RISK: "Risk",
    StepKind.DECISION: "Policy decision",
    StepKind.APPROVAL: "Approvals",
    StepKind.PREFLIGHT: "Pre-flight check",
    StepKind.EXECUTION: "Execution",
    StepKind.VERIFICATION: "Verification",
    StepKind.COMPENSATION: "Compensation",
    StepKind.REVERT: "Revert",
}


class Step(BaseModel):
    kind: StepKind
    title: str
    at: datetime | None = None
    marks: list[Mark] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)
    grid: Grid | None = None


class Disagreement(BaseModel):
    """The ledger and the history tell different stories here: the first place an auditor should look."""

    text: str
    cites: list[Cite] = Field(default_factory=list)


class ActionTrail(BaseModel):
    run_id: str | None
    action_id: str
    action: str
    verdict: str | None
    outcome: str
    outcome_tone: Tone
    summary: str = Field(description="why it ran (or did not), in one paragraph built from the steps")
    steps: list[Step]
    disagreements: list[Disagreement] = Field(default_factory=list)

    def step(self, kind: StepKind) -> Step | None:
        return next((s for s in self.steps if s.kind is kind), None)


class RunInfo(BaseModel):
    run_id: str
    status: str
    requested: str | None = Field(default=None, description="the workflow's input: level override and timings")
    events: int
    started_at: datetime | None = None
    closed_at: datetime | None = None
    alerts_signalled: int = 0
    timers: list[Fact] = Field(default_factory=list)


class HistoryInfo(BaseModel):
    available: bool
    reason: str | None = Field(default=None, description="why the workflow history is absent")
    address: str | None = None
    runs: list[RunInfo] = Field(default_factory=list)


class LedgerCheck(BaseModel):
    ok: bool
    summary: str
    checked: int
    head_seq: int
    head_hash: str


class Trail(BaseModel):
    format: str = TRAIL_FORMAT
    incident_key: str
    generated_at: datetime
    records: int
    history: HistoryInfo
    actions: list[ActionTrail]
    notes: list[Fact] = Field(default_factory=list, description="incident-level records no action owns")
    disagreements: list[Disagreement] = Field(default_factory=list, description="incident-level ones")
    ledger: LedgerCheck

    def action(self, action_id: str, run_id: str | None = None) -> ActionTrail:
        """The action's trail; the last run's when the incident key ran more than once and run_id is None."""
        found = [a for a in self.actions if a.action_id == action_id and run_id in (None, a.run_id)]
        if not found:
            raise KeyError(f"no action {action_id} in the trail of {self.incident_key}")
        return found[-1]

    @property
    def disagreement_count(self) -> int:
        return len(self.disagreements) + sum(len(a.disagreements) for a in self.actions)
