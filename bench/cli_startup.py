"""CLI start-up: `autonomy --help` and `autonomy evaluate` of one alert, against `python -c pass`.

Each command is a fresh process, as a person or a script runs it; the three run in turn (pass, help, evaluate,
pass, help, ...) so a machine that speeds up or slows down during the run moves all three alike. Printed: the
median and spread of each, and each command's median minus the baseline's, next to its target:
`--help` under 0.3 s above the baseline, `evaluate` (embedded engine, one alert) under 0.8 s above it.
Run: `make bench` (or `.venv/bin/python -m bench.cli_startup [--runs N]`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autonomy_controller.controller.config import REPO_ROOT

ONE_ALERT = REPO_ROOT / "examples" / "alerts" / "native-alerts.jsonl"
TARGETS = {"autonomy --help": 0.3, "autonomy evaluate (1 alert)": 0.8}


def autonomy() -> list[str]:
    """The console script beside this interpreter (what `pip install` puts on PATH), else `python -m`."""
    script = Path(sys.executable).with_name("autonomy")
    return [str(script)] if script.exists() else [sys.executable, "-m", "autonomy_controller.controller.cli"]


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        alert = Path(tmp) / "one.jsonl"
        alert.write_text(ONE_ALERT.read_text().splitlines()[0] + "\n")
        env = {**os.environ, "AUTONOMY_STATE_DIR": str(Path(tmp) / "var")}
        env.pop("ANTHROPIC_API_KEY", None)  # the offline planner: no network, and the figure is ours
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "autonomy --help": [*autonomy(), "--help"],
            "autonomy evaluate (1 alert)": [*autonomy(), "evaluate", str(alert), "--engine", "embedded", "--json"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():  # one warm-up each: the first run pays for cold file caches
            wall(command, env)
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(wall(command, env))
    baseline = statistics.median(times["python -c pass"])
    print(f"CLI start-up, {args.runs} runs each, interleaved; wall seconds (median [min-max]), baseline python -c pass")
    print(f"{'command':<30} {'median':>8} {'min':>7} {'max':>7} {'over baseline':>14} {'target':>8}")
    for name, runs in times.items():
        median = statistics.median(runs)
        over = median - baseline
        target = TARGETS.get(name)
        verdict = "" if target is None else f"< {target:.1f} {'ok' if over < target else 'MISSED'}"
        print(f"{name:<30} {median:8.3f} {min(runs):7.3f} {max(runs):7.3f} {over:14.3f} {verdict:>8}")


if __name__ == "__main__":
    main()
