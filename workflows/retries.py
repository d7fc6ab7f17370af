"""Retry policy per action class: how hard to try before an action counts as failed.

Containment is retried briefly (a firewall that is down for minutes should page a person, not be hammered);
notifications and tickets longer (they are harmless to repeat: adapters dedupe by idempotency key).
AdapterError (permanent) is never retried; the activity turns it into a FAILED outcome.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from autonomy_controller.controller.models import ActionClass
from autonomy_controller.controller.planning.claude_config import CALL_BUDGET_SECONDS

_CONTAIN = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=5,
)
_HARMLESS = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
_LOOKUP = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)

RETRY_BY_CLASS: dict[ActionClass, RetryPolicy] = {
    ActionClass.INVESTIGATE: _LOOKUP,
    ActionClass.NOTIFY: _HARMLESS,
    ActionClass.TICKET: _HARMLESS,
    ActionClass.CONTAIN_NETWORK: _CONTAIN,
    ActionClass.CONTAIN_HOST: _CONTAIN,
    ActionClass.CONTAIN_IDENTITY: _CONTAIN,
    ActionClass.RESTORE: _CONTAIN,
}
STEP_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_interval=timedelta(seconds=10))
"""Planner, ledger and report steps: retried until the workflow's own timeouts stop them."""


def retry_for(action_class: ActionClass | None) -> RetryPolicy:
    return RETRY_BY_CLASS.get(action_class, _CONTAIN) if action_class else _CONTAIN


PLAN_TIMEOUT = timedelta(seconds=CALL_BUDGET_SECONDS + 20)
"""The plan activity may be an LLM call: the SDK's own retries (AUTONOMY_CLAUDE_MAX_RETRIES) and per-request
timeout (AUTONOMY_CLAUDE_TIMEOUT_SECONDS, 45 s) run inside one attempt, within CALL_BUDGET_SECONDS (checked
when the settings are read), and the rest of the step gets 20 s."""
PLAN_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0, maximum_attempts=3)
"""Few attempts: model trouble is already retried by the SDK and ends in the level's fallback, not an error.
What still fails three times (the ledger unreachable, a bug) plans nothing and says so."""
