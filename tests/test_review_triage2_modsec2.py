"""Adversarial review of triage's reading of ModSecurity v2 records: the request writes the matched variable's
name into each rule message, and mod_security2 logs that name with its quotes unescaped (log_escape_nq in
apache2/re_variables.c: `ARGS:%s`). The parser took the first `[id "..."]`, `[severity "..."]` and every
`[tag "..."]` anywhere in the string, so an argument named like rule metadata turned a PL4 protocol warning into
a critical PL1 libinjection SQLi hit: the attacker's own text raising its alert's category and triage."""

from __future__ import annotations

import json

from autonomy_controller.controller.case.grouping import incident_from_alerts
from autonomy_controller.controller.ingest import parse_line
from autonomy_controller.controller.models import Category
from autonomy_controller.controller.triage import triage
from tests.test_triage import model

FORGED_NAME = 'x"] [id "942100"] [msg "SQL Injection Attack Detected via libinjection"] [severity "CRITICAL"] [tag "attack-sqli"] [tag "paranoia-level/1"] [x "'  # noqa: E501
RULE_920273 = (
    '[file "/usr/share/modsecurity-crs/rules/REQUEST-920-PROTOCOL-ENFORCEMENT.conf"] [line "1571"] [id "920273"] '
    '[msg "Invalid character in request (outside of very strict set)"] [data "ARGS:{name}=caf\\xe9"] '
    '[severity "CRITICAL"] [ver "OWASP_CRS/3.3.4"] [tag "application-multi"] [tag "language-multi"] '
    '[tag "platform-multi"] [tag "attack-protocol"] [tag "paranoia-level/4"] [tag "OWASP_CRS"]'
)


def record(name: str) -> str:
    """A mod_security2 JSON audit record (the shape of shared/samples/modsecurity2-apache-audit.jsonl) whose one
    hit is 920273 on an argument called `name`, as mod_security2 writes it."""
    text = f"Warning. Found 1 byte(s) in ARGS:{name} outside range: 38,44-46,48-58,61,65-90,95,97-122. "
    return json.dumps(
        {
            "transaction": {
                "time": "23/Nov/2026:08:41:10.759627 +0000",
                "transaction_id": f"v2-{len(name)}",
                "remote_address": "203.0.113.9",
                "remote_port": 36130,
                "local_address": "127.0.0.1",
                "local_port": 8080,
            },
            "request": {"request_line": "GET /?q=caf%E9 HTTP/1.1", "headers": {"Host": "shop.example"}},
            "audit_data": {
                "messages": [text + RULE_920273.format(name=name.replace('"', '\\"'))],
                "engine_mode": "DETECTION_ONLY",
            },
        }
    )


def test_a_variable_name_written_as_rule_metadata_is_not_read_as_the_rule() -> None:
    plain = parse_line(record("q"), "review").alerts[0]
    forged = parse_line(record(FORGED_NAME), "review").alerts[0]
    assert plain.rule_ids == forged.rule_ids == ["920273"]
    assert forged.category is plain.category is Category.PROTOCOL
    assert forged.severity == plain.severity and forged.confidence == plain.confidence
    scores = [triage(incident_from_alerts("src:203.0.113.9", [a]), model()) for a in (plain, forged)]
    assert scores[1].score == scores[0].score and scores[1].evidence.libinjection_hits == 0
