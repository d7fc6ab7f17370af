"""The worker: the workflow and its activities, with the guard, ledger and adapters built once per process.

Scale out by running more of these on the same task queue (and pointing them at a shared Temporal, OPA and
PostgreSQL ledger): no state lives in a worker that another worker needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from autonomy_controller.actions.adapters import build_adapters
from autonomy_controller.actions.adapters.base import Adapter
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.planning import ClaudeSettings
from autonomy_controller.controller.runtime import EngineName
from autonomy_controller.controller.triage.ledger_view import ledger_view
from autonomy_controller.workflows.activities import IncidentActivities
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.contracts import TASK_QUEUE
from autonomy_controller.workflows.guard_provider import GuardProvider
from autonomy_controller.workflows.incident import IncidentWorkflow

SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "controller", "actions", "autonomy_controller.workflows.contracts"
    )
)
"""Our own modules are imported once, not per workflow run: the workflow code stays sandboxed (non-deterministic
calls in it still fail), while the models and rules it uses, which are deterministic, are shared."""


_client_created = False


def temporal_client_created() -> bool:
    """Whether this process made a Temporal client: its Rust threads can abort interpreter finalization."""
    return _client_created


async def connect(target: str | TemporalConnection, namespace: str | None = None, wait_seconds: float = 15.0) -> Client:
    """A client that carries our pydantic models through Temporal (the one converter every side must use).

    `target`: the resolved connection settings (workflows/connection.py: TLS, API key), or a bare address for a
    plaintext server this process started (the dev server). Waits up to `wait_seconds` for a frontend that is
    not healthy yet (a server that has just started).
    """
    global _client_created
    _client_created = True
    connection = TemporalConnection(address=target) if isinstance(target, str) else target
    if namespace is not None:
        connection = connection.with_namespace(namespace)
    return await connection.connect(wait_seconds)


@dataclass
class WorkerParts:
    worker: Worker
    activities: IncidentActivities
    guards: GuardProvider
    ledger: Ledger


@asynccontextmanager
async def incident_worker(
    client: Client,
    settings: Settings,
    engine: EngineName | None = None,
    task_queue: str = TASK_QUEUE,
    max_concurrent_activities: int = 16,
    extra_adapters: dict[str, Adapter] | None = None,
    claude: ClaudeSettings | None = None,
    claude_client: Any = None,
) -> AsyncIterator[WorkerParts]:
    """A running worker; stops (and closes the guard and ledger) on exit.

    `extra_adapters` adds or replaces adapters (an enforcement point configured by the caller; tests).
    `claude` / `claude_client` override the LLM planner's settings from the environment (tests).
    """
    guards = GuardProvider(settings, engine)
    ledger = Ledger.from_url(settings.ledger_url)
    guards.current()  # compile the policy before taking work, not on the first incident
    ledger_view(ledger).refresh()  # read the ledger's triage history once now, not inside the first plan
    adapters = {**build_adapters(settings, ledger), **(extra_adapters or {})}
    activities = IncidentActivities(settings, guards, ledger, adapters, claude, claude_client)
    with ThreadPoolExecutor(max_workers=max_concurrent_activities) as pool:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[IncidentWorkflow],
            activities=activities.all(),
            activity_executor=pool,
            max_concurrent_activities=max_concurrent_activities,
            workflow_runner=SANDBOX,
        )
        try:
            async with worker:
                yield WorkerParts(worker, activities, guards, ledger)
        finally:
            guards.close()
            ledger.close()
