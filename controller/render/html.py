"""Self-contained HTML for reports (simulate, scorecards, audit trails): one file, no script, no network.

Reports carry attacker-controlled text (alert evidence, URLs, user agents), so two rules hold everywhere:
every value goes through `esc` unless it is an `Html` fragment built here, and each page ships a
Content-Security-Policy that forbids scripts and remote loads, so an escaping slip still cannot run code or
beacon out when an auditor opens the file. Charts are inline SVG for the same reason (no JS chart library).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

VERDICT_COLOURS: dict[str, str] = {
    "execute": "#2e7d32",
    "approve": "#f9a825",
    "recommend": "#1565c0",
    "deny": "#c62828",
}
"""One colour per guard verdict, shared by every chart so a reader learns them once."""

PALETTE = ("#1565c0", "#2e7d32", "#f9a825", "#c62828", "#6a1b9a", "#00838f", "#ef6c00", "#546e7a")

_STYLE = """
body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;color:#1d2330;margin:24px 32px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d5dae3}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#5b6577;margin:0 0 16px}
table{border-collapse:collapse;margin:6px 0 14px;font-size:13px}
th,td{border:1px solid #d5dae3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font:12px "DejaVu Sans Mono",monospace;word-break:break-all}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;color:#fff}
.ok{background:#2e7d32}.warn{background:#f9a825;color:#1d2330}.bad{background:#c62828}.info{background:#546e7a}
ol.steps{padding-left:20px}ol.steps li{margin:3px 0}.muted{color:#5b6577}
svg text{font:12px "DejaVu Sans",sans-serif;fill:#1d2330}
""".strip()


class Html(str):
    """A fragment already safe to embed: produced by this module, never by wrapping outside text."""


def esc(value: object) -> Html:
    """Escape anything for element content and quoted attributes; Html fragments pass through."""
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[object]) -> Html:
    return Html("".join(esc(part) for part in parts))


def tag(name: str, *children: object, cls: str | None = None) -> Html:
    attribute = f' class="{esc(cls)}"' if cls else ""
    return Html(f"<{name}{attribute}>{join(children)}</{name}>")


def link(href: str, text: object) -> Html:
    """A link to a file beside this one: relative paths only (no scheme, no host), so a page never points away."""
    if href.startswith(("/", "\\")) or ":" in href.split("/", 1)[0]:
        raise ValueError(f"not a relative link: {href!r}")
    return Html(f'<a href="{esc(href)}">{esc(text)}</a>')


def badge(text: str, tone: str = "info") -> Html:
    """A coloured label; tone is one of ok, warn, bad, info."""
    return tag("span", text, cls=f"badge {tone}")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Iterable[int] = ()) -> Html:
    """A table; columns whose index is in `numeric` are right-aligned."""
    right = set(numeric)

    def cell(name: str, index: int, value: object) -> str:
        return f'<{name} class="num">{esc(value)}</{name}>' if index in right else f"<{name}>{esc(value)}</{name}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return Html(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def definitions(items: Mapping[str, object]) -> Html:
    """A two-column key/value table (a record's facts)."""
    return table(["", ""], items.items())


def _label_width(labels: Iterable[str]) -> int:
    """Room for the longest row label (about 7 px a character at 12 px), within sane bounds."""
    longest = max((len(label) for label in labels), default=0)
    return max(80, min(360, 7 * longest + 16))


def stacked_bars(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    colours: Mapping[str, str],
    *,
    title: str,
    width: int = 760,
) -> Html:
    """Horizontal 100% stacked bars, one per row, with a legend: each row's values are shown as shares.

    Rows whose values sum to zero get an empty bar labelled "none" rather than a division by zero.
    """
    label_w, bar_h, gap, top = _label_width(label for label, _ in rows), 22, 10, 34
    bar_w = width - label_w - 70
    height = top + len(rows) * (bar_h + gap) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f"<title>{esc(title)}</title>",
    ]
    x = label_w
    for name, colour in colours.items():  # legend
        out.append(f'<rect x="{x}" y="6" width="12" height="12" fill="{esc(colour)}"/>')
        out.append(f'<text x="{x + 16}" y="16">{esc(name)}</text>')
        x += 24 + 8 * len(name)
    for index, (label, values) in enumerate(rows):
        y = top + index * (bar_h + gap)
        total = sum(values.get(name, 0.0) for name in colours)
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{bar_h}" fill="#eef1f5"/>')
        if total <= 0:
            out.append(f'<text x="{label_w + 6}" y="{y + 15}" class="muted">none</text>')
            continue
        offset = 0.0
        for name, colour in colours.items():
            share = values.get(name, 0.0) / total
            if share <= 0:
                continue
            w = share * bar_w
            out.append(
                f'<rect x="{label_w + offset:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{esc(colour)}">'
                f"<title>{esc(label)} {esc(name)}: {share:.1%}</title></rect>"
            )
            if w > 34:
                out.append(
                    f'<text x="{label_w + offset + w / 2:.1f}" y="{y + 15}" text-anchor="middle" '
                    f'style="fill:#fff">{share:.0%}</text>'
                )
            offset += w
        out.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}">{total:g}</text>')
    out.append("</svg>")
    return Html("".join(out))


def bars(
    rows: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 760,
    colours: Sequence[str] | None = None,
    legend: Mapping[str, str] | None = None,
) -> Html:
    """Horizontal bars scaled to the largest value, each labelled with its value and unit.

    `colours` gives each row its colour (default: the palette in turn); `legend` names what colours mean
    (e.g. base vs candidate config) above the bars.
    """
    label_w, bar_h, gap = _label_width(label for label, _ in rows), 18, 8
    top = 26 if legend else 4
    bar_w = width - label_w - 110
    peak = max((value for _, value in rows), default=0.0)
    height = top + len(rows) * (bar_h + gap) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
        f"<title>{esc(title)}</title>",
    ]
    x = label_w
    for name, colour in (legend or {}).items():
        out.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{esc(colour)}"/>')
        out.append(f'<text x="{x + 16}" y="14">{esc(name)}</text>')
        x += 32 + 8 * len(name)
    for index, (label, value) in enumerate(rows):
        y = top + index * (bar_h + gap)
        w = (value / peak * bar_w) if peak > 0 else 0.0
        colour = colours[index] if colours else PALETTE[index % len(PALETTE)]
        out.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{esc(colour)}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{value:g}{esc(unit)}</text>')
    out.append("</svg>")
    return Html("".join(out))


def page(title: str, *body: object, subtitle: str = "") -> str:
    """A whole document: strict CSP, inline style, generation time in the subtitle."""
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    sub = f"{subtitle} · generated {generated}" if subtitle else f"generated {generated}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f'<body><h1>{esc(title)}</h1><p class="sub">{esc(sub)}</p>{join(body)}</body></html>\n'
    )
