"""The attacker page's timeline: a source's alerts over time, one row per sensor and attack class, as inline SVG.

Read from the ledger, not the profile (a profile keeps counts, not times): the ALERT records of the source's case
(`src:<address>`) and its access-log records (`_access:<address>`), the latest `TIMELINE_MAX` of them. Every
label goes through controller/render/html.py's `esc` (sensor names are ingest's; categories are ours; nothing here is
request text, but nothing is trusted either).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from autonomy_controller.controller.attackers.profile import StageReached
from autonomy_controller.controller.ledger import Ledger, RecordKind, observations
from autonomy_controller.controller.ledger.driver import driver_read
from autonomy_controller.controller.ledger.schema import RECORDS_TABLE
from autonomy_controller.controller.models import parse_observed_at
from autonomy_controller.controller.render.html import PALETTE, Html, esc

TIMELINE_MAX = 5000
"""Records drawn (the most recent): the page stays small for a source that sent a million requests."""
BUCKETS = 48
WIDTH = 1000


@dataclass(frozen=True, slots=True)
class Point:
    seq: int
    at: datetime
    sensor: str
    category: str


@dataclass(frozen=True)
class Timeline:
    points: list[Point]
    total: int
    """Records the ledger holds for the source (more than `points` when the cap cut the oldest)."""

    def rows(self) -> Counter[tuple[str, str]]:
        """Records per (sensor, category): the counts the chart's rows show."""
        return Counter((p.sensor, p.category) for p in self.points)


def read_timeline(ledger: Ledger, address: str, cap: int = TIMELINE_MAX) -> Timeline:
    """The source's latest `cap` alert and access-log records (by seq), oldest first; one indexed query, so a
    source with a million records costs `cap` (records the ledger cannot date are left out)."""
    params = {
        "case": f"{observations.CASE_PREFIX}{address}",
        "observed": observations.observation_key(address),
        "alert": RecordKind.ALERT.value,
        "access": RecordKind.ACCESS.value,
        "cap": cap,
    }
    with driver_read(ledger.engine) as cursor:  # read for every report of a case: the driver's cursor
        p = cursor.p
        where = (
            f"FROM {RECORDS_TABLE} WHERE incident_key IN ({p('case')}, {p('observed')}) "
            f"AND kind IN ({p('alert')}, {p('access')})"
        )
        rows = cursor.rows(f"SELECT seq, payload {where} ORDER BY seq DESC LIMIT {p('cap')}", params)
        # a second statement, not one snapshot: records appended in between only make the total larger
        total = max(int(cursor.scalar(f"SELECT count(*) {where}", params)), len(rows))
    points = []
    for row in rows:
        seq, payload = row["seq"], json.loads(row["payload"])
        at = parse_observed_at(payload.get("observed_at"))
        if at is not None:
            points.append(
                Point(seq, at, str(payload.get("source") or "unknown"), str(payload.get("category") or "other"))
            )
    points.sort(key=lambda p: (p.at, p.seq))
    return Timeline(points=points, total=total)


def timeline_svg(timeline: Timeline, stages: Sequence[StageReached], width: int = WIDTH) -> Html:
    """Rows of dots (size: alerts in that time slice), the row's total at its end, and a line where each stage
    was reached. Each dot's tooltip names its row, count and time slice."""
    rows = sorted(timeline.rows())
    if not rows:
        return Html('<p class="muted">no alert or access-log record from this source in the ledger</p>')
    sensors = sorted({sensor for sensor, _ in rows})
    colour = {sensor: PALETTE[i % len(PALETTE)] for i, sensor in enumerate(sensors)}
    label_w, row_h, top, right = 220, 26, 58, 60
    plot_w = width - label_w - right
    height = top + len(rows) * row_h + 34
    start, end = timeline.points[0].at, timeline.points[-1].at
    span = max((end - start).total_seconds(), 1.0)

    def x_of(at: datetime) -> float:
        return label_w + (at - start).total_seconds() / span * plot_w

    slices: Counter[tuple[int, int]] = Counter()
    index = {row: i for i, row in enumerate(rows)}
    for p in timeline.points:
        slices[
            (index[(p.sensor, p.category)], min(BUCKETS - 1, int((p.at - start).total_seconds() / span * BUCKETS)))
        ] += 1
    peak = max(slices.values())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        "<title>alerts over time by sensor and attack class</title>",
    ]
    x = label_w
    for sensor in sensors:  # legend
        out.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{esc(colour[sensor])}"/>')
        out.append(f'<text x="{x + 16}" y="14">{esc(sensor)}</text>')
        x += 32 + 8 * len(sensor)
    for n, stage in enumerate(stages):  # labels on two alternating lines: stages often come seconds apart
        sx, ly = x_of(min(max(stage.at, start), end)), top - 8 - 14 * (n % 2)
        out.append(
            f'<line x1="{sx:.1f}" y1="{ly}" x2="{sx:.1f}" y2="{top + len(rows) * row_h}" '
            'stroke="#c62828" stroke-dasharray="4 3"/>'
        )
        out.append(f'<text x="{sx + 3:.1f}" y="{ly}" style="fill:#c62828">{esc(stage.stage)}</text>')
    totals = timeline.rows()
    for i, (sensor, category) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        out.append(f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(sensor)} · {esc(category)}</text>')
        out.append(f'<line x1="{label_w}" y1="{y:.1f}" x2="{label_w + plot_w}" y2="{y:.1f}" stroke="#eef1f5"/>')
        out.append(
            f'<text x="{label_w + plot_w + 10}" y="{y + 4:.1f}" class="count">{totals[(sensor, category)]}</text>'
        )
    step = span / BUCKETS
    for (row, bucket), count in sorted(slices.items()):
        sensor, category = rows[row]
        cx = label_w + (bucket + 0.5) / BUCKETS * plot_w
        cy = top + row * row_h + row_h / 2
        radius = 3 + 7 * math.sqrt(count / peak)
        when = start.timestamp() + bucket * step
        out.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius:.1f}" fill="{esc(colour[sensor])}">'
            f"<title>{esc(sensor)} · {esc(category)}: {count} from "
            f"{esc(datetime.fromtimestamp(when, start.tzinfo).isoformat(timespec='seconds'))}</title></circle>"
        )
    base = top + len(rows) * row_h + 18
    out.append(f'<text x="{label_w}" y="{base}">{esc(start.isoformat(timespec="seconds"))}</text>')
    out.append(
        f'<text x="{label_w + plot_w}" y="{base}" text-anchor="end">{esc(end.isoformat(timespec="seconds"))}</text>'
    )
    out.append("</svg>")
    return Html("".join(out))
