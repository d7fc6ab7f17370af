"""Adversarial review of ingest: a bad record costs itself only, and whatever ingest yields the ledger can hold.

Real files read by the real reader, and the alerts written to a real (SQLite) ledger in one batch, as
`autonomy submit` and the HTTP intake write them (workflows/client.py, `append_groups`).
"""

from __future__ import annotations

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
from autonomy_controller.controller.ledger.records import RecordKind
from autonomy_controller.controller.ledger.store import Ledger
from autonomy_controller.controller.models import Alert


def native(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"review-{n}",
        "source": "native",
        "observed_at": f"2026-11-23T08:00:{n:02d}Z",
        "category": "sqli",
        "severity": "high",
        "confidence": 0.9,
        "src_ip": f"198.51.100.{n + 1}",
        "rule_ids": ["942100"],
        **extra,
    }


def ingest(path: Path) -> tuple[list[Alert], IngestReport, list[dict[str, Any]]]:
    report = IngestReport()
    dead = DeadLetter(path.parent / f"{path.name}.dead.jsonl")
    alerts = list(read_alerts(path, dead_letter=dead, report=report))
    entries = list(read_dead_letters(dead.path)) if dead.path.exists() else []
    return alerts, report, entries


def ledger_batch(tmp_path: Path, alerts: list[Alert]) -> None:
    """Write the alerts as the submitter does: every incident's records in one transaction."""
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        groups: dict[str, list[tuple[dict[str, Any], str | None]]] = {}
        for alert in alerts:
            groups.setdefault(f"src:{alert.src_ip}", []).append((alert.model_dump(mode="json"), f"alert/{alert.id}"))
        written = ledger.append_groups(RecordKind.ALERT, "ingest", groups)
        assert sum(len(records) for records in written.values()) == len(alerts)
    finally:
        ledger.close()


# NaN and Infinity are not JSON (RFC 8259), yet Python's decoder takes them (and 1e999 becomes infinity): a record
# holding one was ingested, and then the ledger refused the whole batch it came in, every good alert with it.
NOT_JSON_NUMBERS = {
    "NaN in raw": b'"raw": {"score": NaN}',
    "Infinity in raw": b'"raw": {"score": Infinity}',
    "-Infinity deep in raw": b'"raw": {"a": [{"b": -Infinity}]}',
    "1e999 in raw": b'"raw": {"score": 1e999}',
}


@pytest.mark.parametrize("layout", ["lines", "array"])
@pytest.mark.parametrize("bad", list(NOT_JSON_NUMBERS), ids=list(NOT_JSON_NUMBERS))
def test_a_number_json_cannot_hold_costs_its_record_only_and_the_batch_reaches_the_ledger(
    tmp_path: Path, bad: str, layout: str
) -> None:
    records = [json.dumps(native(n)).encode() for n in range(3)]
    records[1] = records[1][:-1] + b", " + NOT_JSON_NUMBERS[bad] + b"}"
    body = b"\n".join(records) + b"\n" if layout == "lines" else b"[\n" + b",\n".join(records) + b"\n]\n"
    path = tmp_path / ("alerts.jsonl" if layout == "lines" else "alerts.json")
    path.write_bytes(body)
    alerts, report, entries = ingest(path)
    assert [a.id for a in alerts] == ["review-0", "review-2"]
    [entry] = entries
    assert original_bytes(entry).rstrip(b",") == records[1]
    assert "not a JSON number" in entry["error"] and "raw" in entry["error"], entry["error"]
    assert report.dead_lettered == 1
    ledger_batch(tmp_path, alerts)


def test_a_broken_element_before_the_last_of_an_array_does_not_take_the_last_with_it(tmp_path: Path) -> None:
    # An export written one element per line puts the closing bracket on the last element's line. A value that
    # cannot be decoded (here: an integer past Python's digit limit) switches the rest to line by line; the last
    # element was then dead-lettered as "extra data after the value" with its bracket, so a replay failed too.
    good = [json.dumps(native(n)).encode() for n in range(3)]
    broken = json.dumps(native(9)).encode()[:-1] + b', "raw": {"n": ' + b"9" * 5000 + b"}}"
    body = b"[" + b",\n".join([good[0], broken, good[1], good[2]]) + b"]\n"
    path = tmp_path / "export.json"
    path.write_bytes(body)
    alerts, report, entries = ingest(path)
    assert [a.id for a in alerts] == ["review-0", "review-1", "review-2"]
    [entry] = entries
    assert entry["line"] == 2 and original_bytes(entry) == broken + b","
    assert report.dead_lettered == 1


# -- a text field holds text: a list (a key written twice), a mapping or a boolean is refused, never its repr ---

OCSF = json.loads(
    Path(__file__)
    .resolve()
    .parent.parent.joinpath("examples/alerts/ocsf-detection-finding.jsonl")
    .read_text()
    .splitlines()[0]
)


def ocsf(uid: str, **paths: Any) -> dict[str, Any]:
    record = json.loads(json.dumps(OCSF))
    record["finding_info"]["uid"] = uid
    for path, value in paths.items():
        parent = record
        *parents, leaf = path.split(".")
        for key in parents:
            parent = parent.setdefault(key, {})
        parent[leaf] = value
    return record


NOT_TEXT = {
    "user from a key written twice": ("actor.user.name", ["j.doe", "dave"], "user"),
    "user as a mapping": ("actor.user.name", {"name": "dave"}, "user"),
    "asset from a key written twice": ("device.hostname", ["web-stg-01", "dc-01"], "asset"),
    "asset as a boolean": ("device.hostname", True, "asset"),
}


@pytest.mark.parametrize("case", list(NOT_TEXT), ids=list(NOT_TEXT))
def test_a_field_that_must_be_text_refuses_anything_else_naming_it(tmp_path: Path, case: str) -> None:
    # Ingest turned such a value into its Python spelling ("['j.doe', 'dave']", "True"): an account or host name
    # nobody wrote, reaching playbooks, the directory lookup and the prompt. It is the record's error, named.
    path_, value, field = NOT_TEXT[case]
    records = [ocsf("good-1"), ocsf("bad", **{path_: value}), ocsf("good-2")]
    path = tmp_path / "findings.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    alerts, _, entries = ingest(path)
    assert [a.id.split(":")[1] for a in alerts] == ["good-1", "good-2"]
    [entry] = entries
    assert f"field {field} must be text" in entry["error"], entry["error"]


# -- nesting: a record too deep for the walk after decoding costs itself only -----------------------------------


@pytest.mark.parametrize("layout", ["lines", "array"])
@pytest.mark.parametrize("depth", [300, 950])
def test_a_deeply_nested_record_costs_itself_only(tmp_path: Path, layout: str, depth: int) -> None:
    # Python's decoder takes ~990 levels; the walk after it (undecodable bytes, numbers) recursed once per level
    # too. In a JSON document its RecursionError escaped the reader: the whole file failed, every alert with it.
    records = [json.dumps(native(n)).encode() for n in range(3)]
    records[1] = records[1][:-1] + b', "raw": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
    body = b"\n".join(records) + b"\n" if layout == "lines" else b"[\n" + b",\n".join(records) + b"\n]\n"
    path = tmp_path / ("alerts.jsonl" if layout == "lines" else "alerts.json")
    path.write_bytes(body)
    alerts, report, entries = ingest(path)
    assert [a.id for a in alerts] == ["review-0", "review-2"]
    [entry] = entries
    assert "nested deeper than" in entry["error"], entry["error"]
    assert report.dead_lettered == 1
