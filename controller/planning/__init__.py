"""Planners: turn an Incident into a Plan of ProposedActions for the guard to judge.

The offline planner (playbooks, deterministic) is the default and the fallback for the LLM planner.
"""

from controller.planning.offline import FALLBACK, OfflinePlanner
from controller.planning.playbooks import Playbook, PlaybookAction, PlaybookError, load_playbooks

__all__ = ["FALLBACK", "OfflinePlanner", "Playbook", "PlaybookAction", "PlaybookError", "load_playbooks"]
