"""`autonomy simulate --html`: the page shows the run's own figures, escapes what the alerts said, renders in a
real headless Chromium (checked by its pixels), and the progress bar counts input bytes against their total.

One real run backs most tests: synthetic alerts plus the bundled examples, with a hostile file name and a
malformed record quoting hostile markup, replayed through the shipped config and a candidate that lowers L3's
auto limit (verdicts flip), rewords an identity guardrail (reasons change at every level) and raises the
unknown-user criticality (a risk factor moves).
"""

from __future__ import annotations

import gzip
import json
import os
import pty
import random
import re
import select
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.cli.simulate import BytesRead, read_all
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ingest import DeadLetter, IngestReport
from autonomy_controller.controller.models import Alert, Category, Provenance, Severity
from autonomy_controller.controller.oversight.simulate import SYNTHETIC, synthetic_alerts
from autonomy_controller.controller.oversight.simulate_html import CANDIDATE_APPROVE
from autonomy_controller.controller.render.html import VERDICT_COLOURS, esc
from tests.browser import PNG_SIGNATURE, read_png, screenshot

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
FILE_NAME = HOSTILE.replace("/", "_") + ".jsonl"
"""A legal Linux file name that is also markup: it reaches the page as an input and in an ingest error."""
runner = CliRunner()


@dataclass(frozen=True)
class Run:
    """One `simulate --json --html` run: the page, and the JSON the same run printed, to check it against."""

    html: Path
    text: str
    summary: dict[str, Any]
    diffs: list[dict[str, Any]]

    def result(self, config: str, level: str) -> dict[str, Any]:
        return next(r for r in self.summary["results"] if (r["config"], r["level"]) == (config, level))


def _candidate(root: Path, settings: Settings) -> tuple[Path, Path]:
    """The shipped config with L3's triage bar, one guardrail message and one risk weight changed (the synthetic
    alerts carry no rule metadata, so triage calls none malicious: lowering L3's bar to suspicious at 0.5 lets
    L3 run some containment alone)."""
    levels, policies = root / "levels", root / "policies"
    shutil.copytree(settings.levels_dir, levels)
    shutil.copytree(settings.policies_dir, policies)
    for path, old, new in [
        (levels / "L3.yaml", "verdict: malicious         #", "verdict: suspicious         #"),
        (levels / "L3.yaml", "min_confidence: 0.8", "min_confidence: 0.5"),
        (levels / "risk.yaml", "unknown_user: 0.6", "unknown_user: 0.9"),
        (policies / "guardrails" / "identity.rego", "refused: unknown identity", "refused: identity unknown to us"),
    ]:
        assert path.read_text().count(old) == 1, (path, old)
        path.write_text(path.read_text().replace(old, new))
    return levels, policies


def _alert_file(root: Path) -> Path:
    alerts = list(synthetic_alerts(300, seed=3, sources=40))
    alerts.append(  # a hostile user name: carried through the pipeline as data, never as markup
        Alert(
            id="hostile-user",
            source=SYNTHETIC,
            provenance=Provenance.TRUSTED_FEED,
            observed_at=datetime(2026, 11, 1, tzinfo=UTC),
            category=Category.BRUTE_FORCE,
            severity=Severity.HIGH,
            confidence=0.9,
            src_ip="100.64.9.9",
            user=HOSTILE,
        )
    )
    malformed = json.dumps({"markup": HOSTILE})  # dead-lettered; its error names the hostile file
    path = root / FILE_NAME
    path.write_text("".join(a.model_dump_json() + "\n" for a in alerts) + malformed + "\n")
    return path


def _simulate(root: Path, settings: Settings, *extra: str) -> Run:
    levels, policies = _candidate(root, settings)
    html = root / "report" / "simulate.html"
    files = [_alert_file(root), *settings.example_alert_files]
    result = runner.invoke(
        app,
        [
            "simulate",
            *map(str, files),
            *("--against-levels", str(levels), "--against-policies", str(policies)),
            *("--html", str(html), "--json", "--trust-native", SYNTHETIC, *extra),
        ],
        env={"AUTONOMY_STATE_DIR": str(root / "var")},
    )
    assert result.exit_code == 0, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return Run(html, html.read_text(encoding="utf-8"), documents[-1], documents[:-1])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Run:
    return _simulate(tmp_path_factory.mktemp("simulate-html"), settings)


class _Tables(HTMLParser):
    """The text of every table cell, per section id: enough to read the page back as a person would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, list[list[list[str]]]] = {}
        self._section = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "section":
            self._section = dict(attrs).get("id") or ""
        elif tag == "table":
            self.sections.setdefault(self._section, []).append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.sections[self._section][-1].append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(text: str) -> dict[str, list[list[list[str]]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.sections


def _share(count: int, total: int) -> str:
    """A table cell as the page promises to write it: never a share rounded to a misleading 0% or 100%."""
    if not count:
        return "0"
    share = count / total
    shown = "<1%" if share < 0.01 else ">99%" if 0.99 < share < 1 else f"{share:.0%}"
    return f"{count} ({shown})"


def test_headline_chart_and_tables_show_the_runs_own_figures(run: Run) -> None:
    summary, text = run.summary, run.text
    assert summary["configs"] == ["base", "against"] and summary["verdict_changes"] > 0
    for figure, name in [
        (summary["alerts"], "alerts"),
        (summary["incidents"], "incidents"),
        (summary["diff_rows"], "decisions changed"),
        (summary["verdict_changes"], "verdicts changed"),
    ]:
        assert f"<b>{figure}</b><span>{name}</span>" in text
    tables = _tables(text)
    verdict_rows = {(row[0], row[1]): row for row in tables["verdicts"][0][1:]}
    workload_rows = {(row[0], row[1]): row for row in tables["workload"][0][1:]}
    assert len(verdict_rows) == len(workload_rows) == 10
    for config in summary["configs"]:
        for level in summary["levels"]:
            result = run.result(config, level)
            counts, decisions = result["verdicts"], result["decisions"]
            expected = [str(decisions), *(_share(counts[v], decisions) for v in VERDICT_COLOURS)]
            assert verdict_rows[(config, level)][2:7] == expected
            assert workload_rows[(config, level)][3:5] == [str(result["approvals"]), str(result["approver_votes"])]
            for verdict, share in result["shares"].items():  # the stacked bar's segments, one per verdict
                if share:
                    assert f"<title>{config} {level} {verdict}: {share:.1%}</title>" in text
    assert "<svg" in text and "verdict shares per level" in text and "approvals needed per level" in text


def test_per_level_tables_cover_every_class_and_category_and_mark_what_changed(run: Run) -> None:
    levels = _tables(run.text)["levels"]
    assert len(levels) == 2 * len(run.summary["levels"])  # by class and by category, at each level
    for index, level in enumerate(run.summary["levels"]):
        by_class, by_category = levels[2 * index], levels[2 * index + 1]
        base, against = run.result("base", level), run.result("against", level)
        assert [row[0] for row in by_class[1:]] == sorted(base["by_class"])
        assert [row[0] for row in by_category[1:]] == sorted(base["by_category"])
        for row in by_class[1:]:
            old, new = base["by_class"][row[0]], against["by_class"][row[0]]
            total = sum(old.values())
            for cell, verdict in zip(row[2:6], VERDICT_COLOURS, strict=True):
                before = _share(old.get(verdict, 0), total)
                after = _share(new.get(verdict, 0), total)
                assert cell == (before if before == after else f"{before}\n→ {after}"), (level, row)
    flipped = {d["level"] for d in run.diffs if d["verdict_changed"]}
    assert flipped == {"L3"}, "only L3's triage bar changed"
    assert any("→" in cell for row in levels[4][1:] for cell in row), "L3's changes are marked"
    assert not any("→" in cell for row in levels[0][1:] for cell in row), "L1 did not change"


def test_diff_lists_each_changed_decision_with_its_reasons(run: Run) -> None:
    diff = _tables(run.text)["diff"]
    transitions, rows = diff[0][1:], diff[1][1:]
    flips = [d for d in run.diffs if d["verdict_changed"]]
    assert transitions == [["L3", "approve → execute", str(len(flips))]]
    assert all((d["old_verdict"], d["new_verdict"]) == ("approve", "execute") for d in flips)
    assert len(rows) == len(run.diffs) == run.summary["diff_rows"]  # under --show-diff's default: all listed
    assert all(row[3] == "approve → execute" for row in rows[: len(flips)]), "verdict changes come first"
    identity = [row for row in rows if "identity.disable_user" in row[1]]
    assert {row[2] for row in identity} == {"L1", "L2", "L3", "L4", "L5"}  # a guardrail speaks at every level
    for row in identity:
        assert row[3] == "deny same"
        assert "identity unknown to us" in row[4] and "unknown identity" in row[5]
        assert "asset_criticality 0.6 → 0.9" in row[6]
    for row in rows[: len(flips)]:
        assert "within auto limit 45" in row[4] and "only on malicious" in row[5]


def test_a_cut_diff_still_counts_every_verdict_change(tmp_path: Path, settings: Settings) -> None:
    cut = _simulate(tmp_path, settings, "--show-diff", "2")
    diff = _tables(cut.text)["diff"]
    flips = sum(d["verdict_changed"] for d in cut.diffs)
    assert flips > 2
    assert diff[0][1:] == [["L3", "approve → execute", str(flips)]]
    assert len(diff[1][1:]) == 2
    assert "the first 2 are listed" in cut.text


def test_a_single_config_report_has_level_rows_and_no_diff(tmp_path: Path, settings: Settings) -> None:
    html = tmp_path / "single.html"
    files = [str(path) for path in settings.example_alert_files]
    result = runner.invoke(
        app,
        ["simulate", *files, "--level", "L2", "--level", "L4", "--html", str(html), "--json"],
        env={"AUTONOMY_STATE_DIR": str(tmp_path / "var")},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    text = html.read_text(encoding="utf-8")
    tables = _tables(text)
    assert set(tables) == {"verdicts", "workload", "triage", "levels", "inputs"}, "no diff without --against-*"
    assert [row[:2] for row in tables["verdicts"][0][1:]] == [["base", "L2"], ["base", "L4"]]
    assert f"<title>L4 execute: {summary['results'][1]['shares']['execute']:.1%}</title>" in text
    assert "base L4" not in text and "decisions changed" not in text and "→" not in text


def test_alert_text_never_becomes_markup(run: Run) -> None:
    text = run.text
    assert "<script" not in text and "<img" not in text
    assert not re.search(r"<[^>]*\son\w+\s*=", text), "no event-handler attribute anywhere"
    assert str(esc(FILE_NAME)) in text  # the hostile file name is shown, as text
    assert text.count("&lt;script&gt;") >= 2  # in the inputs and in the dead-lettered record's error
    assert "1</b><span>dead-lettered records" in text
    assert "default-src 'none'" in text  # and were anything missed, the page's CSP forbids script


def test_report_renders_in_headless_chromium(run: Run, tmp_path: Path) -> None:
    started = time.monotonic()
    png = screenshot(run.html, tmp_path / "simulate.png", width=1280, height=2400)
    print(f"screenshot {png} in {time.monotonic() - started:.1f}s")  # look at it: pytest -s
    image = read_png(png)
    assert (image.width, image.height) == (1280, 2400)
    assert image.non_white_share > 0.05, "the page rendered (nearly) blank"
    assert image.distinct_colours > 200, "no antialiased text: fonts or styles did not load"
    for verdict, colour in VERDICT_COLOURS.items():
        assert image.pixels_of(colour) > 1_000, f"no {verdict} segment in the chart"
    execute_rows = image.row_counts(VERDICT_COLOURS["execute"])
    assert max(execute_rows) > 500, "the L4/L5 bars (91% execute) should span most of the 900-pixel chart"
    assert execute_rows.index(max(execute_rows)) < 800, "the verdict chart sits near the top of the page"
    assert image.pixels_of(CANDIDATE_APPROVE) > 1_000, "the candidate's approval bars"


def _png(width: int, height: int, pixels: bytes, filters: list[int], channels: int = 3) -> bytes:
    """A PNG using the given filter per row: the reader must undo all five to read Chromium's output."""
    stride = width * channels

    def paeth(a: int, b: int, c: int) -> int:
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        return a if pa <= pb and pa <= pc else (b if pb <= pc else c)

    raw, above = bytearray(), bytes(stride)
    for y in range(height):
        row = pixels[y * stride : (y + 1) * stride]
        kind = filters[y % len(filters)]
        out = bytearray([kind])
        for i, value in enumerate(row):
            a = row[i - channels] if i >= channels else 0
            b, c = above[i], (above[i - channels] if i >= channels else 0)
            predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            out.append((value - predictor) & 0xFF)
        raw += out
        above = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 6, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [3, 4])
def test_png_reader_undoes_every_filter(tmp_path: Path, channels: int) -> None:
    rng = random.Random(channels)
    width, height = 37, 15
    pixels = bytes(rng.randrange(256) for _ in range(width * height * channels))
    path = tmp_path / "image.png"
    path.write_bytes(_png(width, height, pixels, [0, 1, 2, 3, 4], channels))
    image = read_png(path)
    stride = width * channels
    assert image.rows == [pixels[y * stride : (y + 1) * stride] for y in range(height)]
    assert image.pixel(1, 2) == tuple(pixels[2 * stride + channels : 2 * stride + channels + 3])
    assert sum(image.colours.values()) == width * height
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError):
        read_png(path)


def test_png_stats_tell_a_blank_page_from_a_chart(tmp_path: Path) -> None:
    blank, chart = tmp_path / "blank.png", tmp_path / "chart.png"
    white = b"\xff" * (40 * 10 * 3)
    blank.write_bytes(_png(40, 10, white, [2]))
    green = bytes.fromhex(VERDICT_COLOURS["execute"][1:])
    chart.write_bytes(_png(40, 10, white[: 40 * 5 * 3] + green * 40 * 5, [4, 1]))
    assert read_png(blank).non_white_share == 0 and read_png(blank).distinct_colours == 1
    image = read_png(chart)
    assert image.non_white_share == 0.5 and image.pixels_of(VERDICT_COLOURS["execute"]) == 200
    assert image.row_counts(VERDICT_COLOURS["execute"]) == [0] * 5 + [40] * 5


def _alerts_jsonl(count: int, **kwargs: Any) -> bytes:
    return "".join(a.model_dump_json() + "\n" for a in synthetic_alerts(count, **kwargs)).encode()


def test_progress_counts_stored_bytes_of_plain_and_gzip_files(tmp_path: Path) -> None:
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    plain.write_bytes(_alerts_jsonl(3_000, seed=1))
    packed.write_bytes(gzip.compress(_alerts_jsonl(3_000, seed=2)))
    files = [plain, packed]
    progress = BytesRead.of(files)
    assert progress.total == plain.stat().st_size + packed.stat().st_size  # compressed, as stored
    seen: list[int] = []
    for _ in read_all(files, DeadLetter(tmp_path / "dead.jsonl"), IngestReport(), progress, frozenset({SYNTHETIC})):
        seen.append(progress.done)
    assert len(seen) == 6_000
    assert seen == sorted(seen), "progress never goes back"
    assert 0 < seen[0] < plain.stat().st_size, "a plain file advances within itself"
    assert plain.stat().st_size < seen[3_500] < progress.total, "and so does a gzip file, by compressed bytes"
    assert progress.done == progress.total


def test_progress_bar_shows_a_percentage_of_the_input_on_a_terminal(tmp_path: Path) -> None:
    """The real command on a pseudo-terminal: the bar (which Rich draws only on a terminal) counts bytes."""
    alerts = tmp_path / "alerts.jsonl.gz"
    alerts.write_bytes(gzip.compress(_alerts_jsonl(2_000, seed=5, sources=400)))
    size = alerts.stat().st_size
    assert 10_000 < size < 999_000, "the assertion on the shown total below expects kB"
    command = [sys.executable, "-m", "autonomy_controller.controller.cli", "simulate", str(alerts), "--level", "L3"]
    command += ["--window", "20"]  # incidents close as the file is read, so the bar moves before the end
    command += ["--trust-native", SYNTHETIC]
    env = {**os.environ, "COLUMNS": "160", "AUTONOMY_STATE_DIR": str(tmp_path / "var")}
    screen = _run_on_terminal(command, env)
    frames = re.findall(r"simulating\D*?(\d+)% ([\d.]+)/([\d.]+) kB (\d+) alerts, (\d+) incidents", screen)
    assert frames, screen[-2000:]
    percentages = [int(frame[0]) for frame in frames]
    assert any(0 < p < 100 for p in percentages), f"no frame between 0% and 100%: {percentages}"
    assert percentages == sorted(percentages)
    assert {frame[2] for frame in frames} == {f"{size / 1000:.1f}"}, "the total is the file's compressed size"
    assert int(frames[-1][3]) > int(frames[0][3]), "the alert counter moves"


def _run_on_terminal(command: list[str], env: dict[str, str], timeout: float = 120.0) -> str:
    """Run with stderr on a pseudo-terminal; everything written to it, escape sequences removed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
    assert process.returncode == 0, b"".join(chunks)[-2000:]
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", errors="replace"))
