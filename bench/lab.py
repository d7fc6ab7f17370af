"""Alert-to-verified-block latency in the lab: a real SQLi, the real WAF, real nft, 20 runs.

Each run: curl sends the SQLi from the attacker namespace (the clock starts just before curl) -> nginx +
ModSecurity + CRS answer 403 and write a JSON audit line -> the follow ingest (in the background, polling the
file) submits it -> the incident workflow plans, guards, pre-flights and runs network.block_ip on nft in the
victim namespace -> the adapter verifies (element read back, drop rules present, the attacker's connect times
out, the benign host's connects) -> the VERIFICATION record with ok=true is in the ledger (the clock stops at
that record's timestamp). Between runs the workflow's TTL is fast-forwarded: the revert removes the element, the
incident closes, and the next run starts from a clean blocklist as a new incident run.

The runs cycle through the five attacks (sqli, xss, traversal, cmdi, scanner), each its own incident: the L3
blast-radius budget allows 5 network containments per incident (levels/L3.yaml), and the 6th block of one
incident key is rightly held. The source is always the attacker's own address, so every verification runs the
real probe (a connect from the blocked address that must time out).

The phases printed beside the total come from the same incident's ledger records: ingest (curl -> ALERT record),
decide (-> DECISION), act (-> EXECUTION), verify (-> VERIFICATION). Settle is 0 here: `autonomy lab up` adds its
configured settle time (1 s by default) on top. Verification includes the probe's wait for the blocked connect
to time out (the lab's probe timeout, 0.5 s): a dropped SYN can only be told from a slow one by waiting.

The levels are the shipped ones without their triage bar (bench/triage_variants.py): one request never meets it,
so this measures the path from alert to verified block, not triage.

Run as root: `.venv/bin/python -m bench.lab [--runs 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.lab import ATTACKS, Lab, LabConfig
from autonomy_controller.controller.lab.loop import BLOCK, LabLoop, block_status, lab_loop
from autonomy_controller.controller.ledger import RecordKind
from autonomy_controller.workflows.contracts import ActionStatus
from bench.lab_ready import lab_unready
from bench.triage_variants import without_triage

ATTACKER = "198.51.100.66"
CYCLE = ("sqli", "xss", "traversal", "cmdi", "scanner")
TTL = timedelta(hours=1, seconds=5)
"""Longer than every playbook's block TTL in the cycle (1 h for web attacks, 15 min for a scanner)."""
PHASES = (("ingest", RecordKind.ALERT), ("decide", RecordKind.DECISION), ("act", RecordKind.EXECUTION))


@dataclass(frozen=True)
class Run:
    attack: str
    total: float
    phases: dict[str, float]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest rank: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def one_run(loop: LabLoop, name: str) -> Run:
    """One attack -> verified block, then the TTL revert."""
    lab = loop.lab
    key = f"{ATTACKS[name].category}:{ATTACKER}"
    seen = len(loop.ledger.records(key))
    sent = await asyncio.to_thread(lab.attack, name)
    if sent.status != 403:
        raise RuntimeError(f"the WAF answered {sent.describe()}, expected 403 (is the attacker still blocked?)")
    verified = None
    deadline = asyncio.get_running_loop().time() + 60
    while verified is None:
        if asyncio.get_running_loop().time() > deadline:
            steps = "; ".join(f"{r.kind.value}: {str(r.payload)[:300]}" for r in loop.ledger.records(key)[seen:])
            status = await loop.status(key)
            raise RuntimeError(f"no verified block within 60 s; workflow: {status}; ledger since: {steps or 'nothing'}")
        await asyncio.sleep(0.01)
        records = loop.ledger.records(key)[seen:]
        verified = next(
            (
                r
                for r in records
                if r.kind is RecordKind.VERIFICATION and r.payload.get("action") == BLOCK and r.payload.get("ok")
            ),
            None,
        )
    phases = {}
    for phase, kind in PHASES:
        first = next(r for r in records if r.kind is kind)
        phases[phase] = first.created_at.timestamp() - sent.started_at
    phases["verify"] = verified.created_at.timestamp() - sent.started_at
    if lab.blocked_addresses() != [ATTACKER]:
        raise RuntimeError(f"verified, but nft holds {lab.blocked_addresses()}")
    await loop.wait_block(key, ActionStatus.AWAITING_REVERT)
    await loop.fast_forward(key, TTL)
    final = await loop.result(key)
    if block_status(final) is not ActionStatus.REVERTED or lab.blocked_addresses():
        raise RuntimeError(f"the revert did not clear the block: {block_status(final)}, {lab.blocked_addresses()}")
    return Run(name, phases["verify"], phases)


async def measure(lab: Lab, state: Path, runs: int) -> list[Run]:
    results: list[Run] = []
    # One request per run measures the enforcement path; a single request never meets L3's triage bar (it waits
    # for a person: bench/triage.py measures time to contain with triage), so the levels here have no bar.
    settings = without_triage(Settings(state_dir=state), state / "config")
    async with lab_loop(lab, settings) as loop, loop.following(settle=0.0, quiet=0.5):
        for n in range(runs):
            run = await one_run(loop, CYCLE[n % len(CYCLE)])
            results.append(run)
            phases = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in run.phases.items())
            print(f"run {n + 1:2d} {run.attack:9}: {run.total * 1000:6.0f} ms  ({phases} ms after curl)", flush=True)
    return results


def summary(results: list[Run]) -> str:
    lines = [f"alert -> verified block over {len(results)} runs (ms):"]
    rows = [("total", [r.total for r in results])]
    rows += [(name, [r.phases[name] for r in results]) for name in ("ingest", "decide", "act", "verify")]
    lines.append(f"  {'':8} {'p50':>7} {'p95':>7} {'min':>7} {'max':>7}")
    for name, values in rows:
        figures = [percentile(values, 0.5), percentile(values, 0.95), min(values), max(values)]
        lines.append(f"  {name:8} " + " ".join(f"{v * 1000:7.0f}" for v in figures))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    problem = lab_unready("bench.lab")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="autonomy-bench-lab-"))
    lab = Lab(LabConfig(root=root / "lab", prefix=f"bench{os.getpid()}-"))
    try:
        lab.up(services=False)
        results = asyncio.run(measure(lab, root / "var", args.runs))
    finally:
        report = lab.down()
        shutil.rmtree(root, ignore_errors=True)
        if report.leftovers:
            print(f"lab down left: {report.leftovers}", file=sys.stderr)
    print(summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
