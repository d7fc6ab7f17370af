"""Time to contain on the real loop: a small CSIC replay through the lab at L3, every part a real process.

`autonomy lab up` as the CLI runs it (Lab.up(services=True): the Temporal dev server, a worker enforcing on
nftables in the victim namespace, `ingest --follow` on the WAF's audit log, settle = the workflow's default),
in namespaces of its own (`tbl<pid>-*`) with a free Temporal port, CRS at PL1. Then `--benign` users and
`--attackers` from bench/triage_input.py's corpus are replayed at `--rate` requests per second in all (about
the per-source pace of the offline replay), and the ledger is read until every attack source's incidents are
decided (a verified block or a decision that does not run alone) or the wait ends.

Time to contain, per attack source contained alone: from its first alert (the earliest `observed_at` of its
incidents' ALERT records; the WAF stamps whole seconds, so this may start up to 1 s early) to the first ledger
VERIFICATION record of network.block_ip that held; also from the first 403 its client saw (PL1 answers every
alert with a 403, to the millisecond). Benign sources blocked: any benign source with a block executed or in
the nft set at the end (must be 0). The lab is torn down at the end, also on failure.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autonomy_controller.controller.lab import Lab, LabConfig
from autonomy_controller.controller.lab.loop import BLOCK
from autonomy_controller.controller.lab.replay import Sent, replay
from autonomy_controller.controller.lab.requests import read_requests
from autonomy_controller.controller.lab.sessions import DEFAULT_SEED, assign
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind
from autonomy_controller.controller.models import Level
from autonomy_controller.controller.processes import free_port
from bench.lab_ready import lab_unready
from bench.triage_decide import SETTLE_SECONDS
from bench.triage_input import CORPUS, FILES

WAIT_AFTER_REPLAY_SECONDS = 60.0
TICKET = "ticket.create"


def _when(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _source_of(key: str) -> str:
    return key.split(":", 1)[1]


def _verified(record: LedgerRecord) -> bool:
    p = record.payload
    return p.get("action") == BLOCK and p.get("purpose") == "execute" and p.get("ok") is True


def read_ledger(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Per source: first alert time, block verdicts, first verified block time, how many blocks ran, and per
    incident what it decided on (alerts, triage) and when."""
    sources: dict[str, dict[str, Any]] = {}
    for head in ledger.incidents():
        key = head.incident_key
        row = sources.setdefault(_source_of(key), _empty())
        incident: dict[str, Any] = {"first_alert": None, "alerts": 0, "block": None, "triage": None, "verified": None}
        for record in ledger.records(key):
            p = record.payload
            if record.kind is RecordKind.ALERT and p.get("observed_at"):
                at = _when(str(p["observed_at"]))
                incident["first_alert"] = min(at, incident["first_alert"] or at)
                incident["alerts"] += 1
            elif record.kind is RecordKind.DECISION and p.get("action") == BLOCK:
                incident["block"], incident["decided"] = p.get("verdict"), record.created_at.timestamp()
                row["block_decisions"] += 1
                triage = p.get("triage") or {}
                incident["triage"] = f"{triage.get('verdict')} {triage.get('confidence')}"
            elif record.kind is RecordKind.EXECUTION and p.get("request", {}).get("action") == BLOCK:
                row["ran"] += 1
            elif record.kind is RecordKind.EXECUTION and p.get("request", {}).get("action") == TICKET:
                row["tickets"] += 1
            elif record.kind is RecordKind.VERIFICATION and _verified(record):
                incident["verified"] = min(record.created_at.timestamp(), incident["verified"] or float("inf"))
        row["incidents"][key] = incident
        if incident["block"] is not None:
            row["verdicts"].append(incident["block"])
        for name in ("first_alert", "verified"):
            if incident[name] is not None:
                row[name] = min(incident[name], row[name] or incident[name])
    return sources


def _empty() -> dict[str, Any]:
    return {
        "first_alert": None, "verdicts": [], "verified": None, "ran": 0, "incidents": {}, "block_decisions": 0,
        "tickets": 0,
    }  # fmt: skip


def _decided(row: dict[str, Any] | None) -> bool:
    """Nothing more will happen alone: a verified block. (A block waiting for a person is not the end: a case
    is decided again as its evidence grows, controller/case/rounds.py, so the wait runs to its deadline for it.)"""
    return row is not None and row["verified"] is not None


def _relative(incident: dict[str, Any], start: float | None) -> dict[str, Any]:
    """An incident's times as seconds after its source's first alert, for people."""
    return {
        name: round(value - start, 2) if name in ("first_alert", "decided", "verified") and value and start else value
        for name, value in incident.items()
    }


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None, "min": None}
    return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2), "min": round(min(values), 2)}


def live(benign: int, attackers: int, rate: float, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    problem = lab_unready("bench.triage --live")
    if problem:
        raise SystemExit(problem)
    requests = [request for name in FILES for request in read_requests(CORPUS / name)]
    sessions = assign(requests, benign + attackers, attackers, 72, 200, seed)
    labels = {s.source: s.label for s in sessions}
    work = Path(tempfile.mkdtemp(prefix="autonomy-triage-live-"))
    config = LabConfig(
        root=work / "lab", prefix=f"tbl{os.getpid()}-", temporal_port=free_port(), level=Level.L3,
        settle_seconds=SETTLE_SECONDS, paranoia_level=1,
    )  # fmt: skip
    lab = Lab(config)
    first_403: dict[str, float] = {}

    def on_sent(sent: Sent) -> None:
        if sent.status == 403 and sent.source not in first_403:
            first_403[sent.source] = time.time() - sent.ms / 1000

    try:
        lab.up(services=True)
        manifest, _ = replay(lab, sessions, rate=rate, workers=2, timeout=1.0, on_sent=on_sent)
        attack = [s for s, label in labels.items() if label == "anomalous"]
        deadline = time.monotonic() + WAIT_AFTER_REPLAY_SECONDS
        with Ledger.from_url(f"sqlite:///{lab.state_dir / 'ledger.db'}") as ledger:
            while True:
                seen = read_ledger(ledger)
                if all(_decided(seen.get(s)) for s in attack) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        blocked_now = set(lab.blocked_addresses())
    finally:
        down = lab.down()
        shutil.rmtree(work, ignore_errors=True)
    return summarise(labels, seen, first_403, blocked_now, manifest.totals, down.leftovers, rate)


def summarise(
    labels: Mapping[str, str],
    seen: dict[str, dict[str, Any]],
    first_403: dict[str, float],
    blocked_now: set[str],
    totals: dict[str, Any],
    leftovers: list[str],
    rate: float,
) -> dict[str, Any]:
    per_source = {}
    from_alert, from_403 = [], []
    for source, label in sorted(labels.items()):
        row = seen.get(source) or _empty()
        entry = {"label": label, "block_verdicts": row["verdicts"], "block_ran": row["ran"], "contain_s": None}
        entry["incidents"] = {key: _relative(i, row["first_alert"]) for key, i in row["incidents"].items()}
        if row["verified"] is not None and row["first_alert"] is not None:
            entry["contain_s"] = round(row["verified"] - row["first_alert"], 2)
            if label == "anomalous":
                from_alert.append(entry["contain_s"])
                if source in first_403:
                    entry["contain_from_first_403_s"] = round(row["verified"] - first_403[source], 2)
                    from_403.append(entry["contain_from_first_403_s"])
        per_source[source] = entry
    attack = [s for s, label in labels.items() if label == "anomalous"]
    benign = [s for s, label in labels.items() if label == "normal"]
    benign_blocked = [s for s in benign if per_source[s]["block_ran"] or s in blocked_now]
    ttc, ttc403 = _stats(from_alert), _stats(from_403)
    result: dict[str, Any] = {
        "level": "L3",
        "paranoia_level": 1,
        "settle_seconds": SETTLE_SECONDS,
        "rate": rate,
        "totals": totals,
        "attack_sources": len(attack),
        "attack_contained_alone": len(from_alert),
        "attack_waiting_approval": sum(
            1 for s in attack if per_source[s]["contain_s"] is None and "approve" in per_source[s]["block_verdicts"]
        ),
        "time_to_contain_from_first_alert_s": ttc,
        "time_to_contain_from_first_403_s": ttc403,
        "benign_sources": len(benign),
        "benign_alerted": sum(1 for s in benign if s in seen),
        "benign_blocked": len(benign_blocked),
        "benign_waiting_approval": sum(1 for s in benign if "approve" in per_source[s]["block_verdicts"]),
        # one attacker, one case: per attack source, how many cases, block decisions, blocks run and tickets
        "per_attack_source": {
            name: _stats([float(f(seen.get(s) or _empty())) for s in attack])
            for name, f in (
                ("cases", lambda row: len(row["incidents"])),
                ("block_decisions", lambda row: row["block_decisions"]),
                ("blocks_run", lambda row: row["ran"]),
                ("tickets", lambda row: row["tickets"]),
            )
        },
        "lab_leftovers": leftovers,
        "sources": per_source,
    }
    result["text"] = (
        f"live (L3, PL1, settle {SETTLE_SECONDS:g} s, {rate:g} req/s; sent {totals['sent']}, statuses "
        f"{totals['statuses']}, no answer {totals['no_answer']}): attack sources contained alone "
        f"{len(from_alert)}/{len(attack)}, waiting for approval {result['attack_waiting_approval']}/{len(attack)}; "
        f"time to contain from first alert p50 {ttc['p50']} s, max {ttc['max']} s (from first 403: p50 "
        f"{ttc403['p50']} s, max {ttc403['max']} s); benign sources blocked {len(benign_blocked)}/{len(benign)} "
        f"(alerted {result['benign_alerted']}, waiting for approval {result['benign_waiting_approval']}); per attack "
        f"source (max): cases {result['per_attack_source']['cases']['max']}, block decisions "
        f"{result['per_attack_source']['block_decisions']['max']}, blocks run "
        f"{result['per_attack_source']['blocks_run']['max']}, tickets {result['per_attack_source']['tickets']['max']}"
        + (f"; LAB LEFT: {leftovers}" if leftovers else "")
    )
    return result
