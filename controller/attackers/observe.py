"""What one ALERT record says about its source, in the terms a profile keeps.

Only what sensors computed or rule authors wrote is read (rule ids, categories, statuses, the sensor's own
block), as triage does (controller/triage/facts.py); from the request itself only the URL path and the
User-Agent, both kept as the client sent them and used as hints, never to raise a stage or autonomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autonomy_controller.controller.attackers.exchange import request_key, whole_number
from autonomy_controller.controller.decision.inventory import AssetIndex
from autonomy_controller.controller.ingest import nginx_access
from autonomy_controller.controller.ingest.normalise import clean_optional
from autonomy_controller.controller.models import Alert, Category, Provenance
from autonomy_controller.controller.triage.attack import techniques
from autonomy_controller.controller.triage.facts import WAF, alert_facts
from autonomy_controller.controller.triage.facts import _path as url_path
from autonomy_controller.controller.triage.model import AttackMapping

POST_EXPLOITATION = frozenset({Category.MALWARE, Category.C2, Category.LATERAL_MOVEMENT, Category.EXFILTRATION})
"""Categories that mean the attacker is already inside (docs/attackers.md, "Stages")."""
USER_AGENT_CHARS = 200
_ALERT_FIELDS = frozenset(Alert.model_fields)


@dataclass(frozen=True)
class TrackingConfig:
    """What observations are read with: triage's ATT&CK tables and attack classes, and the inventory."""

    mapping: AttackMapping
    attack_categories: frozenset[Category]
    waf_sources: frozenset[str]
    assets: AssetIndex


@dataclass(frozen=True, slots=True)
class Observation:
    seq: int
    at: datetime
    sensor: str
    category: str
    attack: bool
    """An attack-class category (triage.yaml attack_class_categories) short of post-exploitation."""
    post_exploitation: bool
    outcome_only: bool
    """An access-log record: what the server answered, not a detection."""
    claim: bool
    """Our own Alert JSON no sensor vouches for (docs/sensors.md, "Provenance"): counted, never a stage or an attack."""
    connected: bool
    """Its source held a connection the sensor saw (`Alert.src_connected`), or a trusted feed speaks for it: a
    one-way packet's source is whatever its sender wrote (docs/sensors.md, "Forged sources")."""
    blocked: bool
    waf_blocked: bool
    status: int | None
    app_answered: bool
    """The application (not the WAF, not nginx) produced `status`."""
    bytes_sent: int | None
    techniques: tuple[tuple[str, str], ...]
    asset: str | None
    path: str | None
    user_agent: str | None
    request: str | None
    """The request's identity as both an IDS and the access log write it (exchange.py), or None."""

    @property
    def unanswered(self) -> bool:
        """An attack whose answer its sensor did not see (an IDS logs a request before the answer): the access log's
        record of the same request says whether it was refused (exchange.py)."""
        return self.attack and not self.blocked and self.status is None

    @property
    def refused(self) -> bool:
        """Stopped: a sensor blocked it, or the answer it saw was an error (an IDS seeing the WAF's 403)."""
        return self.blocked or (self.status is not None and self.status >= 400)

    @property
    def app_success(self) -> bool:
        return self.app_answered and self.status is not None and 200 <= self.status < 300


def observe(seq: int, payload: dict[str, Any], config: TrackingConfig) -> Observation:
    """The observation of one ALERT record's payload (ValueError when it is not an alert the ledger wrote)."""
    try:
        category: Category | None = Category(str(payload.get("category")))
    except ValueError:
        category = None  # a category this version does not know: counted, never an attack
    raw: dict[str, Any] = payload["raw"] if isinstance(payload.get("raw"), dict) else {}
    if not isinstance(payload.get("url"), str | None):  # the facts below read it as text; ingest wrote text
        raise ValueError(f"alert url is not text: {payload.get('url')!r:.40}")
    fields = {k: v for k, v in payload.items() if k in _ALERT_FIELDS}
    alert = Alert.model_construct(**{**fields, "category": category or Category.OTHER, "raw": raw})
    facts = alert_facts(alert, config.waf_sources)
    blocked = bool(payload.get("blocked"))
    status, app_answered, sent = facts.status, False, None
    user_agent = facts.user_agent
    if alert.source == nginx_access.SOURCE and not alert.is_claim:  # a claimed access line answered nothing
        app_status = nginx_access.application_status(raw)
        app_answered = not blocked and app_status is not None  # ingest sets blocked when nothing was proxied
        status = app_status if app_answered else whole_number(raw.get("status"))
        sent = whole_number(raw.get("body_bytes_sent"))
        user_agent = raw.get("http_user_agent") if isinstance(raw.get("http_user_agent"), str) else None
    elif facts.kind == WAF:
        app_answered = not blocked and status is not None
    vouched = not alert.is_claim  # a claim's category is whatever its sender wrote
    return Observation(
        seq=seq,
        at=_time(payload.get("observed_at")),
        sensor=str(payload.get("source") or "unknown"),
        category=str(payload.get("category")),
        attack=vouched and category in config.attack_categories and category not in POST_EXPLOITATION,
        post_exploitation=vouched and category in POST_EXPLOITATION,
        outcome_only=alert.source == nginx_access.SOURCE,
        claim=not vouched,
        connected=bool(payload.get("src_connected")) or payload.get("provenance") == Provenance.TRUSTED_FEED,
        blocked=blocked,
        waf_blocked=facts.kind == WAF and blocked,
        status=status,
        app_answered=app_answered,
        bytes_sent=sent,
        techniques=tuple((t.id, t.name) for t in techniques([(alert, facts)], config.mapping)) if category else (),
        asset=_asset(payload, config.assets),
        path=url_path(alert.url) if isinstance(alert.url, str) else None,
        user_agent=clean_optional(user_agent, USER_AGENT_CHARS),
        request=request_key(payload, raw),
    )


def _asset(payload: dict[str, Any], assets: AssetIndex) -> str | None:
    """The inventory asset the alert targeted (by name, else by destination address); else the address."""
    named = payload.get("asset")
    if isinstance(named, str) and named:
        return assets.canonical_host(named)
    dst = payload.get("dst_ip")
    if isinstance(dst, str) and dst:
        try:
            return assets.owner_of_address(dst) or dst
        except ValueError:
            return None
    return None


def _time(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise ValueError(f"alert observed_at is not a timestamp: {value!r:.40}")
