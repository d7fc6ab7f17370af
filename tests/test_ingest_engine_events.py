"""Suricata engine events (decoder/stream rules on packets without decodable addresses) are sensor output, not
malformed input; damaged records that merely lack addresses are still dead-lettered.

`data/suricata7-decoder-events.jsonl` is verbatim Suricata 7.0.10 output (`suricata -r bad.pcap -k none -S
/etc/suricata/rules/decoder-events.rules`) over three hand-made broken IPv4 packets: the EVE alerts carry no
src_ip/dest_ip at all, exactly as the issue's 931 corpus events do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.ingest import original_bytes, read_dead_letters
from autonomy_controller.controller.ingest.suricata import ENGINE_CONFIDENCE
from autonomy_controller.controller.models import Category, Severity
from tests.conftest import SHARED
from tests.test_ingest import ingest

DATA = Path(__file__).parent / "data"
DECODER = DATA / "suricata7-decoder-events.jsonl"
EVE = SHARED / "samples" / "suricata-eve.jsonl"


def decoder_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DECODER.read_text().splitlines()]


def test_decoder_events_become_low_addressless_protocol_alerts(tmp_path: Path) -> None:
    alerts, report, dead_letter = ingest(DECODER, tmp_path)
    assert (len(alerts), report.dead_lettered, dead_letter.count) == (3, 0, 0)
    assert report.engine_events == 3 and report.as_dict()["engine_events"] == 3
    assert "3 engine events without addresses" in report.summary()
    for alert in alerts:
        assert (alert.src_ip, alert.dst_ip, alert.dst_port) == (None, None, None)
        assert alert.category is Category.PROTOCOL
        assert alert.severity.rank <= Severity.LOW.rank and alert.confidence <= ENGINE_CONFIDENCE
        assert "engine event" in alert.evidence
    first = alerts[0]
    assert (first.rule_ids, first.signature) == (["2200002"], "SURICATA IPv4 total length smaller than header size")
    assert len({a.id for a in alerts}) == 3  # no flow_id: ids come from the content, still distinct


def test_an_engine_event_never_rises_above_low(tmp_path: Path) -> None:
    """A site rule may give a decoder event priority 1: with nobody named, it still stays low and weak."""
    record = decoder_records()[0]
    record["alert"]["severity"] = 1
    record["alert"]["metadata"] = {"signature_severity": ["Critical"]}
    path = tmp_path / "loud.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (alert,), _, _ = ingest(path, tmp_path)
    assert alert.severity is Severity.LOW and alert.confidence <= ENGINE_CONFIDENCE


def test_addressed_alerts_are_unchanged_beside_engine_events(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(EVE.read_text() + DECODER.read_text())
    alerts, report, _ = ingest(mixed, tmp_path)
    addressed = [a for a in alerts if a.src_ip]
    assert (len(addressed), report.engine_events, report.dead_lettered) == (21, 3, 0)
    assert all(a.dst_ip and "engine event" not in a.evidence for a in addressed)


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda r: r.update(src_ip=None, dest_ip=None), "src_ip"),  # keys written, values lost
        (lambda r: r.update(src_ip="", dest_ip="198.51.100.1"), "src_ip"),
        (lambda r: r.update(dest_ip="198.51.100.1"), "src_ip"),  # half an address pair
        (lambda r: r.update(src_ip="not-an-ip"), "src_ip"),
        (lambda r: r.update(flow_id=123, dest_port=8080), "flow_id"),  # a flow without addresses
    ],
)
def test_really_broken_records_are_still_dead_lettered_byte_for_byte(tmp_path: Path, damage: Any, field: str) -> None:
    record = decoder_records()[0]
    damage(record)
    line = json.dumps(record)
    path = tmp_path / "broken.jsonl"
    path.write_text(line + "\n")
    alerts, report, dead_letter = ingest(path, tmp_path)
    assert (alerts, report.dead_lettered, report.engine_events) == ([], 1, 0)
    (entry,) = read_dead_letters(dead_letter.path)
    assert field in entry["error"]
    assert original_bytes(entry) == line.encode()
