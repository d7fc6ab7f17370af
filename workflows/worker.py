"""The worker: the workflow and its activities, with the guard, ledger and adapters built once per process.

Scale out by running more of these on the same task queue (and pointing them at a shared Temporal, OPA and
PostgreSQL ledger): no state lives in a worker that another worker needs.
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from autonomy_controller.actions.adapters import build_adapters
from autonomy_controller.actions.adapters.base import Adapter
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.runtime import EngineName
from autonomy_controller.controller.ledger import Ledger
from autonomy_controller.controller.planning import ClaudeSettings
from autonomy_controller.controller.triage.ledger_view import ledger_view
from autonomy_controller.workflows.activities import IncidentActivities
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.contracts import TASK_QUEUE
from autonomy_controller.workflows.guard_provider import GuardProvider
from autonomy_controller.workflows.incident import IncidentWorkflow

ACTIVITY_SLOTS = 100
"""Activities one worker runs at once (Temporal's own default). With a slot free, an activity comes back with the
workflow task's answer (eager dispatch); with none, it goes through the server's task queue, which cost the dev
server 77 ms of CPU per incident at 16 slots against 63 ms here (docs/architecture.md, "Activity slots")."""

SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "autonomy_controller.controller", "autonomy_controller.actions", "autonomy_controller.workflows.contracts"
    )
)
"""Our own modules are imported once, not per workflow run: the workflow code stays sandboxed (non-deterministic
calls in it still fail), while the models and rules it uses, which are deterministic, are shared."""


class _CodeOnceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles a file once per process (again only when the file changes)."""

    _compiled: dict[str, tuple[int, CodeType]] = {}
    _lock = threading.Lock()

    def get_code(self, fullname: str) -> CodeType:
        stamp = os.stat(self.path).st_mtime_ns
        with self._lock:
            cached = self._compiled.get(self.path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        code = super().get_code(fullname)
        assert code is not None  # a source file always has code
        with self._lock:
            self._compiled[self.path] = (stamp, code)
        return code


class _SandboxedCodeCache(importlib.abc.MetaPathFinder):
    """Temporal's sandbox executes the workflow's own module afresh for every workflow run (and every replay after
    a cache eviction). Without a .pyc beside it (PYTHONDONTWRITEBYTECODE, a read-only install) that is a compile
    of workflows/incident.py each time, ~6 ms, measured as the largest single cost of a run in bench.loop. The
    module is still executed per run (sandboxed as before); only its compiled code is reused."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader) and spec.origin:
            spec.loader = _CodeOnceLoader(fullname, spec.origin)
        return spec


def _cache_workflow_code() -> None:
    if not any(isinstance(finder, _SandboxedCodeCache) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SandboxedCodeCache(frozenset({IncidentWorkflow.__module__})))


YOUNG_OBJECTS = 20_000
"""The cyclic collector's first threshold in a worker (Python's default: 700). An activity's objects live across
its awaits, thousands of allocations long: at 700 they were promoted, died old and brought on full collections.
bench.loop, second round: 4.5 ms of collection per incident at 700, ~1 ms at 10,000, ~0.4 ms at 50,000."""


def settle_heap() -> None:
    """For a process that runs a worker from now until it stops (`autonomy worker`, benchmarks): collect once,
    then move every object that survived start-up (modules, the compiled policy, the SDK, the connection pool)
    out of the cyclic collector's sight (gc.freeze), and collect the young generation less often (YOUNG_OBJECTS).
    Full collections otherwise walk that whole heap again and again: bench.loop measured ~6 ms of CPU per
    incident in them, ~1 ms after. Not for a process that starts many workers (a test run): what is frozen is
    never collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_OBJECTS, middle, old)


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
    max_concurrent_activities: int = ACTIVITY_SLOTS,
    extra_adapters: dict[str, Adapter] | None = None,
    claude: ClaudeSettings | None = None,
    claude_client: Any = None,
) -> AsyncIterator[WorkerParts]:
    """A running worker; stops (and closes the guard and ledger) on exit.

    `extra_adapters` adds or replaces adapters (an enforcement point configured by the caller; tests).
    `claude` / `claude_client` override the LLM planner's settings from the environment (tests).
    """
    _cache_workflow_code()
    guards = GuardProvider(settings, engine)
    ledger = Ledger.from_url(settings.ledger_url)
    guards.current()  # compile the policy before taking work, not on the first incident
    ledger_view(ledger).refresh()  # read the ledger's triage history once now, not inside the first plan
    adapters = {**build_adapters(settings, ledger), **(extra_adapters or {})}
    # one thread per activity slot, plus as many for local activities (guard, pre-flight, ledger notes)
    with ThreadPoolExecutor(max_workers=2 * max_concurrent_activities) as pool:
        activities = IncidentActivities(settings, guards, ledger, adapters, claude, claude_client, threads=pool)
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
            activities.close()
            guards.close()
            ledger.close()
