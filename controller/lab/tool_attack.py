"""A tool-driven attack from one address: dozens of distinct payloads across four classes, as a scanner such as
sqlmap or a fuzzer sends them, built from the named attacks' kinds (controller/lab/attacks.py). What triage
calls malicious with confidence (many distinct requests, libinjection, CRS's own blocking) and a single stray
hit never is; the lab's tests send it to show what L3 contains alone.
"""

from __future__ import annotations

from autonomy_controller.controller.lab.attacks import Attack, HttpResult, request
from autonomy_controller.controller.lab.lab import Lab


def _payloads() -> list[Attack]:
    sqli = [Attack(f"sqli-{i}", "sqli", "SQLi (OR 1=1)", f"/item?id={i}%27%20OR%201=1--") for i in range(1, 17)]
    sqli += [
        Attack(
            f"sqli-union-{column}", "sqli", "SQLi (UNION)", f"/?id=1%27%20UNION%20SELECT%20{column}%20FROM%20users--"
        )
        for column in ("password", "username", "email", "token")
    ]
    xss = [
        Attack(f"xss-{i}", "xss", "XSS (<script>)", f"/search?q=%3Cscript%3Ealert({i})%3C/script%3E") for i in range(8)
    ]
    files = ("passwd", "shadow", "hosts", "group")
    lfi = [Attack(f"traversal-{f}", "lfi", "traversal", f"/download?file=../../../../etc/{f}") for f in files]
    rce = [Attack(f"cmdi-{f}", "rce", "command injection", f"/ping?host=127.0.0.1%3Bcat%20/etc/{f}") for f in files]
    return [*sqli, *xss, *lfi, *rce]


TOOL_ATTACK: tuple[Attack, ...] = tuple(_payloads())
"""36 payloads: 20 SQLi, 8 XSS, 4 path traversal, 4 command injection; each incident key sees several."""


def send_tool_attack(lab: Lab, timeout: float = 3.0, categories: tuple[str, ...] = ()) -> list[HttpResult]:
    """Every payload (of `categories`, when given), in order, from the attacker namespace (198.51.100.66) to the
    victim's WAF."""
    netns = lab.topology.attacker
    target = lab.topology.target_for(netns)
    chosen = [attack for attack in TOOL_ATTACK if not categories or attack.category in categories]
    return [request(netns, target, attack, lab.config.http_port, timeout) for attack in chosen]
