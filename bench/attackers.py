"""Attacker profiles: fold cost per alert and memory at 100,000 distinct sources, bounded (controller/attackers/).

The loop's shape: alerts are appended to the ledger in batches and the profiles are folded after each batch
(workflows/client.py). Each alert is the lab's real Suricata EVE SQLi record (tests/data) through real ingest,
from its own source address, so every alert makes a new profile and eviction runs past the bound. Printed in
the same run: the ledger append per alert (the write the loop does anyway), the fold per alert and their ratio,
the fold's Python heap peak (tracemalloc) and the process's peak RSS, and the profiles kept.

    .venv/bin/python -m bench.attackers [--sources 100000] [--batch 200] [--max-profiles 10000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sqlalchemy import text

from autonomy_controller.controller.attackers import AttackerStore, Limits, tracking_config
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.ledger import Ledger, private_schema, sqlite_url
from autonomy_controller.controller.ledger.engine import read_snapshot

SAMPLE = REPO_ROOT / "tests" / "data" / "suricata7-lab-eve.jsonl"


def _payloads(count: int, start: int) -> list[tuple[str, dict[str, Any]]]:
    base = next(iter(read_alerts(SAMPLE))).model_dump(mode="json")
    rows = []
    for i in range(start, start + count):
        src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        rows.append((f"src:{src}", {**base, "id": f"b{i}", "src_ip": src}))
    return rows


def run(url: str, sources: int, batch: int, max_profiles: int) -> None:
    limits = Limits(max_profiles=max_profiles)
    config = tracking_config(Settings())
    with Ledger.from_url(url) as ledger:
        store = AttackerStore(ledger)
        append_s = fold_s = 0.0
        peak = folded = 0
        for start in range(0, sources, batch):
            rows = _payloads(min(batch, sources - start), start)
            began = time.perf_counter()
            for key, payload in rows:  # one record per source: the loop's batches are per incident
                ledger.append_many(key, "alert", "ingest", [(payload, f"alert:{key}:{payload['id']}")])
            append_s += time.perf_counter() - began
            if start // batch % 10 == 9:  # tracemalloc slows Python several times: a heap pass, not timed
                tracemalloc.start()
                store.fold(config, limits)
                peak = max(peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                continue
            began = time.perf_counter()
            store.fold(config, limits)
            fold_s += time.perf_counter() - began
            folded += len(rows)
        status = store.status()
        with read_snapshot(ledger.engine) as conn:
            stored = conn.execute(text("SELECT COALESCE(SUM(LENGTH(profile)), 0) FROM attacker_profile")).scalar_one()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    append_us, fold_us = append_s / sources * 1e6, fold_s / folded * 1e6
    print(
        f"{url.split(':')[0]:>10}  {sources:,} sources in batches of {batch}: ledger append {append_us:.0f} us/alert, "
        f"profile fold {fold_us:.0f} us/alert (fold/append {fold_us / append_us:.2f}); "
        f"profiles kept {status.profiles:,} of max {max_profiles:,} ({status.evicted:,} evicted), "
        f"{stored / 1e6:.1f} MB of profile JSON; fold heap peak {peak / 1e6:.1f} MB, process peak RSS {rss_mb:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--max-profiles", type=int, default=Limits().max_profiles)
    parser.add_argument("--postgres", help="also run on this PostgreSQL database (a private schema, dropped after)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(sqlite_url(Path(tmp) / "ledger.db"), args.sources, args.batch, args.max_profiles)
    if args.postgres:
        with private_schema(args.postgres, "bench_attackers") as url:
            run(url, args.sources, args.batch, args.max_profiles)


if __name__ == "__main__":
    main()
