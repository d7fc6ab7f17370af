"""Markdown for reports (the incident report, the audit trail): every value inert, as controller/render/html.py's `esc`
makes it for HTML.

Reports carry attacker-controlled text (alert ids, rule ids, URLs, evidence), model text (plan rationales) and
people's text (approvers' comments, adapter details). A Markdown viewer that renders it (a wiki, a ticket, an
auditor's browser, with inline HTML on) must show that text as text: never a tag, a link, an image, a heading,
a list item or a table cell of the attacker's making. Two helpers, used for every value that is not our own
template text:

- `text`: one line of prose. Line breaks, control, zero-width and bidi characters are shown as `\\xNN` or
  `\\uNNNN` (so no value can start a new block, hide text or reorder it); `&`, `<` and `>` become entities (no
  raw HTML, autolink or entity of the input's making, in every Markdown dialect); the characters that open
  inline syntax (backslash, backtick, `*`, `[`, `]`, `~`, and `_` where it is not inside a word) and the
  table separator `|` and `#` are backslash-escaped; a block marker at its start (`-`, `+`, `=`, `1.`, `1)`)
  is escaped too, for values that begin a line. Safe in a table cell. Parentheses, `!` and `:` stay as they
  are: without `[` and `<` they open nothing.
- `code`: a literal (JSON params, hashes, raw values) in an inline code span whose fence is longer than any
  backtick run inside, with the same characters made visible (a newline would end the span's paragraph).
  Not for table cells: GFM splits cells on `|` even inside code.
"""

from __future__ import annotations

import re

_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\u3164\ufeff\ufff9-\ufffb]"
)
"""C0/C1 controls (tab and newline included: layout in a value is structure in Markdown), soft hyphen,
zero-width, line/paragraph separators, bidi embeddings, overrides and isolates, invisible fillers."""
_INLINE = re.compile(r"([\\`*\[\]~|#]|(?<![^\W_])_|_(?![^\W_]))")
"""`_` only where it could delimit emphasis: inside a word (`blast_radius`) it opens nothing, and stays."""
_BLOCK_START = re.compile(r"^([-+=]|\d{1,9}(?=[.)]))")
_BACKTICKS = re.compile(r"`+")
_TOKEN = re.compile(r"[A-Za-z0-9:._/-]+")
_PLAIN = re.compile(r"(?:[A-Za-z]|\d+(?![\d.)]))(?:[A-Za-z0-9 ,.:;/()'!?@%=+-]|(?<=[A-Za-z0-9])_(?=[A-Za-z0-9]))*")
"""Text that `text` leaves as it is (most of what a report holds: names, numbers, times, reasons): no block marker
at its start, none of the characters it escapes or shows, `_` only inside a word. Anything else takes the long way."""


def visible(value: object) -> str:
    """The value as one line, every invisible or layout character shown by its code point."""
    return _INVISIBLE.sub(_code_point, "" if value is None else str(value))


def text(value: object) -> str:
    """Prose for Markdown: rendered, it reads exactly as `visible(value)` and creates no markup."""
    plain = value if isinstance(value, str) else "" if value is None else str(value)
    if _PLAIN.fullmatch(plain):
        return plain
    return _escaped(plain)


def _escaped(value: str) -> str:
    escaped = _INLINE.sub(r"\\\1", visible(value))
    escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    marker = _BLOCK_START.match(escaped)
    if marker is None:
        return escaped
    end = marker.end()
    return escaped[:end] + "\\" + escaped[end:] if marker.group().isdigit() else "\\" + escaped


def code(value: object) -> str:
    """A literal in an inline code span: rendered, it reads exactly as `visible(value)`."""
    literal = visible(value)
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(literal)), default=0) + 1)
    # A plain token (a hash, a revision) is fenced tight; anything else is padded with the one space CommonMark
    # strips from each end, so a backtick or space at an edge stays content and the raw file reads clearly.
    return f"{fence}{literal}{fence}" if _TOKEN.fullmatch(literal) else f"{fence} {literal} {fence}"


def _code_point(match: re.Match[str]) -> str:
    point = ord(match.group())
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"
