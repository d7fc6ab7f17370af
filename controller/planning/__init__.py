"""Planners: turn an Incident into a Plan of ProposedActions for the guard to judge.

The offline planner (playbooks, deterministic) is the default and the fallback for the LLM planner; the Claude
planner runs when ClaudeSettings.from_env() finds ANTHROPIC_API_KEY. ClaudePlanner and ClaudeResult are loaded
on first use: importing the `anthropic` SDK costs over a second, which every CLI command and worker would pay
otherwise, with or without a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autonomy_controller.controller.planning.claude_config import ClaudeConfigError, ClaudeSettings
from autonomy_controller.controller.planning.offline import FALLBACK, OfflinePlanner
from autonomy_controller.controller.planning.playbooks import Playbook, PlaybookAction, PlaybookError, load_playbooks

if TYPE_CHECKING:
    from autonomy_controller.controller.planning.claude import ClaudePlanner, ClaudeResult

__all__ = [
    "FALLBACK",
    "ClaudeConfigError",
    "ClaudePlanner",
    "ClaudeResult",
    "ClaudeSettings",
    "OfflinePlanner",
    "Playbook",
    "PlaybookAction",
    "PlaybookError",
    "load_playbooks",
]


def __getattr__(name: str) -> Any:
    if name in ("ClaudePlanner", "ClaudeResult"):
        from autonomy_controller.controller.planning import claude

        return getattr(claude, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
