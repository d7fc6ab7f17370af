"""The baseline workflow for bench/loop.py, in its own module so Temporal's sandbox can import it cleanly."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bare_noop")
async def bare_noop(n: int) -> int:
    return n


@workflow.defn(name="BareWorkflow")
class BareWorkflow:
    """The baseline: as many activities, local activities, patches and timers as one incident, doing nothing.

    A patch (workflow.patched) is Temporal's versioning: its marker and the TemporalChangeVersion search attribute
    it upserts are Temporal's cost, paid by any workflow that versions its code, so the baseline pays them too."""

    @workflow.run
    async def run(self, shape: list[int]) -> int:
        activities, local_activities, patches, timers = shape
        for n in range(patches):
            workflow.patched(f"bench-patch-{n}")
        for n in range(local_activities):
            await workflow.execute_local_activity(bare_noop, n, start_to_close_timeout=timedelta(seconds=10))
        for n in range(activities):
            await workflow.execute_activity(bare_noop, n, start_to_close_timeout=timedelta(seconds=10))
        for _ in range(timers):
            await workflow.sleep(3600)
        return activities
