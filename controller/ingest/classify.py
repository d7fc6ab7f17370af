"""The one home of classification: attack category, severity and confidence for every sensor format.

Why it is centralised: playbooks and autonomy-level scopes match on `Alert.category`, and the risk score reads
severity and confidence. If each parser guessed on its own, the same attack seen by ModSecurity v2, v3 and the
CRS corpus could land in different incidents and get different verdicts.

Classification reads only what the *rule author* or *vendor* wrote (CRS rule ids and tags, Suricata
signature, classtype and metadata, OCSF titles, types and ATT&CK ids) and never the request content, so an
attacker cannot steer the category by putting words in a URL (docs/architecture.md, "Untrusted input").

All results are deterministic: the same hits in the same order always give the same category, severity and
confidence, which replay (what-if over past alerts) depends on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from autonomy_controller.controller.models import Category, Severity

# ----------------------------------------------------------------------------------------------- CRS rules


class Tier(IntEnum):
    """How specific a rule family is; the lowest tier that fired decides the category.

    An attack rule (SQLi, RCE, ...) says what the attacker tried; a scanner rule says who is knocking; a
    protocol rule says the request was odd (the lab's numeric Host header fires 920350 on every request); an
    outbound rule says what came back. A request that trips both 942100 and 920350 is an SQLi, not a protocol
    anomaly.
    """

    ATTACK = 0
    SCANNER = 1
    PROTOCOL = 2
    OUTBOUND = 3


ANOMALY_TOTALS = frozenset({"949", "959", "980"})
"""CRS families that only sum other rules' scores (949 inbound blocking, 959 outbound, 980 correlation).
They fire on every blocked request whatever the attack, so they never decide a category."""
BLOCKING_EVALUATION = frozenset({"949", "959"})
"""The families whose firing means the engine intervened (when it runs in blocking mode)."""

_CRS_FAMILIES: dict[str, tuple[Category, Tier] | None] = {
    "901": None,  # initialisation
    "905": None,  # common exceptions
    "910": (Category.OTHER, Tier.SCANNER),  # IP reputation
    "911": (Category.PROTOCOL, Tier.PROTOCOL),  # method enforcement
    "912": (Category.OTHER, Tier.SCANNER),  # DoS protection
    "913": (Category.SCANNER, Tier.SCANNER),
    "920": (Category.PROTOCOL, Tier.PROTOCOL),
    "921": (Category.PROTOCOL, Tier.PROTOCOL),  # protocol attack (smuggling, splitting)
    "922": (Category.PROTOCOL, Tier.PROTOCOL),  # multipart attack
    "930": (Category.LFI, Tier.ATTACK),
    "931": (Category.RFI, Tier.ATTACK),
    "932": (Category.RCE, Tier.ATTACK),
    "933": (Category.PHP_INJECTION, Tier.ATTACK),
    # Node.js / generic injection: server-side code injection, whose outcome is code execution.
    "934": (Category.RCE, Tier.ATTACK),
    "941": (Category.XSS, Tier.ATTACK),
    "942": (Category.SQLI, Tier.ATTACK),
    "943": (Category.OTHER, Tier.ATTACK),  # session fixation: an attack, but no category of its own
    "944": (Category.JAVA_INJECTION, Tier.ATTACK),  # CRS 3.3 tags these attack-rce: the range is more precise
    "949": None,
    "950": (Category.OTHER, Tier.OUTBOUND),  # data leakages
    "951": (Category.OTHER, Tier.OUTBOUND),
    "952": (Category.OTHER, Tier.OUTBOUND),
    "953": (Category.OTHER, Tier.OUTBOUND),
    "954": (Category.OTHER, Tier.OUTBOUND),
    "955": (Category.OTHER, Tier.OUTBOUND),
    "959": None,
    "980": None,
}

# Outside the CRS id space (site rules, other rule sets) the CRS tag vocabulary still names the class.
_TAGS: dict[str, tuple[Category, Tier]] = {
    "attack-sqli": (Category.SQLI, Tier.ATTACK),
    "attack-xss": (Category.XSS, Tier.ATTACK),
    "attack-rce": (Category.RCE, Tier.ATTACK),
    "attack-lfi": (Category.LFI, Tier.ATTACK),
    "attack-rfi": (Category.RFI, Tier.ATTACK),
    "attack-injection-php": (Category.PHP_INJECTION, Tier.ATTACK),
    "attack-injection-java": (Category.JAVA_INJECTION, Tier.ATTACK),
    "attack-injection-nodejs": (Category.RCE, Tier.ATTACK),
    "attack-injection-generic": (Category.RCE, Tier.ATTACK),
    "attack-fixation": (Category.OTHER, Tier.ATTACK),
    "attack-reputation-scanner": (Category.SCANNER, Tier.SCANNER),
    "attack-protocol": (Category.PROTOCOL, Tier.PROTOCOL),
    "attack-multipart-header": (Category.PROTOCOL, Tier.PROTOCOL),
    "attack-deprecated-header": (Category.PROTOCOL, Tier.PROTOCOL),
    "attack-disclosure": (Category.OTHER, Tier.OUTBOUND),
    "attack-generic": (Category.OTHER, Tier.OUTBOUND),
}

# Ties in anomaly points break towards the class with the worse usual outcome, so a tie never understates.
_TIE_ORDER: tuple[Category, ...] = (
    Category.JAVA_INJECTION,
    Category.RCE,
    Category.PHP_INJECTION,
    Category.SQLI,
    Category.RFI,
    Category.LFI,
    Category.XSS,
    Category.SCANNER,
    Category.PROTOCOL,
    Category.OTHER,
)

# Syslog-style levels as ModSecurity uses them; v3 logs the number, v2 and the corpus log the word.
_SEVERITY_WORDS = {
    "EMERGENCY": 0,
    "ALERT": 1,
    "CRITICAL": 2,
    "ERROR": 3,
    "WARNING": 4,
    "NOTICE": 5,
    "INFO": 6,
    "DEBUG": 7,
}
_LEVEL_TO_SEVERITY = (
    Severity.CRITICAL,
    Severity.CRITICAL,
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.INFO,
    Severity.INFO,
)
# CRS's default anomaly points per severity (crs-setup.conf: critical 5, error 4, warning 3, notice 2).
_LEVEL_TO_POINTS = (5, 5, 5, 4, 3, 2, 0, 0)
_UNKNOWN_POINTS = 1
"""A rule that matched but logged no severity still counts, a little."""

_PARANOIA = re.compile(r"^paranoia-level/(\d)$")
# Base confidence by the lowest paranoia level among the deciding rules: PL1 rules are tuned for few false
# positives, PL4 rules fire on much benign traffic. Unknown (libmodsecurity3 often logs no tags) is between.
_PL_BASE = {1: 0.7, 2: 0.6, 3: 0.5, 4: 0.4}
_PL_UNKNOWN = 0.55
_TIER_CAP = {Tier.ATTACK: 0.95, Tier.SCANNER: 0.9, Tier.PROTOCOL: 0.5, Tier.OUTBOUND: 0.4}
_UNCLASSIFIED_CONFIDENCE = 0.1


@dataclass(frozen=True)
class RuleHit:
    """One matched WAF rule, the same shape whichever ModSecurity format it came from."""

    rule_id: str | None
    message: str | None = None
    data: str | None = None
    severity: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def family(self) -> str | None:
        """The CRS file number (942 for 942100), or None for a rule outside the CRS id space."""
        rid = self.rule_id or ""
        return rid[:3] if len(rid) == 6 and rid.isdigit() and rid.startswith("9") else None

    @property
    def is_anomaly_total(self) -> bool:
        return self.family in ANOMALY_TOTALS

    @property
    def level(self) -> int | None:
        """Syslog level 0-7 from either the number or the word, None when absent or unreadable."""
        raw = (self.severity or "").strip().upper()
        if raw.isdigit() and int(raw) <= 7:
            return int(raw)
        return _SEVERITY_WORDS.get(raw)

    @property
    def points(self) -> int:
        level = self.level
        return _UNKNOWN_POINTS if level is None else _LEVEL_TO_POINTS[level]

    @property
    def paranoia_level(self) -> int | None:
        for tag in self.tags:
            m = _PARANOIA.match(tag)
            if m:
                return int(m.group(1))
        return None

    def classify(self) -> tuple[Category, Tier] | None:
        """Category and tier of this rule alone: CRS id range first (it is exact), tags second."""
        family = self.family
        if family is not None and family in _CRS_FAMILIES:
            return _CRS_FAMILIES[family]
        if family is None and self.rule_id and self.rule_id.isdigit() and 200000 <= int(self.rule_id) < 200100:
            # modsecurity.conf-recommended: request body / multipart parsing failures.
            return (Category.PROTOCOL, Tier.PROTOCOL)
        for tag in self.tags:
            found = _TAGS.get(tag.lower())
            if found:
                return found
        return None


@dataclass(frozen=True)
class Classification:
    """What the classifier decided, and for WAF alerts which rules decided it."""

    category: Category
    severity: Severity
    confidence: float
    deciding: tuple[RuleHit, ...] = ()
    primary: RuleHit | None = None
    """The heaviest deciding rule (first on ties): its message becomes the alert's signature."""


def classify_crs(hits: Sequence[RuleHit]) -> Classification:
    """Classify one WAF transaction from its matched rules.

    Category: among rules of the most specific tier that fired (attack > scanner > protocol > outbound),
    sum CRS anomaly points per category (critical 5, error 4, warning 3, notice 2) and take the largest; ties
    go to the worse class (`_TIE_ORDER`). So a path traversal that hits 930x four times (20 points) and
    932160 once (5) is LFI, and `;cat /etc/passwd` with 932100 + 932160 (10) over 930120 (5) is RCE.
    Anomaly totals (949/959/980) are never considered.

    Severity: the highest severity among the deciding rules (syslog levels: 0-2 critical, 3 high (ERROR),
    4 medium (WARNING), 5 low (NOTICE), 6-7 info). With no classifiable rule: the highest of any rule,
    else low.

    Confidence: a base from the lowest paranoia level among the deciding rules (PL1 0.7, PL2 0.6, PL3 0.5,
    PL4 0.4, unknown 0.55); +0.05 for each further distinct deciding rule id (corroboration, at most +0.15);
    +0.05 when CRS's own anomaly evaluation fired (the total crossed the threshold); capped by tier (attack
    0.95, scanner 0.9, protocol 0.5, outbound 0.4) because a protocol oddity alone is weak evidence of intent.
    No classifiable rule at all: 0.1.
    """
    classified = [(hit, found) for hit in hits if not hit.is_anomaly_total and (found := hit.classify())]
    totals_fired = any(hit.is_anomaly_total for hit in hits)
    if not classified:
        rest = [h for h in hits if not h.is_anomaly_total and h.rule_id] or [h for h in hits if h.rule_id]
        return Classification(
            category=Category.OTHER,
            severity=_max_severity(rest, default=Severity.LOW),
            confidence=_UNCLASSIFIED_CONFIDENCE,
            primary=rest[0] if rest else None,
        )
    tier = min(found[1] for _, found in classified)
    points: dict[Category, int] = {}
    for hit, (category, hit_tier) in classified:
        if hit_tier == tier:
            points[category] = points.get(category, 0) + hit.points
    winner = max(points, key=lambda c: (points[c], -_TIE_ORDER.index(c)))
    deciding = tuple(hit for hit, (category, hit_tier) in classified if hit_tier == tier and category == winner)
    primary = max(deciding, key=lambda h: h.points)  # max() keeps the first of equals
    return Classification(
        category=winner,
        severity=_max_severity(deciding, default=Severity.LOW),
        confidence=_crs_confidence(deciding, tier, totals_fired),
        deciding=deciding,
        primary=primary,
    )


def _crs_confidence(deciding: Sequence[RuleHit], tier: Tier, totals_fired: bool) -> float:
    levels = [pl for h in deciding if (pl := h.paranoia_level) is not None]
    base = _PL_BASE.get(min(levels), _PL_BASE[4]) if levels else _PL_UNKNOWN
    distinct = len({h.rule_id for h in deciding})
    score = base + min(0.05 * (distinct - 1), 0.15) + (0.05 if totals_fired else 0.0)
    return round(min(score, _TIER_CAP[tier]), 2)


def _max_severity(hits: Iterable[RuleHit], default: Severity) -> Severity:
    levels = [lv for h in hits if (lv := h.level) is not None]
    return _LEVEL_TO_SEVERITY[min(levels)] if levels else default


# ------------------------------------------------------------------------------------------ text signatures


@dataclass(frozen=True)
class _TextRule:
    pattern: re.Pattern[str]
    category: Category
    boost: float
    """Confidence adjustment: how specific this wording is."""
    cap: float = 1.0


def _rule(pattern: str, category: Category, boost: float = 0.1, cap: float = 1.0) -> _TextRule:
    return _TextRule(re.compile(pattern, re.IGNORECASE), category, boost, cap)


# First match wins, so the specific (a CVE, a named technique) comes before the generic ("RCE", "malware").
_TEXT_RULES: tuple[_TextRule, ...] = (
    # A response code is an outcome, not an attack class: it only says the server refused something.
    _rule(r"\b40[0-9] forbidden\b|\bforbidden response\b", Category.OTHER, boost=0.0, cap=0.2),
    _rule(r"log4j|log4shell|cve[-_ ]?2021[-_]4(4228|5046)|\bjndi\b", Category.JAVA_INJECTION),
    _rule(r"struts|\bognl\b|spring4shell|cve[-_ ]?2022[-_]22965|java deseriali[sz]", Category.JAVA_INJECTION),
    _rule(r"shellshock|cve[-_ ]?2014[-_](6271|6278|7169)", Category.RCE),
    # A web shell request (e.g. "WebShell Generic - wget http - POST") is an attempt to run commands on the
    # server: rce, so it groups with the other command-execution attempts of the same source. Malware is
    # kept for detections of malicious code present on a host.
    _rule(r"web ?shell", Category.RCE),
    _rule(r"remote file inclu|\brfi\b", Category.RFI),
    _rule(r"sql[ _-]?injection|\bsqli\b|union select|select from", Category.SQLI),
    _rule(r"cross[ _-]?site[ _-]?scripting|\bxss\b", Category.XSS),
    _rule(r"/etc/(passwd|shadow)|(directory|path) traversal|local file inclu|\blfi\b", Category.LFI),
    _rule(r"php[ _-]?(code[ _-]?)?injection|php://", Category.PHP_INJECTION, boost=0.0),
    _rule(
        r"brute[ _-]?force|password spray|credential stuffing|\bt1110\b|excessive (failed )?log ?ins?",
        Category.BRUTE_FORCE,
    ),
    _rule(
        r"lateral movement|\bta0008\b|\bt1021\b|\bt1570\b|\bpsexec\b|pass[ _-]the[ _-]hash|wmiexec",
        Category.LATERAL_MOVEMENT,
    ),
    _rule(r"exfiltrat|\bta0010\b|\bt1041\b|\bt1048\b|\bt1567\b", Category.EXFILTRATION),
    _rule(
        r"\bcnc\b|\bc2\b|command and control|beacon|cobalt ?strike|\bcheckin\b|\bta0011\b|\bt1071\b",
        Category.C2,
    ),
    _rule(r"malware|trojan|ransomware|backdoor|\bworm\b|virus|infostealer|coin ?miner|\brat\b", Category.MALWARE),
    _rule(r"command injection|remote (code|command) execution|\brce\b|code execution", Category.RCE, boost=0.0),
    _rule(
        r"\bet scan\b|scanner|nikto|nmap|masscan|sqlmap|zgrab|nuclei|gobuster|dirbuster|port ?scan",
        Category.SCANNER,
        boost=0.0,
    ),
)

# Suricata classtype descriptions (alert.category): the weakest hint, used only when no wording matched.
_CLASSTYPES: dict[str, Category] = {
    "detection of a network scan": Category.SCANNER,
    "a network trojan was detected": Category.MALWARE,
    "malware command and control activity detected": Category.C2,
    "domain observed used for c2 detected": Category.C2,
    "crypto currency mining activity detected": Category.MALWARE,
    "exploit kit activity detected": Category.MALWARE,
    "generic protocol command decode": Category.PROTOCOL,
    "unknown traffic": Category.OTHER,
}
_CLASSTYPE_BOOST = -0.15
_NO_MATCH_BOOST = -0.2
_BROAD_PREFIXES = ("ET HUNTING", "ET INFO", "ET POLICY", "GPL INFO", "GPL POLICY")
"""Rule sets written to be broad (threat hunting, policy); their hits are weaker evidence."""

_SURICATA_BASE = {1: 0.8, 2: 0.6, 3: 0.4}
_SURICATA_SEVERITY = {1: Severity.HIGH, 2: Severity.MEDIUM, 3: Severity.LOW}


def classify_text(texts: Iterable[str | None]) -> tuple[Category, float, float] | None:
    """(category, confidence boost, confidence cap) of the first text rule matching vendor-written text."""
    haystack = " | ".join(t for t in texts if t)
    for rule in _TEXT_RULES:
        if rule.pattern.search(haystack):
            return rule.category, rule.boost, rule.cap
    return None


def classify_suricata(
    *,
    signature: str,
    classtype: str | None,
    metadata_terms: Sequence[str],
    severity: int | None,
    signature_severity: str | None,
) -> Classification:
    """Classify one Suricata alert.

    Category: the first text rule matching the signature or its metadata (tags such as SQL_Injection, CVE ids
    such as CVE_2021_44228), else the classtype, else other.

    Severity: Suricata priority 1 high, 2 medium, 3 low, anything else info; raised to critical when the rule
    author marked it `signature_severity: Critical`.

    Confidence: priority base (1: 0.8, 2: 0.6, 3: 0.4, else 0.3) + the matched rule's boost (+0.1 specific
    wording, 0 generic), -0.15 when only the classtype matched, -0.2 when nothing matched, -0.2 for broad
    rule sets (ET HUNTING/INFO/POLICY); capped by the text rule (a "403 Forbidden" response alert never
    exceeds 0.2).
    """
    base = _SURICATA_BASE.get(severity or 0, 0.3)
    found = classify_text([signature, *metadata_terms])
    if found:
        category, boost, cap = found
    elif classtype and classtype.strip().lower() in _CLASSTYPES:
        category, boost, cap = _CLASSTYPES[classtype.strip().lower()], _CLASSTYPE_BOOST, 1.0
    else:
        category, boost, cap = Category.OTHER, _NO_MATCH_BOOST, 1.0
    if signature.upper().startswith(_BROAD_PREFIXES):
        boost -= 0.2
    level = _SURICATA_SEVERITY.get(severity or 0, Severity.INFO)
    if (signature_severity or "").strip().lower() == "critical":
        level = Severity.CRITICAL
    return Classification(category=category, severity=level, confidence=_clamp(min(base + boost, cap)))


# ------------------------------------------------------------------------------------------- access records

_ACCESS_CONFIDENCE = 0.05
"""The floor (_clamp): an access record is what happened to a request, not a judgement that it was an attack."""


def classify_access() -> Classification:
    """Classify one web server access record (nginx_access.py): always other, info, the lowest confidence.

    Neither the status nor the path says "attack" (the path is the attacker's own text, and a 200 is what every
    benign page gets): the record's worth is as evidence of an outcome beside a source's alerts (what got
    through the WAF, what the application answered), never as a detection that could propose an action.
    Status and upstream are kept on the alert itself (signature, blocked, evidence)."""
    return Classification(category=Category.OTHER, severity=Severity.INFO, confidence=_ACCESS_CONFIDENCE)


# ------------------------------------------------------------------------------------------- auth records

AUTH_FAILURES = "auth-guessing"
"""Rule id of a failed login during guessing (auth_log.py: the service counted the failures, not the client)."""
AUTH_GUESSED = "auth-guessed"
"""Rule id of a login that succeeded after guessing: the account's password is known to the source."""


def classify_auth(guessed: bool) -> Classification:
    """Classify one login attempt the login service counted as guessing (auth_log.py): brute force, low while
    it fails (a lockout-sized event, nothing lost yet), high once it succeeded (the account is the attacker's).
    Only the service's own outcome and counts decide; the user name and anything the client sent never do."""
    if guessed:
        return Classification(category=Category.BRUTE_FORCE, severity=Severity.HIGH, confidence=0.9)
    return Classification(category=Category.BRUTE_FORCE, severity=Severity.LOW, confidence=0.6)


# ------------------------------------------------------------------------------------------------------ OCSF

_OCSF_SEVERITY = {
    1: Severity.INFO,
    2: Severity.LOW,
    3: Severity.MEDIUM,
    4: Severity.HIGH,
    5: Severity.CRITICAL,
    6: Severity.CRITICAL,  # Fatal
}
_OCSF_CONFIDENCE_ID = {1: 0.3, 2: 0.6, 3: 0.9}


def classify_ocsf(
    *,
    texts: Sequence[str],
    has_malware: bool,
    severity_id: int | None,
    confidence_score: float | None,
    confidence_id: int | None,
) -> Classification:
    """Classify one OCSF Detection Finding.

    Category: the first text rule matching the vendor's title, finding types, analytic name or ATT&CK
    tactic/technique names and ids (T1110 brute force, TA0011 C2, TA0008 lateral movement, TA0010
    exfiltration); else malware when the finding lists malware; else other.

    Severity: severity_id 1 info, 2 low, 3 medium, 4 high, 5-6 critical; 0 (Unknown), 99 (Other) or absent
    read as medium: an unknown severity is not evidence of a low one.

    Confidence: the producer's own judgement wins: confidence_score (0-100) / 100, else confidence_id (Low
    0.3, Medium 0.6, High 0.9); without either, 0.5 plus the text rule's boost (or -0.2 if nothing matched).
    """
    found = classify_text(texts)
    if found:
        category, boost, cap = found
    elif has_malware:
        category, boost, cap = Category.MALWARE, 0.0, 1.0
    else:
        category, boost, cap = Category.OTHER, _NO_MATCH_BOOST, 1.0
    if confidence_score is not None and 0 <= confidence_score <= 100:
        confidence = confidence_score / 100
    elif confidence_id in _OCSF_CONFIDENCE_ID:
        confidence = _OCSF_CONFIDENCE_ID[confidence_id]
    else:
        confidence = min(0.5 + boost, cap)
    level = _OCSF_SEVERITY.get(severity_id or 0, Severity.MEDIUM)
    return Classification(category=category, severity=level, confidence=_clamp(confidence))


def _clamp(value: float) -> float:
    return round(min(max(value, 0.05), 0.99), 2)
