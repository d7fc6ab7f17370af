"""Alert ingest: sensor records in (ModSecurity v2/v3, the CRS corpus, Suricata EVE, nginx JSON access log,
our own Alert JSON), normalised `Alert`s out, every bad record accounted for.

    report = IngestReport()
    dead_letter = DeadLetter(Path("var/dead-letter.jsonl"))
    for alert in read_alerts(Path("eve.json"), dead_letter=dead_letter, report=report):
        ...
    print(report.summary())

Module map: `reader` (files, streaming), `formats` (detection and dispatch), one module per format, `waf`
(what the ModSecurity formats share), `classify` (category, severity, confidence: the only place that decides
them), `normalise` (bounding untrusted text, building the Alert), `report` (counts and the dead-letter file),
`decoding` (strict bytes -> text -> JSON for one record), `lines` (JSON Lines framing, shared with follow).
"""

from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.formats import (
    Format,
    ParseResult,
    detect_format,
    parse_line,
    parse_record,
    parse_value,
)
from autonomy_controller.controller.ingest.native import TRUST_NOTHING, TrustedSources, trusted_sources
from autonomy_controller.controller.ingest.reader import read_alerts
from autonomy_controller.controller.ingest.report import DeadLetter, IngestReport, original_bytes, read_dead_letters

__all__ = [
    "TRUST_NOTHING",
    "DeadLetter",
    "Format",
    "IngestError",
    "IngestReport",
    "ParseResult",
    "TrustedSources",
    "detect_format",
    "original_bytes",
    "parse_line",
    "parse_record",
    "parse_value",
    "read_alerts",
    "read_dead_letters",
    "trusted_sources",
]
