"""Cost of `history_and_feedback` (controller/triage/ledger_view.py) on a large ledger, SQLite and PostgreSQL.

Fills a fresh ledger with N records shaped like the loop's (per incident: 8 ModSecurity v3 alerts with their raw
audit record, a plan with triage, a containment decision, a person's vote and settlement, execution and
verification; a third of the settlements rejections), then times:
- cold: the first call in a process (folds every record of the kinds it reads),
- warm: a call with nothing appended since (the usual case between two plans: one head read, one empty page),
- after one incident: a call after one more incident's records were appended.

    .venv/bin/python -m bench.triage_history --records 10000 100000 [--postgres URL]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.ledger import Ledger, RecordKind, private_schema, sqlite_url
from autonomy_controller.controller.ledger.engine import write_transaction
from autonomy_controller.controller.ledger.writes import append_groups_entries, plain_payload
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.triage.ledger_view import LedgerView, history_and_feedback, incident_rules

RULES = ["942100", "942190", "920450", "941100", "932160", "930120", "913100", "949110"]


def _alert(n: int, src: str) -> dict[str, Any]:
    raw = {
        "transaction": {
            "client_ip": src,
            "messages": [{"message": "x" * 120, "details": {"ruleId": r}} for r in RULES[:4]],
        }
    }
    return Alert.model_validate(
        {
            "id": f"a{n}",
            "source": "modsecurity3",
            "provenance": "sensor",  # as the ModSecurity v3 adapter gives it
            "observed_at": datetime(2026, 1, 1, tzinfo=UTC),
            "category": ["sqli", "xss", "rce", "protocol"][n % 4],
            "severity": "critical",
            "confidence": 0.9,
            "src_ip": src,
            "rule_ids": [RULES[n % 8], RULES[(n + 3) % 8]],
            "url": f"/app/{n % 50}?id=1",
            "evidence": "GET /app?id=1' OR 1=1 " * 10,
            "raw": raw | {"padding": "p" * 1200},
        }
    ).model_dump(mode="json")


def _incident_records(i: int) -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    src = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    key = f"{['sqli', 'xss', 'rce', 'protocol'][i % 4]}:{src}"
    rows: list[tuple[str, str, dict[str, Any]]] = [("alert", "ingest", _alert(i * 8 + k, src)) for k in range(8)]
    action = {"id": "a1", "action": "network.block_ip", "params": {"ip": src}}
    triage = {"verdict": "malicious" if i % 2 else "suspicious", "confidence": 0.8}
    rows.append(
        ("plan", "planner:offline", {"actions": [action], "triage": triage, "triage_detail": {"x": "y" * 2000}})
    )
    decision = {"action_id": "a1", "action": "network.block_ip", "verdict": "approve", "policy_revision": "r",
                "risk": None, "scope": "default", "effective_level": "L2", "triage": triage}  # fmt: skip
    rows.append(("decision", "guard", decision))
    choice = "reject" if i % 3 == 0 else "approve"
    rows.append(("approval", "user:carol", {"action_id": "a1", "event": "vote", "approver": "carol", "choice": choice}))
    rows.append(("approval", "svc:controller", {"action_id": "a1", "event": "rejected" if i % 3 == 0 else "approved"}))
    if i % 3:
        req = {"action_id": "a1", "purpose": "execute", "params": {"ip": src}}
        rows.append(("execution", "svc:controller", {"request": req, "outcome": {"status": "done"}}))
        rows.append(("verification", "svc:controller", {"action_id": "a1", "purpose": "execute", "ok": True}))
    return key, [(k, a, p) for k, a, p in rows]


def fill(ledger: Ledger, records: int, start: int = 0) -> int:
    """Append incidents until the ledger holds `records`; one transaction per incident (a bench, not the loop)."""
    i = start
    while ledger.head().seq < records:
        key, rows = _incident_records(i)
        with write_transaction(ledger.engine) as conn:  # each (kind, actor) run appended as the ledger does
            for (kind, actor), run in itertools.groupby(rows, key=lambda row: (row[0], row[1])):
                entries = [plain_payload(RecordKind(kind), payload) for _kind, _actor, payload in run]
                append_groups_entries(conn, RecordKind(kind), actor, {key: entries})
        i += 1
    return i


def measure(url: str, records: int) -> dict[str, float]:
    with Ledger.from_url(url) as ledger:
        t0 = time.perf_counter()
        next_i = fill(ledger, records)
        filled = time.perf_counter() - t0
        key, rows = _incident_records(next_i + 1)
        alerts = [Alert.model_validate(p) for k, _, p in rows if k == "alert"]
        incident = incident_from_alerts(key, alerts)
        t0 = time.perf_counter()
        _history, feedback = history_and_feedback(ledger, incident)
        cold = time.perf_counter() - t0
        assert feedback is not None
        warm = []
        for _ in range(50):
            t0 = time.perf_counter()
            history_and_feedback(ledger, incident)
            warm.append(time.perf_counter() - t0)
        after = []
        for j in itertools.count(next_i + 2):
            fill(ledger, ledger.head().seq + 1, start=j)
            t0 = time.perf_counter()
            history_and_feedback(ledger, incident)
            after.append(time.perf_counter() - t0)
            if len(after) == 10:
                break
        view = LedgerView(ledger)
        t0 = time.perf_counter()
        view.refresh()
        view.feedback(*incident_rules(incident))
        fresh = time.perf_counter() - t0
        return {
            "records": ledger.head().seq,
            "fill_s": round(filled, 1),
            "cold_ms": round(cold * 1000, 1),
            "fresh_view_ms": round(fresh * 1000, 1),
            "warm_median_ms": round(statistics.median(warm) * 1000, 2),
            "after_one_incident_median_ms": round(statistics.median(after) * 1000, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--postgres", help="a PostgreSQL URL (an empty database or schema per run is best)")
    args = parser.parse_args()
    for n in args.records:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps({"backend": "sqlite", **measure(sqlite_url(Path(tmp) / "ledger.db"), n)}), flush=True)
        if args.postgres:
            with private_schema(args.postgres, "bench") as url:
                print(json.dumps({"backend": "postgresql", **measure(url, n)}), flush=True)


if __name__ == "__main__":
    main()
