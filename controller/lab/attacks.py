"""Named attacks, sent with curl from a lab namespace: real requests the real WAF judges.

Each is one request of a well-known kind that OWASP CRS 3.3 stops at paranoia level 1 (measured in the lab:
every one gets 403 and one JSON audit line, classified as the category given here). A timed-out request is
reported as such (`status None`, curl exit 28): that is what a blocked source sees once nftables drops it.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field

from autonomy_controller.controller.lab.network import ip_binary
from autonomy_controller.controller.lab.packages import find_binary
from autonomy_controller.controller.lab.waf import SERVER_NAME

CURL_TIMEOUT_EXIT = 28
CURL_CONNECT_REFUSED_EXIT = 7


@dataclass(frozen=True)
class Attack:
    name: str
    category: str
    """What the ingest classifies the WAF's alert as (the incident key is `<category>:<source>`)."""
    what: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    rules: str = ""
    """The CRS rule families that fire, for the docs and `lab attack --list`."""


ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        Attack(
            "sqli",
            "sqli",
            "SQL injection in a query parameter (UNION SELECT)",
            "/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
            rules="942100 (libinjection), 942190, 942270, 942360; 949110 anomaly total",
        ),
        Attack(
            "xss",
            "xss",
            "reflected cross-site scripting (<script> in a parameter)",
            "/search?q=%3Cscript%3Edocument.cookie%3C/script%3E",
            rules="941100 (libinjection), 941110, 941160, 941180; 949110",
        ),
        Attack(
            "traversal",
            "lfi",
            "path traversal to /etc/passwd",
            "/download?file=../../../../etc/passwd",
            rules="930100, 930110, 930120, 932160; 949110",
        ),
        Attack(
            "cmdi",
            "rce",
            "OS command injection (;cat /etc/passwd)",
            "/ping?host=127.0.0.1%3Bcat%20/etc/passwd",
            rules="932100, 932160, 930120; 949110",
        ),
        Attack(
            "scanner",
            "scanner",
            "a vulnerability scanner's User-Agent (Nikto)",
            "/",
            headers={"User-Agent": "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"},
            rules="913100; 949110",
        ),
    )
}
BENIGN = Attack("benign", "-", "a plain page request (no attack)", "/")


@dataclass(frozen=True)
class HttpResult:
    name: str
    netns: str
    url: str
    status: int | None
    """The HTTP status, or None when no answer came (timed out, refused)."""
    curl_exit: int
    seconds: float
    started_at: float
    """time.time() just before curl ran: where an alert-to-block latency starts."""

    @property
    def timed_out(self) -> bool:
        return self.curl_exit == CURL_TIMEOUT_EXIT

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status} in {self.seconds * 1000:.0f} ms"
        if self.timed_out:
            return f"no answer: timed out after {self.seconds:.1f} s (blocked?)"
        return f"no answer: curl exit {self.curl_exit}"


def request(netns: str, target: str, attack: Attack = BENIGN, port: int = 8080, timeout: float = 3.0) -> HttpResult:
    """One HTTP request from `netns` to `target`, as `attack` shapes it. Never raises for a network failure:
    a dropped request is a result (the one containment is meant to cause)."""
    curl = find_binary("curl")
    if curl is None:
        raise RuntimeError("curl is missing: apt-get install curl")
    url = f"http://{target}:{port}{attack.path}"
    headers = {"Host": SERVER_NAME, **attack.headers}
    command = [ip_binary(), "netns", "exec", netns, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}"]
    command += ["--path-as-is", "--max-time", str(timeout)]
    for name, value in headers.items():
        command += ["-A", value] if name.lower() == "user-agent" else ["-H", f"{name}: {value}"]
    command.append(url)
    started_at, began = time.time(), time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10, check=False)
    seconds = time.monotonic() - began
    code = result.stdout.strip()
    status = int(code) if result.returncode == 0 and code.isdigit() and code != "000" else None
    return HttpResult(attack.name, netns, url, status, result.returncode, seconds, started_at)


def attack(name: str, netns: str, target: str, port: int = 8080, timeout: float = 3.0) -> HttpResult:
    try:
        chosen = ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}: one of {', '.join(ATTACKS)}") from None
    return request(netns, target, chosen, port, timeout)
