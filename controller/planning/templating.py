"""Safe templating for playbook params: `{field}` placeholders from a fixed allowlist of incident facts.

Alert content is attacker-controlled (docs/architecture.md, "Untrusted input"), so this is deliberately not Jinja and
not `str.format`: there is no expression, attribute access, indexing or format spec to abuse. A template is
literal text plus `{name}` placeholders whose names come from `FIELDS`; `{{` and `}}` are literal braces and
any other brace is an error. Each field has a kind, and the kind decides where it may appear:

- TARGET fields (src_ip, dst_ip, asset, source_asset, user) may name an action's target, alone and whole.
- FACT fields (category, severity, counts, times, rule ids, key) are controller-derived, safe in any text.
- FREE_TEXT fields (signature, url, evidence) are attacker-influenced: sanitised, truncated, and allowed only
  in human-facing text params (ticket title/body, notify message). The playbook checks enforce that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from autonomy_controller.controller.case.grouping import RULE_ID, category_summary
from autonomy_controller.controller.models import Incident, TargetKind


class FieldKind(StrEnum):
    TARGET = "target"
    FACT = "fact"
    FREE_TEXT = "free_text"


FIELDS: dict[str, FieldKind] = {
    "src_ip": FieldKind.TARGET,
    "dst_ip": FieldKind.TARGET,
    "asset": FieldKind.TARGET,
    "source_asset": FieldKind.TARGET,
    "user": FieldKind.TARGET,
    "category": FieldKind.FACT,
    "categories": FieldKind.FACT,
    "severity": FieldKind.FACT,
    "alert_count": FieldKind.FACT,
    "first_seen": FieldKind.FACT,
    "last_seen": FieldKind.FACT,
    "rule_ids": FieldKind.FACT,
    "incident_key": FieldKind.FACT,
    "blocked": FieldKind.FACT,
    "signature": FieldKind.FREE_TEXT,
    "url": FieldKind.FREE_TEXT,
    "evidence": FieldKind.FREE_TEXT,
}

# Which fields may fill the target param of an action of each target kind: an IP target can only ever be an
# address the sensor reported, a host target only the asset, a user target only the user.
TARGET_FIELDS: dict[TargetKind, frozenset[str]] = {
    TargetKind.IP: frozenset({"src_ip", "dst_ip"}),
    TargetKind.HOST: frozenset({"asset", "source_asset"}),
    TargetKind.USER: frozenset({"user"}),
    TargetKind.NONE: frozenset(),
}

FREE_TEXT_LIMIT = 200  # per free-text value: enough to recognise the attack, too short to carry a long payload
MAX_LISTED = 5  # distinct signatures/urls/rule ids listed before "(+N more)"
MISSING = "unknown"  # what a missing fact reads as in human-facing text

_TOKEN = re.compile(r"\{\{|\}\}|\{([a-z_]+)\}|[{}]")
INVISIBLE_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\u3164\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
"""Unicode format characters (category Cf: soft hyphen, zero-width, bidi embeddings, overrides and isolates, tag
characters), line and paragraph separators, and the Hangul fillers: text people read (a ticket, a Slack message,
a terminal) must not hide, reorder or disguise what it says. As a regex character class body (no brackets)."""
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f" + INVISIBLE_CHARS
"""C0/C1 controls (ANSI escapes start with one) and the invisible characters: everything sanitize_free_text removes."""

_CONTROL = re.compile(f"[{CONTROL_CHARS}]+")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Template:
    """A parsed template: literal chunks interleaved with field names (odd positions are field names)."""

    parts: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.parts[1::2]

    @property
    def single_field(self) -> str | None:
        """The field name when the template is exactly one placeholder and nothing else."""
        return self.parts[1] if len(self.parts) == 3 and self.parts[0] == self.parts[2] == "" else None


def parse(text: str) -> Template:
    """Split a template into literals and allowlisted field names, refusing anything else."""
    parts: list[str] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = match.group(1)
        if name is None:
            raise TemplateError(f"stray {token!r} at offset {match.start()} (write {token * 2} for a literal)")
        if name not in FIELDS:
            raise TemplateError(f"unknown field {{{name}}}; allowed: {', '.join(sorted(FIELDS))}")
        parts.extend(["".join(literal), name])
        literal = []
    literal.append(text[position:])
    parts.append("".join(literal))
    return Template(tuple(parts))


def render(template: Template, context: Mapping[str, str | None], limit: int | None = None) -> str:
    """Fill placeholders for human-facing text (missing facts read as 'unknown'), cut to `limit` characters.

    Control characters are flattened in every substituted value, not only free text: a host or user name
    reported by a sensor must not be able to forge extra lines in a ticket either. Target params are never
    rendered here; the planner substitutes them whole so the value reaching the schema is the sensor's own.
    """
    out = [
        part if index % 2 == 0 else _CONTROL.sub(" ", context.get(part) or MISSING)
        for index, part in enumerate(template.parts)
    ]
    text = "".join(out)
    return truncate(text, limit) if limit is not None else text


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def sanitize_free_text(value: str, limit: int = FREE_TEXT_LIMIT) -> str:
    """One line, no control characters, bounded: free text cannot forge ticket lines or flood a message."""
    return truncate(_CONTROL.sub(" ", value).strip(), limit)


def _listed(values: Iterable[str], limit: int) -> str | None:
    distinct = list(dict.fromkeys(v for v in values if v))
    if not distinct:
        return None
    shown = "; ".join(distinct[:MAX_LISTED])
    if len(distinct) > MAX_LISTED:
        shown += f" (+{len(distinct) - MAX_LISTED} more)"
    return sanitize_free_text(shown, limit)


def _single(values: Iterable[str | None]) -> str | None:
    """The one value all alerts that carry it agree on, or None when none or several are reported.

    Several distinct users in one brute-force incident is a password spray: disabling whichever came first
    would lock out a bystander, so an ambiguous target is treated as unknown.
    """
    distinct = {v for v in values if v}
    return distinct.pop() if len(distinct) == 1 else None


def incident_context(incident: Incident, categories: str | None = None) -> dict[str, str | None]:
    """Every allowlisted field as a string (or None when the incident does not know it). `categories`: the
    case's category_summary when the incident is one category's view of a case (the planner passes it)."""
    alerts = incident.alerts
    rule_ids = sorted({r for a in alerts for r in a.rule_ids if RULE_ID.match(r)})
    evidence = next((a.evidence for a in alerts if a.evidence), None)
    return {
        "src_ip": incident.src_ip,
        "dst_ip": _single(a.dst_ip for a in alerts),
        "asset": incident.asset,
        "source_asset": incident.source_asset,
        "user": _single(a.user for a in alerts),
        "category": incident.category.value,
        "categories": category_summary(incident) if categories is None else categories,
        "severity": incident.severity.value,
        "alert_count": str(len(alerts)),
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "rule_ids": _listed(rule_ids, 400),
        "incident_key": incident.key,
        "blocked": "yes" if incident.blocked else "no",
        "signature": _listed((a.signature or "" for a in alerts), FREE_TEXT_LIMIT),
        "url": _listed((a.url or "" for a in alerts), FREE_TEXT_LIMIT),
        "evidence": sanitize_free_text(evidence) if evidence else None,
    }


def sample_context() -> dict[str, str | None]:
    """Plausible values for every field, used to render each playbook action once at load time.

    Free-text samples are longer than any limit, so a text param that would overflow its schema fails at load
    time instead of on the first real incident.
    """
    long_text = "x" * (FREE_TEXT_LIMIT * 2)
    return {
        "src_ip": "192.0.2.10",
        "dst_ip": "198.51.100.20",
        "asset": "web-01",
        "source_asset": "ws-17",
        "user": "alice",
        "category": "sqli",
        "categories": "sqli 3 alerts (942100, 942190); scanner 1 alert (913100)",
        "severity": "high",
        "alert_count": "3",
        "first_seen": "2026-01-01T00:00:00+00:00",
        "last_seen": "2026-01-01T00:05:00+00:00",
        "rule_ids": sanitize_free_text("; ".join(str(942100 + i) for i in range(MAX_LISTED)), 400),
        "incident_key": "src:192.0.2.10",
        "blocked": "yes",
        "signature": sanitize_free_text(long_text),
        "url": sanitize_free_text(long_text),
        "evidence": sanitize_free_text(long_text),
    }
