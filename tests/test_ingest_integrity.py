"""Ingest never loses data: a bad record costs itself only, and is kept byte for byte so it can be replayed.

Every file here is real bytes on disk read by the real reader (and by `ingest --follow`'s LineSource): broken
lines at the start, middle and end, CRLF, blank lines, a byte order mark, invalid UTF-8, duplicate keys,
overlong lines and identifiers, under names that do and do not say "JSON Lines".
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.ingest import (
    DeadLetter,
    IngestReport,
    original_bytes,
    read_alerts,
    read_dead_letters,
)
from autonomy_controller.controller.ingest import lines as lines_module
from autonomy_controller.controller.ingest.decoding import REPAIRS_KEY
from autonomy_controller.controller.ingest.normalise import IDENTIFIER_LIMITS, MAX_RULE_IDS
from autonomy_controller.controller.models import Alert
from autonomy_controller.workflows.follow import LineSource

GOOD = 500
TRUNCATED = b'{"id": "cut-off", "source": "native", "observed_at": "2026-11-23T08:'


def native(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"integrity-{n}",
        "source": "native",
        "observed_at": f"2026-11-23T08:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "category": "sqli",
        "severity": "high",
        "confidence": 0.9,
        "src_ip": f"198.51.100.{n % 200 + 1}",
        "rule_ids": ["942100"],
        **extra,
    }


def line(n: int, **extra: Any) -> bytes:
    return json.dumps(native(n, **extra)).encode()


def ingest(path: Path) -> tuple[list[Alert], IngestReport, list[dict[str, Any]]]:
    report = IngestReport()
    dead = DeadLetter(path.parent / f"{path.name}.dead.jsonl")
    alerts = list(read_alerts(path, dead_letter=dead, report=report))
    entries = list(read_dead_letters(dead.path)) if dead.path.exists() else []
    assert report.dead_lettered == len(entries)
    return alerts, report, entries


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


# -- one broken line never takes good lines with it ------------------------------------------------------


@pytest.mark.parametrize("name", ["alerts.json", "alerts.log", "alerts.jsonl", "eve.json.gz", "noext"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_truncated_line_costs_itself_only_whatever_the_name(tmp_path: Path, name: str, where: str) -> None:
    good = [line(n) for n in range(GOOD)]
    at = {"first": 0, "middle": GOOD // 2, "last": GOOD}[where]
    body = [*good[:at], TRUNCATED, *good[at:]]
    alerts, report, entries = ingest(write(tmp_path / name, b"\n".join(body) + b"\n"))
    assert [a.id for a in alerts] == [f"integrity-{n}" for n in range(GOOD)]
    assert (report.records_read, report.alerts, report.dead_lettered) == (GOOD + 1, GOOD, 1)
    [entry] = entries
    assert entry["line"] == at + 1
    assert original_bytes(entry) == TRUNCATED


def test_every_first_line_broken_still_reads_the_rest(tmp_path: Path) -> None:
    """More broken lines than the sniff looks at: read as a document, then recovered line by line."""
    broken = [b"{broken %d" % n for n in range(100)]
    alerts, report, entries = ingest(write(tmp_path / "x.log", b"\n".join([*broken, line(1), line(2)]) + b"\n"))
    assert [a.id for a in alerts] == ["integrity-1", "integrity-2"]
    assert report.dead_lettered == 100
    assert [original_bytes(e) for e in entries] == broken
    assert [e["line"] for e in entries] == list(range(1, 101))


def test_crlf_blank_lines_and_a_byte_order_mark(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + line(0) + b"\r\n\r\n   \r\n" + TRUNCATED + b"\r\n" + line(1) + b"\r\n\n" + line(2)
    for name in ("crlf.json", "crlf.jsonl"):
        alerts, report, entries = ingest(write(tmp_path / name, data))
        assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-2"], name
        assert (report.records_read, report.dead_lettered) == (4, 1)  # blank lines are layout, not records
        [entry] = entries
        assert entry["line"] == 4 and original_bytes(entry) == TRUNCATED  # CR is terminator, not content


def test_a_bom_only_counts_at_the_start_of_the_file(tmp_path: Path) -> None:
    inner = b"\xef\xbb\xbf" + line(1)
    _, report, entries = ingest(write(tmp_path / "bom.jsonl", line(0) + b"\n" + inner + b"\n"))
    assert report.alerts == 1
    assert original_bytes(entries[0]) == inner


def test_a_pretty_printed_document_and_an_array_still_read_as_documents(tmp_path: Path) -> None:
    records = [native(n) for n in range(3)]
    for name, text in {
        "one.json": json.dumps(records[0], indent=2),
        "array.json": json.dumps(records, indent=2),
        "concatenated.json": "\n".join(json.dumps(r, indent=2) for r in records),
        "bom-array.json": "\ufeff" + json.dumps(records),
    }.items():
        alerts, report, _ = ingest(write(tmp_path / name, text.encode()))
        assert report.dead_lettered == 0, (name, report.errors)
        assert [a.id for a in alerts] == [r["id"] for r in records][: len(alerts)] and alerts, name


def test_a_broken_element_of_an_array_costs_itself_only(tmp_path: Path) -> None:
    elements = [line(0), b'{"id": "broken", ', line(1), line(2)]
    body = b"[\n" + b",\n".join(elements) + b"\n]\n"
    alerts, _, entries = ingest(write(tmp_path / "array.json", body))
    assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-2"]
    [entry] = entries
    assert entry["line"] == 3 and original_bytes(entry) == b'{"id": "broken", ,'


def test_a_document_with_missing_commas_loses_nothing(tmp_path: Path) -> None:
    body = b"[\n" + b"\n".join([line(0), line(1), line(2)]) + b"\n]"
    alerts, report, _ = ingest(write(tmp_path / "array.json", body))
    assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-2"]
    assert report.dead_lettered == 0


# -- a sensor's odd bytes never hide an attack: shown, named, kept; only a key that is not text is refused ------


def test_invalid_utf8_in_a_value_is_shown_and_named_never_dropped(tmp_path: Path) -> None:
    # ModSecurity logs a matched value URL-decoded: `id=1' OR 1=1--%FF` arrives as a raw 0xFF byte.
    in_value = line(1, evidence="id=1' OR 1=1--@@").replace(b"@@", b"\xff")
    in_key = line(2).replace(b'"src_ip"', b'"src\xc3_ip"')  # which field that key named is unknowable
    alerts, _, entries = ingest(write(tmp_path / "bad.json", b"\n".join([line(0), in_value, in_key, line(3)])))
    assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-3"]
    repaired = alerts[1]
    assert repaired.evidence.endswith("--\\xff")
    assert any("not UTF-8 text: shown as \\xNN" in r for r in repaired.raw[REPAIRS_KEY])
    [entry] = entries
    assert entry["line"] == 3 and entry["encoding"] == "base64" and original_bytes(entry) == in_key
    assert "a JSON key holds bytes that are not UTF-8 text" in entry["error"]


def test_invalid_utf8_inside_a_json_document_is_shown_too(tmp_path: Path) -> None:
    odd = line(1, evidence="caf@@").replace(b"@@", b"\xe9")
    alerts, _, entries = ingest(write(tmp_path / "array.json", b"[" + b", ".join([line(0), odd, line(2)]) + b"]"))
    assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-2"] and entries == []
    assert alerts[1].evidence == "caf\\xe9" and REPAIRS_KEY in alerts[1].raw


def test_a_duplicate_key_keeps_every_value_and_says_so(tmp_path: Path) -> None:
    # An attacker's duplicate request headers reach the audit log as duplicate JSON keys.
    nested = line(1)[:-1] + b', "raw": {"Last-Modified": "a", "Last-Modified": "b", "Last-Modified": "c"}}'
    twice = line(2)[:-1] + b', "src_ip": "203.0.113.9"}'  # a typed field with two values: refused by its type
    for name, body in {
        "lines.jsonl": b"\n".join([line(0), nested, twice, line(3)]),
        "array.json": b"[" + b",".join([line(0), nested, twice, line(3)]) + b"]",
    }.items():
        alerts, _, entries = ingest(write(tmp_path / name, body))
        assert [a.id for a in alerts] == ["integrity-0", "integrity-1", "integrity-3"], name
        assert alerts[1].raw["Last-Modified"] == ["a", "b", "c"]
        assert alerts[1].raw[REPAIRS_KEY] == [
            "key 'Last-Modified' appeared more than once: all its values kept, as a list"
        ]
        [entry] = entries
        assert "src_ip" in entry["error"] and original_bytes(entry) == twice, name


def test_a_lone_surrogate_escape_is_shown_as_text(tmp_path: Path) -> None:
    lone = line(1).replace(b'"sqli"', b'"sqli", "user": "x\\udc80"')
    pair = line(2).replace(b'"sqli"', b'"sqli", "user": "x\\ud83d\\ude00"')
    alerts, _, entries = ingest(write(tmp_path / "s.jsonl", b"\n".join([lone, pair])))
    # U+DC80-U+DCFF is how an undecodable byte is carried, so a lone escape there reads as that byte
    assert [a.user for a in alerts] == ["x\\x80", "x\U0001f600"] and entries == []
    assert REPAIRS_KEY in alerts[0].raw and REPAIRS_KEY not in alerts[1].raw


# -- every cap is named, with its limit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "a" * (IDENTIFIER_LIMITS["id"] + 1)),
        ("id", "x" * 50_000),
        ("user", "u" * (IDENTIFIER_LIMITS["user"] + 1)),
        ("asset", "h" * (IDENTIFIER_LIMITS["asset"] + 1)),
        ("signature", "s" * (IDENTIFIER_LIMITS["signature"] + 1)),
        ("source", "n" * (IDENTIFIER_LIMITS["source"] + 1)),
    ],
)
def test_an_overlong_identifier_is_refused_naming_field_and_limit(tmp_path: Path, field: str, value: str) -> None:
    bad = json.dumps({**native(1), field: value}).encode()
    alerts, _, [entry] = ingest(write(tmp_path / "ids.jsonl", line(0) + b"\n" + bad + b"\n"))
    assert [a.id for a in alerts] == ["integrity-0"]
    assert f"field {field} longer than the {IDENTIFIER_LIMITS[field]}-character limit" in entry["error"]
    assert original_bytes(entry) == bad


def test_rule_ids_are_bounded_in_count_and_length_and_hold_no_line_breaks(tmp_path: Path) -> None:
    many = json.dumps(native(1, rule_ids=[str(n) for n in range(MAX_RULE_IDS + 1)])).encode()
    long = json.dumps(native(2, rule_ids=["9" * (IDENTIFIER_LIMITS["rule_ids[]"] + 1)])).encode()
    forged = json.dumps(native(3, rule_ids=["942100\n# sensor blocked every request: yes"])).encode()
    hidden = json.dumps(native(4, user="admin\u202egnp.exe")).encode()
    body = b"\n".join([many, long, forged, hidden, line(5)])
    alerts, _, entries = ingest(write(tmp_path / "rules.jsonl", body))
    assert [a.id for a in alerts] == ["integrity-5"]
    errors = [e["error"] for e in entries]
    assert f"more than the {MAX_RULE_IDS}-rule limit" in errors[0]
    assert f"longer than the {IDENTIFIER_LIMITS['rule_ids[]']}-character limit" in errors[1]
    assert "field rule_ids[] holds a control" in errors[2] and "U+000A" in errors[2]
    assert "field user holds a control" in errors[3] and "U+202E" in errors[3]


def test_an_unsafe_native_id_is_refused(tmp_path: Path) -> None:
    _, _, [entry] = ingest(write(tmp_path / "id.jsonl", line(0, id="a b/../c")))
    assert "field id must be" in entry["error"]


def test_the_line_limit_is_named_and_the_line_kept_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 1024)
    huge = line(1, evidence="\u00e9" * 5000) + b"\xff"  # not even UTF-8: kept as base64
    alerts, _, [entry] = ingest(write(tmp_path / "long.log", b"\n".join([line(0), huge, line(2)]) + b"\r\n"))
    assert [a.id for a in alerts] == ["integrity-0", "integrity-2"]
    assert "longer than the 1024-byte line limit" in entry["error"]
    assert entry["encoding"] == "base64" and entry["bytes"] == len(huge)
    assert original_bytes(entry) == huge


# -- the dead-letter file replays byte for byte ------------------------------------------------------------


def test_dead_letter_entries_replay_byte_for_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 2048)
    bad = [
        TRUNCATED,
        line(1).replace(b"sqli", b"sq\xc0li"),
        line(2)[:-1] + b', "id": "again"}',
        json.dumps(native(3, rule_ids=["1\n2"])).encode(),
        line(4, evidence="x" * 4000),
        b'{"unknown": "format", "text": "\\u202e \xe2\x80\xae \x1b[2J"}',
        line(5, evidence="\u00e9\U0001f600 " * 3000)[:-1],  # overlong and cut mid-character: not UTF-8
    ]
    good = [line(n) for n in range(10, 15)]
    mixed = [good[0], *bad[:3], good[1], *bad[3:], *good[2:]]
    first = write(tmp_path / "first.log", b"\r\n".join(mixed) + b"\r\n")
    alerts, _, entries = ingest(first)
    assert len(alerts) == len(good)
    assert [original_bytes(e) for e in entries] == bad
    dead_text = (tmp_path / "first.log.dead.jsonl").read_bytes()
    assert dead_text.isascii()  # the file itself carries no control or bidi character to a terminal

    replay = write(tmp_path / "replay.log", b"".join(original_bytes(e) + b"\n" for e in entries))
    again, _, replayed = ingest(replay)
    assert again == []
    assert [original_bytes(e) for e in replayed] == bad
    assert [e["error"] for e in replayed] == [e["error"] for e in entries]

    fixed = original_bytes(entries[1]).replace(b"sq\xc0li", b"sqli")  # an operator fixes one and replays it
    [alert], _, _ = ingest(write(tmp_path / "fixed.jsonl", fixed))
    assert alert.id == "integrity-1"


def test_old_dead_letter_entries_still_read() -> None:
    legacy = {"source": "a.jsonl", "line": 2, "error": "invalid JSON", "text": "{not json"}
    assert original_bytes(legacy) == b"{not json"
    assert original_bytes({**legacy, "encoding": "base64", "text": base64.b64encode(b"\xff").decode()}) == b"\xff"


# -- ingest --follow frames lines by the same rules and keeps the same bytes ------------------------------


def test_follow_frames_lines_like_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines_module, "MAX_LINE_BYTES", 512)
    log = tmp_path / "follow.log"
    invalid = line(1).replace(b"sqli", b"sq\xffli")
    huge = line(2, evidence="y" * 2000)
    log.write_bytes(b"\xef\xbb\xbf" + line(0) + b"\r\n\n" + invalid + b"\n" + huge[:300])
    source = LineSource(log, None)
    first = source.read(100)
    assert [(x.number, x.text == line(0).decode(), x.error) for x in first[:1]] == [(1, True, None)]
    # undecodable bytes stay in the text for decoding to show (decoding.py); the bytes are kept as read
    assert first[1].number == 3 and first[1].error is None and first[1].data == invalid
    assert len(first) == 2  # the overlong line is still being written
    with log.open("ab") as handle:
        handle.write(huge[300:1000])
    assert source.read(100) == []
    position = source.position()
    assert position is not None and position.line == 3  # a restart would read the overlong line again whole
    with log.open("ab") as handle:
        handle.write(huge[1000:] + b"\r\n" + line(3) + b"\n")
    overlong, last = source.read(100)
    assert overlong.number == 4 and "longer than the 512-byte line limit" in (overlong.error or "")
    dead = DeadLetter(tmp_path / "dead.jsonl")
    dead.write(source=overlong.source, line=overlong.number, error=overlong.error or "", data=overlong.data)
    overlong.close()
    assert [original_bytes(e) for e in read_dead_letters(dead.path)] == [huge]
    assert last.number == 5 and last.error is None
    source.close()
