"""A worker process for the chaos test (tests/test_chaos.py), killed with SIGKILL and restarted mid-run.

Its enforcement point keeps its effects on disk (one file per idempotency key, created with O_EXCL), so the
count of effects survives the kills and "executed exactly once" is counted where it matters: at the adapter.
Every call is also journaled, so the test can show that retries did happen and were absorbed.

    python -m tests.chaos_worker ADDRESS EFFECTS_DIR     (settings from AUTONOMY_* environment variables)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, ActionStatus, Adapter, VerifyOutcome
from autonomy_controller.controller.config import Settings
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.worker import connect, incident_worker

ENFORCED = ("network.block_ip", "network.unblock_ip", "host.isolate", "host.release")


@dataclass
class DiskEnforcement:
    action: str
    root: Path

    def _effect(self, request: ActionRequest) -> Path:
        return self.root / f"{hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:32]}.json"

    def execute(self, request: ActionRequest) -> ActionOutcome:
        with (self.root / "calls.jsonl").open("a") as journal:
            journal.write(json.dumps({"key": request.idempotency_key, "action": self.action}) + "\n")
        try:
            fd = os.open(self._effect(request), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return ActionOutcome(status=ActionStatus.ALREADY_DONE, detail="effect exists for this key")
        with os.fdopen(fd, "w") as out:
            json.dump({"key": request.idempotency_key, "action": self.action, "params": request.params}, out)
            out.flush()
            os.fsync(out.fileno())
        return ActionOutcome(status=ActionStatus.DONE, detail=f"{self.action} applied")

    def verify(self, request: ActionRequest, outcome: ActionOutcome) -> VerifyOutcome:
        exists = self._effect(request).exists()
        return VerifyOutcome(ok=exists, detail="effect present" if exists else "effect missing")


async def main(address: str, effects: Path) -> None:
    effects.mkdir(parents=True, exist_ok=True)
    adapters: dict[str, Adapter] = {name: DiskEnforcement(name, effects) for name in ENFORCED}
    client = await connect(TemporalConnection.resolve(address=address))  # TLS settings from AUTONOMY_TEMPORAL_*
    async with incident_worker(client, Settings(), extra_adapters=adapters):
        print("worker ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
