"""Triage governs autonomy (issue 12): what the controller contains alone, and what it asks people, measured on
one lab replay of CSIC 2010 with each source's ground truth.

Input: bench/triage_input.py's output (`--input`, one folder per paranoia level: alerts.jsonl + manifest.json),
or a fresh replay with `--run-replay` (root; the real WAF). For each paranoia level replayed and each level
L1-L5, the replay's incidents are decided offline as the workflow decides them (bench/triage_decide.py: the
product's incident key, the settle window from the first alert's observed_at, Guard.triage, the offline planner
with the verdict, Guard.decide_plan(triage=...)) with three configs (bench/triage_variants.py): `today` (no
triage bar, no noise playbook), `new` (shipped) and `new+history`. Per config and level, a confusion matrix
over sources (bench/triage_matrix.py) and the load on people: alerts per incident, incidents for a person per
1,000 alerts, and the reduction (alerts / items for a person).

With `--live` (root): the real loop in the lab at L3 (bench/triage_live.py): a smaller replay, time from each
attack source's first alert to its verified block, p50/max, and how many benign sources were blocked.

Goals at L3 (new): 0 benign sources contained without a person; >= 95% of attack sources contained or waiting
for approval; >= 10x fewer items for a person than alerts. Every figure is from this one run; the JSON
(`--json`, default var/bench/triage.json) holds them all.

Run: `.venv/bin/python -m bench.triage [--input var/triage-input] [--run-replay] [--live]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autonomy_controller.controller.case.grouping import incident_from_alerts, incident_key
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.lab.manifest import alerts_of, load_manifest
from autonomy_controller.controller.models import Alert, Level
from autonomy_controller.controller.triage import load_triage_model, triage
from autonomy_controller.controller.triage.engine import guard_summary
from bench.triage_decide import SETTLE_SECONDS, decide_runs, workflow_runs
from bench.triage_matrix import Matrix, matrix, table
from bench.triage_variants import shipped, variants

DEFAULT_INPUT = REPO_ROOT / "var" / "triage-input"
WHOLE_INCIDENT = 86_400.0
"""A settle window longer than any replay: the incident's every alert is in the decision."""
GOAL_L3 = {"benign_contained_alone": 0, "attack_handled_share": 0.95, "reduction": 10.0}


def goals(m: Matrix) -> dict[str, bool]:
    return {
        "0 benign contained alone": m.benign_contained_alone == GOAL_L3["benign_contained_alone"],
        ">= 95% attack sources handled": (m.attack_handled_share or 0) >= GOAL_L3["attack_handled_share"],
        ">= 10x fewer items for a person": (m.reduction or float("inf")) >= GOAL_L3["reduction"],
    }


def ingest_caveats(folder: Path, alerts: list[Alert], labels: Mapping[str, str]) -> dict[str, Any]:
    """What the live loop would not see of this input: audit lines the ingest refused when the input was made
    (summary.json), and alerts whose audit line is not valid UTF-8 (the follow ingest dead-letters those; the
    input's reader decoded them with replacement), per label."""
    by_id = {alert.id: labels.get(alert.src_ip or "", "?") for alert in alerts}
    not_utf8: Counter[str] = Counter()
    for line in (folder / "audit.log").read_bytes().splitlines():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            unique = json.loads(line.decode("utf-8", "replace")).get("transaction", {}).get("unique_id")
            if f"modsecurity3:{unique}" in by_id:
                not_utf8[by_id[f"modsecurity3:{unique}"]] += 1
    summary = json.loads((folder / "summary.json").read_text())
    return {"unparsed_audit_lines": summary.get("unparsed_lines"), "alerts_from_non_utf8_lines": dict(not_utf8)}


def whole_sessions(alerts: list[Alert], labels: Mapping[str, str]) -> dict[str, Any]:
    """Each source's whole session triaged as one case (however long it runs): per label, the verdicts, how many
    the guard's summary lets L3 contain alone (malicious at >= 0.8: a benign one is a user blocked alone), and
    the attacks left as noise (de-noised away: nobody sees them)."""
    model = load_triage_model(REPO_ROOT / "levels")
    by_case: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_case.setdefault(incident_key(alert), []).append(alert)
    rows: dict[str, dict[str, Any]] = {}
    for key, members in by_case.items():
        result = triage(incident_from_alerts(key, members), model)
        summary = guard_summary(result, model)
        row = rows.setdefault(labels.get(members[0].src_ip or "", "?"), {"verdicts": Counter(), "alone_at_L3": 0})
        row["verdicts"][result.verdict.value] += 1
        row["alone_at_L3"] += summary.verdict == "malicious" and summary.confidence >= 0.8
        row["max_score"] = max(row.get("max_score", 0.0), result.score)
    return {label: {**row, "verdicts": dict(row["verdicts"])} for label, row in rows.items()}


def one_paranoia_level(folder: Path, settle: float, workdir: Path) -> dict[str, Any]:
    manifest = load_manifest(folder / "manifest.json")
    labels = {source: record.label for source, record in manifest.sources.items()}
    # The replay's audit lines through today's ingest (alerts.jsonl is the Alert JSON of the day it was made:
    # read back it would be a claim, docs/sensors.md "Provenance", and miss every later parser fix).
    alerts = [alert for alert, _ in alerts_of(manifest).alerts]
    runs = workflow_runs(alerts, settle=settle)
    levels = list(Level)
    result: dict[str, Any] = {"paranoia_level": manifest.paranoia_level, "folder": str(folder), "configs": {}}
    result["ingest_caveats"] = ingest_caveats(folder, alerts, labels)
    rows: list[tuple[str, str, Matrix]] = []
    per_config = {}
    for variant in variants(Settings(), workdir / folder.name):
        outcomes = decide_runs(runs, variant, levels)
        per_config[variant.name] = {level: matrix(outcomes[level], labels) for level in levels}
        result["configs"][variant.name] = {
            "what": variant.what,
            "levels": {level.value: per_config[variant.name][level].as_json() for level in levels},
            "incidents_at_L3": [o.__dict__ for o in outcomes[Level.L3]],
        }
    for level in levels:
        rows += [(level.value, name, per_config[name][level]) for name in per_config]
    new_l3 = per_config["new"][Level.L3]
    result["goals_at_L3_new"] = goals(new_l3)
    # What-if, not what the workflow does: each incident decided on all its alerts (as if it re-decided while
    # its evidence grows), to show what the single decision at the end of the settle window leaves on the table.
    whole = decide_runs(workflow_runs(alerts, settle=WHOLE_INCIDENT), shipped(Settings()), [Level.L3])
    result["what_if_whole_incident_L3_new"] = matrix(whole[Level.L3], labels).as_json()
    result["whole_sessions"] = whole_sessions(alerts, labels)
    result["table"] = table(
        f"PL{manifest.paranoia_level}: {new_l3.benign} benign + {new_l3.attack} attack sources, "
        f"{new_l3.alerts} alerts, {new_l3.incidents} incidents ({new_l3.alerts_per_incident} alerts per incident), "
        f"settle {settle:g} s",
        rows,
    )
    return result


def run_replay(out: Path, extra: list[str]) -> None:
    """bench/triage_input.py as its own process (root, the real WAF): one replay per paranoia level."""
    command = [sys.executable, "-m", "bench.triage_input", "--out", str(out), *extra]
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="bench.triage_input's --out folder")
    parser.add_argument("--run-replay", action="store_true", help="run bench.triage_input first (root)")
    parser.add_argument("--replay-args", default="", help="extra arguments for bench.triage_input, one string")
    parser.add_argument("--settle", type=float, default=SETTLE_SECONDS, help="the workflow's settle window (s)")
    parser.add_argument("--live", action="store_true", help="also measure time to contain in the lab (root)")
    parser.add_argument("--live-benign", type=int, default=10)
    parser.add_argument("--live-attackers", type=int, default=3)
    parser.add_argument("--live-rate", type=float, default=100.0, help="requests per second in all, live replay")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "var" / "bench" / "triage.json")
    args = parser.parse_args(argv)
    if args.run_replay:
        if os.geteuid() != 0:
            print("--run-replay needs root (the lab's namespaces)", file=sys.stderr)
            return 2
        run_replay(args.input, args.replay_args.split())
    folders = sorted(p.parent for p in args.input.glob("pl*/manifest.json"))
    if not folders:
        print(f"no replay under {args.input}: run with --run-replay (root) or bench.triage_input", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"settle_seconds": args.settle, "goals_at_L3": GOAL_L3, "paranoia_levels": []}
    with tempfile.TemporaryDirectory(prefix="autonomy-triage-bench-") as work:
        for folder in folders:
            result = one_paranoia_level(folder, args.settle, Path(work))
            report["paranoia_levels"].append(result)
            print(result["table"], flush=True)
            verdicts = ", ".join(
                f"{goal}: {'PASS' if ok else 'FAIL'}" for goal, ok in result["goals_at_L3_new"].items()
            )
            print(f"  L3 (new): {verdicts}", flush=True)
            whole = result["what_if_whole_incident_L3_new"]
            print(
                f"  what-if (L3 new, each incident decided on all its alerts): attack alone "
                f"{whole['attack_contained_alone']}/{whole['attack']}, benign alone "
                f"{whole['benign_contained_alone']}/{whole['benign']}",
                flush=True,
            )
            print(f"  each source's whole session triaged: {result['whole_sessions']}", flush=True)
            print(f"  input: {result['ingest_caveats']}\n", flush=True)
    if args.live:
        from bench.triage_live import live  # the lab's imports only when asked for

        report["live"] = live(args.live_benign, args.live_attackers, args.live_rate)
        print(report["live"]["text"], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
