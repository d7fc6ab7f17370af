"""Sensor facts per alert, read from `Alert.raw` where the normalised Alert keeps too little.

Only what the sensor itself computed or the rule author wrote is read: rule ids, severities and tags, CRS's
anomaly totals, whether the engine intervened, the HTTP status the application answered, IDS severity,
classtype and signature id, a login service's own outcome and failure counts. Request content is never read,
except the user agent, which may only ever *raise* suspicion (scanner fingerprints), and the URL path, which only
scopes people's feedback (the user name a client tried is never read either).

And only from a sensor: an alert whose provenance is `claim` (our Alert JSON on a channel nobody declared a
trusted feed, docs/sensors.md "Provenance") has its `raw` and its own figures read as nothing (kind CLAIM), whatever
`source` it names, so it can never raise a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from autonomy_controller.controller.ingest.auth_log import GUESSING_FAILURES
from autonomy_controller.controller.ingest.auth_log import SOURCE as AUTH_LOG
from autonomy_controller.controller.ingest.classify import BLOCKING_EVALUATION, RuleHit
from autonomy_controller.controller.ingest.errors import IngestError
from autonomy_controller.controller.ingest.fields import get_path
from autonomy_controller.controller.ingest.modsec2 import parse_message
from autonomy_controller.controller.ingest.normalise import clean_text
from autonomy_controller.controller.ingest.waf import header
from autonomy_controller.controller.models import Alert

WAF, IDS, OTHER, CLAIM = "waf", "ids", "other", "claim"
GUESSED, FAILED = "guessed", "failed"
"""A login service's outcomes (AlertFacts.login): a login that succeeded after guessing, a failed guess."""
# The sensor's own message for CRS's anomaly totals: 949110 "(Total Score: 23)", 980130 "(Total Inbound Score: 8".
_TOTAL = re.compile(r"\(Total (?:Inbound )?Score: (\d{1,5})\b")
_TOTAL_FAMILIES = frozenset({"949", "980"})
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")


@dataclass(frozen=True, slots=True)
class Hit:
    """One matched rule, with RuleHit's derived facts computed once (triage reads them many times)."""

    rule: str
    family: str | None
    paranoia: int | None
    points: int
    is_total: bool


@dataclass(frozen=True, slots=True)
class AlertFacts:
    kind: str
    """waf, ids or other: which sensor family produced the alert; claim: no sensor vouches for it."""
    request: str
    """Identity of the request/flow: several IDS signatures on one HTTP request are one request."""
    hits: tuple[Hit, ...] = ()
    anomaly_score: int | None = None
    crossed: bool = False
    """The sensor's own verdict: its anomaly evaluation crossed the blocking threshold (WAF), or it dropped the
    request (IPS, OCSF disposition)."""
    status: int | None = None
    user_agent: str | None = None
    path: str | None = None
    ids_severity: int | None = None
    classtype: str | None = None
    signature_id: int | None = None
    to_client: bool = False
    """An IDS alert on the server's answer (e.g. "GPL WEB_SERVER 403 Forbidden"): an outcome, not an attack."""
    sensor_techniques: tuple[tuple[str, str | None], ...] = ()
    """ATT&CK ids (and names) the IDS rule author put in the rule's metadata."""
    login: str | None = None
    """GUESSED or FAILED: the login service's own outcome of the attempt (auth log); None from other sensors."""
    login_failures: int = 0
    """The service's count behind it: failures against the account before a guessed login, or failures in a row
    from the source before a failed one."""


def alert_facts(alert: Alert, waf_sources: frozenset[str]) -> AlertFacts:
    path = _path(alert.url)
    if alert.is_claim:
        return AlertFacts(kind=CLAIM, request=alert.id, path=path)
    raw = alert.raw if isinstance(alert.raw, dict) else {}
    if alert.source in waf_sources:
        hits, total = _waf_hits(alert, raw)
        points = [h.points for h in hits if not h.is_total]
        return AlertFacts(
            kind=WAF,
            request=alert.id,
            hits=hits,
            anomaly_score=total if total is not None else (sum(points) if points else None),
            # The engine's own judgement: CRS's blocking evaluation (949/959) fired, whatever the engine mode, or
            # mod_security2 says it intercepted. Not any 403: our own containment answers 403 too.
            crossed=any(h.family in BLOCKING_EVALUATION for h in hits)
            or get_path(raw, "audit_data.action.intercepted") is True,
            status=_int(get_path(raw, "transaction.response.http_code") or get_path(raw, "response.status")),
            user_agent=header(_request_headers(raw), "User-Agent"),
            path=path,
        )
    if alert.source == "suricata":
        return _suricata(alert, raw, path)
    if alert.source == AUTH_LOG:
        login, failures = _login(raw)
        return AlertFacts(kind=OTHER, request=alert.id, path=path, login=login, login_failures=failures)
    return AlertFacts(kind=OTHER, request=alert.id, crossed=alert.blocked, path=path)


def _login(raw: dict[str, Any]) -> tuple[str | None, int]:
    """The login service's outcome and its own counts (never the client's word, never the user name). A success
    is GUESSED only when the service counted enough failures against the account before it."""
    outcome = raw.get("outcome")
    if outcome == "success":
        before = _int(raw.get("user_failures_before")) or 0
        return (GUESSED, before) if before >= GUESSING_FAILURES else (None, 0)
    if outcome == "failure":
        return FAILED, _int(raw.get("source_failures")) or 0
    return None, 0


def _suricata(alert: Alert, raw: dict[str, Any], path: str | None) -> AlertFacts:
    flow, tx = raw.get("flow_id"), raw.get("tx_id")
    metadata = get_path(raw, "alert.metadata")
    techniques: list[tuple[str, str | None]] = []
    if isinstance(metadata, dict):
        ids = _as_list(metadata.get("mitre_technique_id"))
        names = _as_list(metadata.get("mitre_technique_name"))
        for i, tid in enumerate(ids):
            if isinstance(tid, str) and _TECHNIQUE.match(tid):
                name = clean_text(names[i], 120) if i < len(names) and isinstance(names[i], str) else None
                techniques.append((tid, name))
    classtype = get_path(raw, "alert.category")
    return AlertFacts(
        kind=IDS,
        request=f"suricata-flow:{flow}:{tx}" if flow is not None else alert.id,
        crossed=alert.blocked,
        status=_int(get_path(raw, "http.status")),
        user_agent=_text(get_path(raw, "http.http_user_agent")),
        path=path,
        ids_severity=_int(get_path(raw, "alert.severity")),
        classtype=classtype.strip().lower() if isinstance(classtype, str) else None,
        signature_id=_int(get_path(raw, "alert.signature_id")),
        to_client=raw.get("direction") == "to_client",
        sensor_techniques=tuple(techniques),
    )


def _waf_hits(alert: Alert, raw: dict[str, Any]) -> tuple[tuple[Hit, ...], int | None]:
    """Each matched rule as the sensor logged it, and CRS's inbound anomaly total when the sensor logged one.
    Rule ids only (from the Alert) when ingest had to cut raw down."""
    messages = get_path(raw, "transaction.messages")
    if isinstance(messages, list):  # ModSecurity v3
        rows = []
        for m in messages:
            details = m.get("details") if isinstance(m, dict) else None
            if isinstance(details, dict):
                rows.append((details.get("ruleId"), m.get("message"), details.get("severity"), details.get("tags")))
        return _rows(rows)
    messages = raw.get("messages")
    if isinstance(messages, list):  # the flattened CRS corpus
        return _rows(
            [(m.get("id"), m.get("msg"), m.get("severity"), m.get("tags")) for m in messages if isinstance(m, dict)]
        )
    messages = get_path(raw, "audit_data.messages") or get_path(raw, "audit_data.error_messages")
    if isinstance(messages, list):  # ModSecurity v2: bracketed strings
        try:
            parsed = [parse_message(m, i) for i, m in enumerate(messages) if isinstance(m, str)]
        except IngestError:
            parsed = []
        return _rows([(h.rule_id, h.message, h.severity, list(h.tags)) for h in parsed])
    return tuple(_hit_of(rid, None, ()) for rid in alert.rule_ids), None


def _rows(rows: list[tuple[Any, Any, Any, Any]]) -> tuple[tuple[Hit, ...], int | None]:
    hits: list[Hit] = []
    total: int | None = None
    for rule_id, message, severity, tags in rows:
        rid = _scalar(rule_id)
        if rid is None:
            continue
        hit = _hit_of(rid, _scalar(severity), _tags(tags))
        hits.append(hit)
        if total is None and hit.family in _TOTAL_FAMILIES and isinstance(message, str):
            found = _TOTAL.search(message)  # the sensor's own total, macro-expanded in the rule's message
            total = int(found.group(1)) if found else None
    return tuple(hits), total


@lru_cache(maxsize=8192)
def _hit_of(rule_id: str, severity: str | None, tags: tuple[str, ...]) -> Hit:
    """RuleHit's derived facts, computed once per distinct (rule, severity, tags): rule metadata repeats a lot,
    and the key holds nothing the request controls."""
    hit = RuleHit(rule_id=rule_id, severity=severity, tags=tags)
    return Hit(rule_id, hit.family, hit.paranoia_level, hit.points, hit.is_anomaly_total)


def _tags(tags: Any) -> tuple[str, ...]:
    if not isinstance(tags, list):
        return ()
    key = tuple(tags)
    return key if all(type(t) is str for t in key) else tuple(str(t) for t in key)


def _request_headers(raw: dict[str, Any]) -> Any:
    """Request headers wherever the format keeps them: v3 transaction.request, v2 request, the corpus top level."""
    for found in (get_path(raw, "transaction.request.headers"), get_path(raw, "request.headers"), raw.get("headers")):
        if isinstance(found, dict):
            return found
    return None


def _scalar(value: Any) -> str | None:
    return None if value is None or value == "" or isinstance(value, dict | list) else str(value)


def _path(url: str | None) -> str | None:
    if not url:
        return None
    return url.split("?", 1)[0].split("#", 1)[0] or None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
