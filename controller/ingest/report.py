"""Accounting for an ingest run: what was read, what became alerts, what was skipped, what was dead-lettered.

Nothing is dropped silently: every record read ends in exactly one of alerts, skipped (a valid record that is
not an alert, counted by reason) or dead-lettered (kept verbatim, with file, line and problem, for a human).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.ingest.normalise import clean_text

log = logging.getLogger(__name__)

DEAD_LETTER_TEXT_LIMIT = 2000
"""Characters of the offending line kept: enough to see the problem, bounded because it is untrusted."""
REPORT_ERROR_LIMIT = 100
"""Error messages kept on the report for display; the counts stay exact beyond it."""


class DeadLetter:
    """Append-only JSONL file of records that could not be ingested: {source, line, error, text}.

    The file (and its folder) is created on the first write only, so a clean run leaves nothing behind. Each
    write opens, appends and closes: nothing to leak or flush in a long-running follow mode, and errors are
    rare enough that the cost does not matter.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.count = 0

    def write(self, *, source: str, line: int, error: str, text: str) -> None:
        entry = {
            "source": source,
            "line": line,
            "error": error,
            "text": clean_text(text, DEAD_LETTER_TEXT_LIMIT),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.count += 1


@dataclass
class IngestReport:
    """Counts for one or more files read into the same report."""

    records_read: int = 0
    alerts: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def add_error(self, message: str) -> None:
        self.dead_lettered += 1
        if len(self.errors) < REPORT_ERROR_LIMIT:
            self.errors.append(message)
        log.warning("ingest: %s", message)

    def summary(self) -> str:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()))
        return (
            f"{self.records_read} records read: {self.alerts} alerts, "
            f"{self.skipped_total} non-alert records skipped"
            + (f" ({skipped})" if skipped else "")
            + f", {self.dead_lettered} dead-lettered"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "alerts": self.alerts,
            "skipped": dict(sorted(self.skipped.items())),
            "dead_lettered": self.dead_lettered,
            "formats": dict(sorted(self.formats.items())),
            "errors": list(self.errors),
        }
