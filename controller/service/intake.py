"""One request body -> alerts and bad records, read by controller/ingest's own reader (no second parser).

The body is spooled to a temporary file and handed to `read_alerts`, so every layout and format `autonomy
submit` reads is read here the same way: one JSON object, a JSON array, NDJSON, each record's format detected
on its own, a bad record costing only itself. `application/x-ndjson` (or jsonl) forces JSON Lines, as the
`.ndjson` suffix does for a file. Nothing is written anywhere here: the caller writes the alerts to the ledger
first, then the bad records to the dead-letter file, and answers 202 only after both (ingest_api.py).
"""

from __future__ import annotations

import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from autonomy_controller.controller.ingest import TRUST_NOTHING, DeadLetter, IngestReport, TrustedSources, read_alerts
from autonomy_controller.controller.ingest.reader import GZIP_MAGIC
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.service.config import ServiceConfig

LINES_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl"})


class BodyRefused(ValueError):
    """The whole request is refused (413/400/415): nothing of it was written. The message names the limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BadRecord:
    index: int
    """0-based position of the record among the body's records (blank lines are not records)."""
    line: int
    reason: str
    data: bytes


@dataclass
class Intake:
    alerts: list[Alert] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    report: IngestReport = field(default_factory=IngestReport)


class _Collector(DeadLetter):
    """Stands in for the dead-letter file while reading: keeps each bad record (index, line, reason, bytes) in
    memory, so nothing is dead-lettered before the request is known to be accepted. Never writes its path."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(Path(os.devnull))
        self.report = report
        self.bad: list[BadRecord] = []

    def write(self, *, source: str, line: int, error: str, data: bytes | IO[bytes]) -> None:
        raw = data if isinstance(data, bytes) else data.read()  # an overlong line, bounded by the body limit
        self.bad.append(BadRecord(self.report.records_read - 1, line, error, raw))


def inflate(body: bytes, config: ServiceConfig) -> bytes:
    """The body as its records: gunzipped (by its magic bytes, as the reader does) within the inflated limit."""
    if not body.startswith(GZIP_MAGIC):
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    limit = config.max_decompressed_bytes
    try:
        out = inflater.decompress(body, limit + 1)
        while inflater.unconsumed_tail and len(out) <= limit:
            out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
    except zlib.error as exc:
        raise BodyRefused(400, f"gzip body does not decompress: {exc}") from exc
    if len(out) > limit:
        raise BodyRefused(413, f"gzip body inflates past the {limit}-byte max_decompressed_bytes limit")
    if not inflater.eof:
        raise BodyRefused(400, "gzip body is truncated (the gzip stream does not end)")
    return out


def read_body(body: bytes, content_type: str, config: ServiceConfig, trusted: TrustedSources = TRUST_NOTHING) -> Intake:
    """Alerts and bad records from one body; BodyRefused when the request as a whole breaks a limit. `trusted`:
    the sources the sender's token may speak for (tokens.py, `trust_native`)."""
    data = inflate(body, config)
    if not data.strip():
        raise BodyRefused(400, "the body holds no records")
    media = content_type.split(";")[0].strip().lower()
    suffix = ".ndjson" if media in LINES_TYPES else ".json"
    intake = Intake()
    collector = _Collector(intake.report)
    with tempfile.TemporaryDirectory(prefix="autonomy-http-") as folder:
        path = Path(folder) / f"body{suffix}"
        path.write_bytes(data)
        for alert in read_alerts(path, dead_letter=collector, report=intake.report, trusted=trusted):
            intake.alerts.append(alert)
            _check_records(intake.report, config)
        _check_records(intake.report, config)
    intake.bad = collector.bad
    return intake


def _check_records(report: IngestReport, config: ServiceConfig) -> None:
    if report.records_read > config.max_records:
        raise BodyRefused(413, f"more than {config.max_records} records in one request (max_records): split the batch")
