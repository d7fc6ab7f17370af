"""Triage input: one replay of CSIC 2010 through the lab's real WAF per paranoia level, saved with its ground truth.

Per paranoia level (1 and 2 by default), in one lab (namespaces `triage<pid>-*`, torn down at the end):
`--benign` users each send `--run-length` consecutive normal requests and `--attackers` attackers each send
`--attack-run-length` consecutive anomalous ones, every one from its own address (controller/lab/sessions.py:
runs picked and addresses shuffled by `--seed`), through nginx + ModSecurity v3 + CRS 3.3.4 (Accept-Charset
allowed: controller/lab/waf.py). The WAF's audit lines of that replay go through the ingest's own parser.

Output, under `--out` (default var/triage-input/, not in git), one folder per level, `pl1/`, `pl2/`:

- `alerts.jsonl`: one alert per line in the project's own Alert JSON (controller/models.py `Alert`; any
  `autonomy evaluate/simulate/submit` reads it back): `id`, `observed_at`, `category`, `severity`,
  `confidence`, `src_ip` (the replay source), `rule_ids`, `signature`, `blocked`, `url`, `evidence`, `raw`
  (the audit transaction). Only the replay's sources' alerts, in audit-log order.
- `manifest.json`: the replay's manifest (controller/lab/manifest.py documents it); for triage the part that
  matters is `sources`: {src_ip: {"label": "normal" | "anomalous", "session", "requests", "sent",
  "statuses": {"200": n, "403": n}, "no_answer", "cut_off_at"}}. Every alert's `src_ip` is a key there.
- `audit.log`: the WAF's raw JSON audit lines of this replay (the manifest's `audit_log` points here).
- `summary.json`: the figures printed below, per label: sources, requests sent, 403s, alerts, sources with at
  least one alert, alerts per source (median, max), top rules (without CRS's anomaly totals 949110/980130),
  and for benign traffic the top 10 rules with how many benign sources each one hit.

Joining them for a confusion matrix: label = manifest["sources"][alert["src_ip"]]["label"]; a source with no
alert is in the manifest only.

Run as root: `.venv/bin/python -m bench.triage_input [--benign 40 --run-length 72 --attackers 10
--attack-run-length 200 --paranoia 1 2 --rate 0 --workers 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from autonomy_controller.controller.config import REPO_ROOT, shared_dir
from autonomy_controller.controller.lab import Lab, LabConfig
from autonomy_controller.controller.lab.manifest import TOTALS_RULES, Attributed, Manifest, alerts_of, summarise
from autonomy_controller.controller.lab.replay import replay
from autonomy_controller.controller.lab.requests import LabelledRequest, read_requests
from autonomy_controller.controller.lab.sessions import DEFAULT_SEED, assign
from bench.lab_ready import lab_unready

CORPUS = shared_dir() / "corpora" / "csic2010"
FILES = ("normalTrafficTraining.txt.gz", "anomalousTrafficPart1.txt.gz")


def benign_rules(attributed: Attributed, top: int = 10) -> list[dict[str, Any]]:
    """The rules that fired on benign traffic (without CRS's anomaly totals): alerts, distinct benign sources and
    the rule's message, most alerts first."""
    alerts: Counter[str] = Counter()
    sources: dict[str, set[str]] = {}
    messages: dict[str, str] = {}
    for alert, label in attributed.alerts:
        if label != "normal":
            continue
        messages.update(rule_messages(alert.raw))
        for rule in alert.rule_ids:
            if rule not in TOTALS_RULES:
                alerts[rule] += 1
                sources.setdefault(rule, set()).add(alert.src_ip or "")
    return [
        {"rule": rule, "alerts": count, "sources": len(sources[rule]), "message": messages.get(rule, "")}
        for rule, count in alerts.most_common(top)
    ]


def rule_messages(raw: dict[str, Any]) -> dict[str, str]:
    """rule id -> message, from the ModSecurity v3 transaction the alert keeps as `raw`."""
    found = {}
    for message in (raw.get("transaction") or {}).get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("details"), dict):
            found[str(message["details"].get("ruleId"))] = str(message.get("message", ""))
    return found


def keep_audit_slice(manifest: Manifest, target: Path) -> None:
    """Copy this replay's bytes of the audit log beside the manifest and point the manifest at the copy: the
    lab (and its log) is deleted at the end, the input must stand on its own."""
    log = manifest.audit_log
    with Path(log["path"]).open("rb") as source:
        source.seek(int(log["start_offset"]))
        data = source.read(int(log["end_offset"]) - int(log["start_offset"]))
    target.write_bytes(data)
    manifest.audit_log = {"path": str(target), "start_offset": 0, "end_offset": len(data)}
    manifest.write(target.parent / "manifest.json")


def one_level(lab: Lab, requests: list[LabelledRequest], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    sessions = assign(
        requests, args.benign + args.attackers, args.attackers, args.run_length, args.attack_run_length, args.seed
    )
    manifest, _ = replay(
        lab, sessions, rate=args.rate, workers=args.workers, timeout=args.timeout,
        inputs=[str(CORPUS / name) for name in FILES], seed=args.seed, manifest_path=out / "manifest.json",
    )  # fmt: skip
    keep_audit_slice(manifest, out / "audit.log")
    attributed = alerts_of(manifest)
    with (out / "alerts.jsonl").open("w") as handle:
        for alert, _ in attributed.alerts:
            handle.write(alert.model_dump_json() + "\n")
    summary = {
        "paranoia_level": lab.config.paranoia_level,
        "rate": manifest.rate,
        "seconds": manifest.seconds,
        "totals": manifest.totals,
        **summarise(manifest, attributed),
        "benign_rules": benign_rules(attributed),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def report(summary: dict[str, Any]) -> str:
    totals, labels = summary["totals"], summary["labels"]
    lines = [
        f"PL{summary['paranoia_level']}: sent {totals['sent']} of {totals['requests']} requests in "
        f"{summary['seconds']:.1f} s ({summary['rate']['achieved']}/s), statuses {totals['statuses']}, "
        f"no answer {totals['no_answer']}"
    ]
    for label, row in labels.items():
        per = row["alerts_per_source"]
        share = 100.0 * row["sources_alerted"] / row["sources"]
        lines.append(
            f"  {label:9} {row['sources']:3} sources, {row['sent']:5} sent, {row['blocked']:5} blocked, "
            f"{row['alerts']:5} alerts (per source median {per['median']}, max {per['max']}); "
            f"{row['sources_alerted']} of {row['sources']} sources ({share:.0f}%) with >= 1 alert"
        )
    lines.append("  rules on benign traffic (alerts / benign sources):")
    for rule in summary["benign_rules"] or [{"rule": "none", "alerts": 0, "sources": 0, "message": ""}]:
        lines.append(f"    {rule['rule']:>7} {rule['alerts']:4} / {rule['sources']:3}  {rule['message'][:80]}")
    if summary["foreign_alerts"] or summary["unparsed_lines"]:
        lines.append(f"  foreign alerts {summary['foreign_alerts']}, unparsed lines {summary['unparsed_lines']}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benign", type=int, default=40, help="benign users (sources sending normal runs)")
    parser.add_argument("--run-length", type=int, default=72, help="requests per benign user")
    parser.add_argument("--attackers", type=int, default=10, help="attack sources (anomalous runs)")
    parser.add_argument("--attack-run-length", type=int, default=200, help="requests per attacker")
    parser.add_argument("--paranoia", type=int, nargs="+", default=[1, 2], choices=[1, 2, 3, 4])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second in all (0: unpaced)")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "var" / "triage-input")
    args = parser.parse_args()
    problem = lab_unready("bench.triage_input")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    requests = [request for name in FILES for request in read_requests(CORPUS / name)]
    work = Path(tempfile.mkdtemp(prefix="autonomy-triage-lab-"))
    config = LabConfig(root=work / "lab", prefix=f"triage{os.getpid()}-")
    summaries = []
    try:
        for level in args.paranoia:
            lab = Lab(replace(config, paranoia_level=level))
            lab.up(services=False)  # a running WAF is reconfigured and reloaded at the new level
            out = args.out / f"pl{level}"
            out.mkdir(parents=True, exist_ok=True)
            summary = one_level(lab, requests, args, out)
            summaries.append(summary)
            print(report(summary), flush=True)
    finally:
        down = Lab(config).down()
        shutil.rmtree(work, ignore_errors=True)
        if down.leftovers:
            print(f"lab down left: {down.leftovers}", file=sys.stderr)
    print(f"written: {', '.join(str(args.out / f'pl{level}') for level in args.paranoia)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
