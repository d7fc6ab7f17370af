"""Triage and de-noising: is an incident malicious, suspicious or noise, from the sensors' own facts.

    model = load_triage_model(Path("levels"))
    result = triage(incident, model, history=SourceHistory(prior_malicious=1), feedback=RuleFeedback(...))
    result.verdict, result.confidence, result.score, result.factors, result.techniques

Module map: `model` (levels/triage.yaml, validated), `facts` (what each alert's raw record says), `scoring`
(per-hit strength and feedback discount), `factors` (the incident's factors), `attack` (ATT&CK mapping),
`engine` (score, caps, verdict, confidence), `history` (SourceHistory, RuleFeedback), `exclusions` (WAF
exclusion proposals for rules people keep rejecting), `result` (what is returned). docs/triage.md: the design.
"""

from autonomy_controller.controller.triage.engine import guard_summary, triage
from autonomy_controller.controller.triage.exclusions import ExclusionProposal, ExclusionRefused, propose_exclusion
from autonomy_controller.controller.triage.history import FeedbackCounts, RuleFeedback, SourceHistory
from autonomy_controller.controller.triage.model import TRIAGE_FILE, TriageModel, load_triage_model
from autonomy_controller.controller.triage.result import (
    AttackTechnique,
    TriageEvidence,
    TriageFactor,
    TriageResult,
    TriageVerdict,
)

__all__ = [
    "TRIAGE_FILE",
    "AttackTechnique",
    "ExclusionProposal",
    "ExclusionRefused",
    "FeedbackCounts",
    "RuleFeedback",
    "SourceHistory",
    "TriageEvidence",
    "TriageFactor",
    "TriageModel",
    "TriageResult",
    "TriageVerdict",
    "guard_summary",
    "load_triage_model",
    "propose_exclusion",
    "triage",
]
