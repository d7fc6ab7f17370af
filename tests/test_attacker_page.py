"""The attacker page (controller/oversight/attacker_page.py) from a real ledger of real sensor records, in real Chromium.

The ledger is written as the Submitter writes it (alerts as ALERT records in the source's case, access-log lines
as ACCESS records under `_access:<address>`), folded into profiles, then rendered: the escaping, the SVG's counts,
the stages and actions with their ledger seqs, the CLI, and the links from the report and the audit trail.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.attackers import AttackerStore, track
from autonomy_controller.controller.case.grouping import incident_key
from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind, observations, sqlite_url
from autonomy_controller.controller.models import Alert
from autonomy_controller.controller.oversight.attacker_page import render_page
from autonomy_controller.controller.oversight.attacker_timeline import read_timeline
from autonomy_controller.controller.oversight.reports import attacker_page_link, write_incident_report
from autonomy_controller.controller.oversight.trail import build_trail, render_html, render_markdown
from autonomy_controller.controller.render.html import PALETTE, esc
from tests.browser import read_png, screenshot
from tests.test_attackers import lines, parsed
from tests.test_impact import eve_and_access, got_through

ATTACKER = "198.51.100.66"
KEY = f"src:{ATTACKER}"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.from_url(sqlite_url(tmp_path / "ledger.db")) as led:
        yield led


def write(ledger: Ledger, alerts: list[Alert]) -> None:
    """As the Submitter writes them: cased alerts per incident, access-log lines to the observation store."""
    cased, observed = observations.split(alerts)
    for a in cased:
        key = incident_key(a)
        ledger.append_many(key, RecordKind.ALERT, "ingest", [(a.model_dump(mode="json"), f"alert:{key}:{a.id}")])
    observations.write(ledger, observed)


def hostile(tmp_path: Path) -> list[Alert]:
    """A real access-log line whose path and User-Agent (the client's text) carry markup."""
    line = copy.deepcopy(lines("nginx-access.jsonl")[0])
    line.update(request_id="e" * 32, request_uri=f"/x{SCRIPT}?q=1", http_user_agent=IMG)
    return parsed([line], tmp_path)


@pytest.fixture
def profiled(ledger: Ledger, settings: Settings, tmp_path: Path) -> Ledger:
    eve, access = eve_and_access()
    ids, answered = got_through(tmp_path)
    write(ledger, [a for a in eve + access if a.src_ip == ATTACKER] + hostile(tmp_path) + ids + answered)
    decision = {"action_id": "a1", "action": "network.block_ip", "verdict": "approve", "policy_revision": "r"}
    ledger.append(KEY, RecordKind.DECISION, "guard", {**decision, "risk": None})
    ledger.append(KEY, RecordKind.APPROVAL, "user:bob", {"action_id": "a1", "event": "approved"})
    request = {"action_id": "a1", "action": "network.block_ip", "params": {"ip": ATTACKER}}
    ledger.append(KEY, RecordKind.EXECUTION, "svc:controller", {"request": request, "outcome": {"status": "done"}})
    track(ledger, settings)
    return ledger


def page_of(ledger: Ledger) -> str:
    store = AttackerStore(ledger)
    profile = store.get(ATTACKER)
    assert profile is not None
    return render_page(profile, store.linked(profile), read_timeline(ledger, ATTACKER))


def test_markup_in_alert_text_renders_as_text(profiled: Ledger) -> None:
    text = page_of(profiled)
    assert "<script" not in text and "<img" not in text
    assert not re.search(r"<[^>]*\son\w+\s*=", text), "no event-handler attribute anywhere"
    assert str(esc(f"/x{SCRIPT}")) in text, "the path is shown, as text"
    assert str(esc(IMG)) in text, "the User-Agent is shown, as text"
    assert "default-src 'none'" in text  # and were anything missed, the page's CSP forbids script


def test_the_timeline_shows_each_sensor_and_class_with_the_ledgers_counts(profiled: Ledger) -> None:
    text = page_of(profiled)
    records = profiled.records(KEY, [RecordKind.ALERT]) + observations.case_records(profiled, KEY)
    expected = Counter((r.payload["source"], r.payload["category"]) for r in records)
    svg = text[text.index("<svg") : text.index("</svg>")]
    shown = {
        (sensor, category): int(count)
        for sensor, category, count in re.findall(
            r'text-anchor="end">([^<]+) · ([^<]+)</text><line[^>]*/><text[^>]*class="count">(\d+)</text>', svg
        )
    }
    assert shown == dict(expected) and expected[("nginx-access", "other")] == 7
    dots: Counter[tuple[str, str]] = Counter()
    for sensor, category, count in re.findall(r"<circle[^>]*><title>([^<]+) · ([^<]+): (\d+) from", svg):
        dots[(sensor, category)] += int(count)
    assert dots == expected, "the dots of a row add up to its total"
    assert re.findall(r'style="fill:#c62828">([a-z_]+)</text>', svg) == [
        "exploitation_attempt",
        "possible_success",
    ], "a line where each stage was reached"


def test_stages_and_actions_cite_their_ledger_records(profiled: Ledger) -> None:
    text = page_of(profiled)
    profile = AttackerStore(profiled).get(ATTACKER)
    assert profile is not None and profile.stage == "possible_success"
    for stage in profile.stages:
        assert f"<td>{stage.stage}</td><td>{stage.at.isoformat()}</td><td>{stage.seq}</td>" in text
    (block,) = profile.actions
    assert block.status == "executed" and len(block.seqs) == 3
    assert f'<span class="badge ok">executed</span></td><td>{", ".join(map(str, block.seqs))}</td>' in text
    assert "<td>web-01</td>" in text and "application answered (nginx-access)" in text


def test_the_cli_writes_the_page_and_reports_and_trails_link_to_it(
    profiled: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AUTONOMY_LEDGER_URL", str(profiled.engine.url))
    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["attackers", "show", ATTACKER, "--html", str(out)], env=dict(os.environ))
    assert result.exit_code == 0, result.output
    assert f"<title>Attacker {ATTACKER}</title>" in out.read_text()
    # the report of the source's case links to the page it writes beside itself
    reports = tmp_path / "reports"
    paths = write_incident_report(profiled, KEY, reports)
    link = attacker_page_link(ATTACKER)
    (sources,) = [line for line in paths.markdown.read_text().splitlines() if line.startswith("- alerts:")]
    assert sources.endswith(f" ([attacker page]({link}))")
    assert (reports / link).read_text().count("<svg") == 1
    # and so does the audit trail, in both forms
    trail = build_trail(KEY, profiled.records(KEY), {"available": False, "reason": "test"}, profiled.verify(KEY))
    assert f'(<a href="{link}">attacker page</a>)' in render_html(trail)
    assert f"([attacker page]({link}))" in render_markdown(trail)
    other = build_trail("asset:web-01", [], {"available": False, "reason": "test"}, profiled.verify())
    assert "attacker page" not in render_html(other), "only a source's case has an attacker"


def test_the_page_renders_in_headless_chromium(profiled: Ledger, tmp_path: Path) -> None:
    html = tmp_path / "attacker.html"
    html.write_text(page_of(profiled))
    started = time.monotonic()
    png = screenshot(html, tmp_path / "attacker.png", width=1280, height=2200)
    print(f"screenshot {png} in {time.monotonic() - started:.1f}s")  # look at it: pytest -s
    image = read_png(png)
    assert image.non_white_share > 0.05, "the page rendered (nearly) blank"
    assert image.distinct_colours > 200, "no antialiased text: fonts or styles did not load"
    for colour in PALETTE[:2]:  # the two sensors' dots and legend (nginx-access, suricata)
        assert image.pixels_of(colour) > 150, f"no {colour} dots in the timeline"
    stage_rows = image.row_counts("#c62828")
    assert sum(stage_rows) > 100 and stage_rows.index(max(stage_rows)) < 600, "stage lines near the top"


def test_the_timeline_is_bounded_to_the_latest_records_and_says_so(profiled: Ledger) -> None:
    records = profiled.records(KEY, [RecordKind.ALERT]) + observations.case_records(profiled, KEY)
    timeline = read_timeline(profiled, ATTACKER, cap=5)
    assert timeline.total == len(records)
    assert sorted(p.seq for p in timeline.points) == sorted(r.seq for r in records)[-5:]
    profile = AttackerStore(profiled).get(ATTACKER)
    assert profile is not None
    assert f"(the latest 5 of {len(records)} records)" in render_page(profile, {}, timeline)
