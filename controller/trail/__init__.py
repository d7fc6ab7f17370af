"""The audit trail: one narrative per action, joining the ledger with Temporal's workflow history.

An auditor's question is "why did this action run?", and neither source answers it alone: the ledger holds
the evidence, the proposal, the decision, the votes and the outcomes (hash-chained, so trustworthy), while
the history holds what the orchestrator actually did (which activities ran, how many attempts, which votes it
accepted, which timer fired the revert). Joined per action, with every disagreement between them named, the
two become one story whose every line cites its source: a ledger seq or a history event id.

The trail is built from data only (ledger records and the document `workflow_histories` returns), so it runs
on a copy of production state; without Temporal it still renders from the ledger and says why the history is
absent.

    trail = build_trail(key, ledger.records(key), await workflow_histories(address, key), ledger.verify(key))
    paths = write_trail(trail, reports_dir, TrailFormat.BOTH)
"""

from autonomy_controller.controller.oversight.trail.build import build_trail
from autonomy_controller.controller.oversight.trail.history import RunHistory, read_histories
from autonomy_controller.controller.oversight.trail.model import (
    TRAIL_FORMAT,
    ActionTrail,
    Cite,
    Disagreement,
    Fact,
    HistoryInfo,
    Mark,
    Source,
    Step,
    StepKind,
    Tone,
    Trail,
)
from autonomy_controller.controller.oversight.trail.render import TrailFormat, render_html, render_markdown, write_trail

__all__ = [
    "TRAIL_FORMAT",
    "ActionTrail",
    "Cite",
    "Disagreement",
    "Fact",
    "HistoryInfo",
    "Mark",
    "RunHistory",
    "Source",
    "Step",
    "StepKind",
    "Tone",
    "Trail",
    "TrailFormat",
    "build_trail",
    "read_histories",
    "render_html",
    "render_markdown",
    "write_trail",
]
