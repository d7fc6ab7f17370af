"""Accounting for an ingest run: what was read, what became alerts, what was skipped, what was dead-lettered.

Nothing is dropped silently: every record read ends in exactly one of alerts, skipped (a valid record that is
not an alert, counted by reason) or dead-lettered (kept byte for byte, with file, line and problem, for a human
to fix and replay).
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autonomy_controller.controller.ingest.formats import ParseResult
    from autonomy_controller.controller.models import Alert

log = logging.getLogger(__name__)

REPORT_ERROR_LIMIT = 100
"""Error messages kept on the report for display; the counts stay exact beyond it."""
_BASE64_CHUNK = 3 * 256 * 1024
"""Bytes encoded per step when a spooled (overlong) record is copied: a multiple of 3, so the pieces join."""


class DeadLetter:
    """Append-only JSONL file of records that could not be ingested, each kept exactly, so it can be replayed.

    One entry per record: `{"source", "line", "error", "text", "encoding", "bytes"}`. `text` is the record's
    exact bytes, without its line terminator: as a string when they are valid UTF-8 (`encoding: "utf-8"`),
    else base64 (`encoding: "base64"`); `bytes` is their length. Entries are written as ASCII JSON, so
    the file itself cannot carry control or bidi characters to a terminal. Nothing is cut: a line over the
    line limit was spooled to disk and is copied here in base64 pieces (memory stays flat).

    Entries written before `encoding` existed have only source/line/error/text, with text cut at 2,000
    characters and control characters escaped: `original_bytes` reads them as UTF-8 text, but they were never
    byte-exact and cannot be replayed as such.

    The file (and its folder) is created on the first write only, so a clean run leaves nothing behind. Each
    write opens, appends and closes: nothing to leak or flush in a long-running follow mode, and errors are
    rare enough that the cost does not matter.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0

    def write(self, *, source: str, line: int, error: str, data: bytes | IO[bytes]) -> None:
        """Append one entry; `data` is the record's bytes, or a binary file positioned at them."""
        head = {"source": source, "line": line, "error": error}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="ascii") as handle:
            if isinstance(data, bytes):
                handle.write(json.dumps({**head, **_encoded(data), "bytes": len(data)}) + "\n")
            else:
                prefix = json.dumps({**head, "encoding": "base64", "text": ""})[:-2]  # reopen the text string
                handle.write(prefix)
                size = 0
                while piece := data.read(_BASE64_CHUNK):
                    size += len(piece)
                    handle.write(base64.b64encode(piece).decode("ascii"))
                handle.write(f'", "bytes": {size}}}\n')
        self.count += 1


def _encoded(data: bytes) -> dict[str, str]:
    try:
        return {"text": data.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"text": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def original_bytes(entry: Mapping[str, Any]) -> bytes:
    """The record's exact bytes from one dead-letter entry (what a replay writes back as one line)."""
    text = entry["text"]
    if entry.get("encoding") == "base64":
        return base64.b64decode(text, validate=True)
    return str(text).encode("utf-8")


def read_dead_letters(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a dead-letter file, in order."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


@dataclass
class IngestReport:
    """Counts for one or more files read into the same report."""

    records_read: int = 0
    alerts: int = 0
    engine_events: int = 0
    """Alerts that name no address, asset or user (Suricata decoder events): valid, counted, never errors."""
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    claims: Counter[str] = field(default_factory=Counter)
    """Alerts read as claims (our Alert JSON on an untrusted channel), by the source they name: shown, so an
    operator whose own shipper sends them learns of --trust-native (docs/sensors.md, "Provenance")."""

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def count(self, result: ParseResult) -> None:
        """Account for one parsed record (its format, and its alerts or why it carries none)."""
        self.formats[result.format.value] += 1
        if result.skipped is not None:
            self.skipped[result.skipped] += 1
        self.alerts += len(result.alerts)
        self.engine_events += sum(1 for alert in result.alerts if names_nobody(alert))
        self.claims.update(alert.source for alert in result.alerts if alert.is_claim)

    def add_error(self, message: str) -> None:
        self.dead_lettered += 1
        if len(self.errors) < REPORT_ERROR_LIMIT:
            self.errors.append(message)
        log.warning("ingest: %s", message)

    def summary(self) -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        return (
            f"{self.records_read} records read: {self.alerts} alerts"
            + (f" ({self.engine_events} engine events without addresses)" if self.engine_events else "")
            + ", "
            f"{self.skipped_total} non-alert records skipped"
            + (f" ({skipped})" if skipped else "")
            + f", {self.dead_lettered} dead-lettered"
            + (f"; {self.claimed()}" if self.claims else "")
        )

    def claimed(self) -> str:
        named = ", ".join(f"{source} {n}" for source, n in sorted(self.claims.items())[:5])
        total = sum(self.claims.values())
        return (
            f"{total} alert(s) in our Alert JSON read as claims ({named}): triage reads none of their facts "
            "(--trust-native SOURCE for a feed you run)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "alerts": self.alerts,
            "engine_events": self.engine_events,
            "skipped": dict(sorted(self.skipped.items())),
            "dead_lettered": self.dead_lettered,
            "formats": dict(sorted(self.formats.items())),
            "errors": list(self.errors),
            "claims": dict(sorted(self.claims.items())),
        }


def names_nobody(alert: Alert) -> bool:
    """True for an alert with no address, asset or user: sensor engine noise that no action can target."""
    return not (alert.src_ip or alert.dst_ip or alert.asset or alert.user)
