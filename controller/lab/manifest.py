"""The replay's ground truth: which source sent what, and the alerts the WAF raised about each.

`autonomy lab replay` writes one manifest (JSON, next to the audit log: `<lab>/waf/replay.json` unless told
otherwise). Its shape, version 1:

    {"version": 1, "started_at": ISO, "finished_at": ISO, "seconds": float,
     "rate": {"requested": float (0: unpaced), "achieved": float},
     "target": "198.51.100.1:8080", "netns": "attacker", "paranoia_level": 1,
     "inputs": [file, ...], "seed": int,
     "audit_log": {"path": str, "start_offset": int, "end_offset": int},   # this replay's bytes of the log
     "totals": {"requests": int, "sent": int, "no_answer": int, "statuses": {"200": int, "403": int}},
     "sources": {"198.51.100.23": {"label": "normal" | "anomalous", "session": str, "requests": int,
                                   "sent": int, "no_answer": int, "statuses": {"200": int, ...},
                                   "cut_off_at": int | null}}}

`requests` is the session's length, `sent` how many went out (fewer when `--limit` stopped the replay or the
source was cut off: no answer twice in a row, `cut_off_at` = the index of the first request not sent).
`alerts_of` reads the audit log between the two offsets through the real ingest parser and pairs each alert
with its source's label; every line of that slice whose client is no replay source is counted as foreign.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autonomy_controller.controller.ingest import IngestError, parse_line
from autonomy_controller.controller.lab.requests import Label
from autonomy_controller.controller.models import Alert

MANIFEST_VERSION = 1
MANIFEST_NAME = "replay.json"


@dataclass
class SourceRecord:
    label: Label
    session: str
    requests: int
    sent: int = 0
    no_answer: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    cut_off_at: int | None = None

    def count(self, status: int | None) -> None:
        self.sent += 1
        if status is None:
            self.no_answer += 1
        else:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


@dataclass
class Manifest:
    started_at: str
    finished_at: str
    seconds: float
    rate: dict[str, float]
    target: str
    netns: str
    paranoia_level: int
    inputs: list[str]
    seed: int
    audit_log: dict[str, Any]
    sources: dict[str, SourceRecord]
    version: int = MANIFEST_VERSION

    @property
    def totals(self) -> dict[str, Any]:
        statuses: Counter[str] = Counter()
        for record in self.sources.values():
            statuses.update(record.statuses)
        return {
            "requests": sum(r.requests for r in self.sources.values()),
            "sent": sum(r.sent for r in self.sources.values()),
            "no_answer": sum(r.no_answer for r in self.sources.values()),
            "statuses": dict(sorted(statuses.items())),
        }

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"version": data.pop("version"), **data, "totals": self.totals}

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        return path


def load_manifest(path: Path) -> Manifest:
    data = json.loads(path.read_text())
    if data.get("version") != MANIFEST_VERSION:
        raise ValueError(f"{path}: manifest version {data.get('version')!r}, this reader knows {MANIFEST_VERSION}")
    data.pop("totals", None)
    data["sources"] = {source: SourceRecord(**record) for source, record in data["sources"].items()}
    return Manifest(**data)


@dataclass
class Attributed:
    """The alerts of one replay, each with its source's label, and what could not be attributed."""

    alerts: list[tuple[Alert, Label]] = field(default_factory=list)
    foreign: int = 0
    """Audit lines in the replay's slice from an address that is not one of its sources (e.g. a health check)."""
    unparsed: list[str] = field(default_factory=list)


def audit_lines(path: Path, start: int, end: int) -> Iterator[tuple[int, str]]:
    """(byte offset, line) of the audit log between two offsets, whole lines only."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset = start
        while offset < end:
            raw = handle.readline()
            if not raw:
                return
            yield offset, raw.decode("utf-8", errors="replace")
            offset += len(raw)


def alerts_of(manifest: Manifest) -> Attributed:
    """Parse the replay's slice of the audit log with the ingest's own parser and attribute each alert."""
    result = Attributed()
    log = manifest.audit_log
    path = Path(log["path"])
    for offset, line in audit_lines(path, int(log["start_offset"]), int(log["end_offset"])):
        if not line.strip():
            continue
        try:
            parsed = parse_line(line, f"{path.name}@{offset}")
        except IngestError as exc:
            result.unparsed.append(str(exc))
            continue
        for alert in parsed.alerts:
            record = manifest.sources.get(alert.src_ip or "")
            if record is None:
                result.foreign += 1
            else:
                result.alerts.append((alert, record.label))
    return result


TOTALS_RULES = frozenset({"949110", "959100", "980130", "980140"})
"""CRS's anomaly-score totals: they fire with every blocked request and say nothing about what matched."""


def summarise(manifest: Manifest, attributed: Attributed, top: int = 10) -> dict[str, Any]:
    """Per label: sources, requests sent, 403s, alerts, sources with at least one alert, alerts per source
    (median, max), and the rules that fired most (without the totals rules)."""
    per_source = Counter(alert.src_ip for alert, _ in attributed.alerts)
    labels: dict[str, Any] = {}
    for label in ("normal", "anomalous"):
        records = {source: r for source, r in manifest.sources.items() if r.label == label}
        if not records:
            continue
        counts = sorted(per_source.get(source, 0) for source in records)
        rules = Counter(
            rule
            for alert, of in attributed.alerts
            if of == label
            for rule in alert.rule_ids
            if rule not in TOTALS_RULES
        )
        labels[label] = {
            "sources": len(records),
            "sent": sum(r.sent for r in records.values()),
            "blocked": sum(r.statuses.get("403", 0) for r in records.values()),
            "alerts": sum(counts),
            "sources_alerted": sum(1 for count in counts if count),
            "alerts_per_source": {"median": counts[len(counts) // 2], "max": counts[-1]},
            "top_rules": [[rule, count] for rule, count in rules.most_common(top)],
        }
    return {"labels": labels, "foreign_alerts": attributed.foreign, "unparsed_lines": len(attributed.unparsed)}
