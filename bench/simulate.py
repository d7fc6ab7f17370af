"""`autonomy simulate` at scale: throughput on the CRS corpus, and flat memory on a 100,000-alert stream.

1. The 2,354-alert CRS 3.3.4 regression corpus (../shared/corpora) replayed across L1-L5 with the embedded
   engine: alerts/s = alerts / wall time, where the wall time covers ingest (gzip + parsing), grouping,
   planning and the five guard passes (opening the guard is timed separately: it is paid once per run).
   Target: >= 1,000 alerts/s.
2. A synthetic stream of 100,000 native alerts generated lazily (many sources and categories, in bursts),
   replayed the same way; peak RSS (ru_maxrss) printed at 10k, 50k and 100k alerts: it must not grow with
   the input, because only counters and the bounded set of open incidents are held.

Run: `.venv/bin/python -m bench.simulate [--corpus PATH] [--synthetic N]`.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from autonomy_controller.controller.config import Settings, shared_dir
from autonomy_controller.controller.ingest import read_alerts
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.oversight.simulate import SimConfig, Simulation, stream_incidents, synthetic_alerts

CORPUS = shared_dir() / "corpora" / "crs-3.3.4-regression-alerts.jsonl.gz"
CHECKPOINTS = (10_000, 50_000, 100_000)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def corpus_throughput(path: Path) -> None:
    started = time.perf_counter()
    with Simulation(SimConfig("shipped", Settings())) as simulation:
        opened = time.perf_counter()
        for _ in simulation.run(stream_incidents(read_alerts(path))):
            pass
        finished = time.perf_counter()
    result = simulation.result
    decisions = sum(t.decisions for t in result.tallies.values())
    rate = result.alerts / (finished - opened)
    print(
        f"corpus {path.name}: {result.alerts} alerts, {result.incidents} incidents, {decisions} decisions "
        f"at {len(result.levels)} levels in {finished - opened:.2f} s (guard opened in {opened - started:.2f} s): "
        f"{rate:,.0f} alerts/s ({result.alerts / (finished - started):,.0f} alerts/s counting the opening) "
        f"-> {'PASS' if rate >= 1_000 else 'FAIL'} (>= 1,000 alerts/s)"
    )


def current_rss_mib() -> float | None:
    """Resident set size now (Linux /proc), to show next to the peak: None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _counted(alerts: Iterator[Alert], on_count: dict[int, tuple[float, float | None]]) -> Iterator[Alert]:
    """Pass alerts through, noting peak and current RSS when each checkpoint count has been read."""
    for seen, alert in enumerate(alerts, start=1):
        yield alert
        if seen in CHECKPOINTS:
            on_count[seen] = (peak_rss_mib(), current_rss_mib())


def synthetic_memory(count: int) -> None:
    rss: dict[int, tuple[float, float | None]] = {}
    baseline = peak_rss_mib()
    started = time.perf_counter()
    with Simulation(SimConfig("shipped", Settings())) as simulation:
        opened_rss = peak_rss_mib()
        for _ in simulation.run(stream_incidents(_counted(synthetic_alerts(count), rss))):
            pass
    elapsed = time.perf_counter() - started
    result = simulation.result
    print(
        f"synthetic: {result.alerts} alerts, {result.incidents} incidents in {elapsed:.1f} s "
        f"({result.alerts / elapsed:,.0f} alerts/s); peak RSS before {baseline:.0f} MiB, "
        f"after opening the guard {opened_rss:.0f} MiB"
    )
    for seen in sorted(rss):
        peak, now = rss[seen]
        print(f"  after {seen:>7,} alerts read: peak RSS {peak:.1f} MiB, current {now or 0:.1f} MiB")
    print(f"  peak RSS at the end: {peak_rss_mib():.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--synthetic", type=int, default=CHECKPOINTS[-1], help="alerts in the synthetic stream")
    args = parser.parse_args(argv)
    # the stream first: a peak left behind by the corpus run would hide its growth
    synthetic_memory(args.synthetic)
    if args.corpus.is_file():
        corpus_throughput(args.corpus)
    else:
        print(f"corpus {args.corpus} not found: skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
