"""One request seen by two sensors: an IDS alert whose answer it did not see, and the access log's record of it.

Suricata logs an alert when it inspects the request, often before the server answers (no `http.status`). Its
outcome is then unknown, and the access log's record of the same request tells it: the WAF's 403 (never proxied)
means refused, the application's 2xx means answered (docs/attackers.md, "Stages"). Both sensors write the flow's
client address and port, the server's address and port, and the request target as sent; the record is written
when the answer went out, so the two are paired within MATCH_WINDOW of each other, the nearest first.

Records arrive in either order (two files, read by one follower, folded batch by batch), so a profile keeps, for
a while and bounded (`Limits.pairing`), both the latest access-log answers (for an alert folded after its record)
and the alerts still waiting for theirs (for a record folded after its alert). A waiting alert counts as not
refused, as an alert with no record in the access log does (a server the log does not cover); its record, once it
comes and says refused, moves it to refused and withdraws a possible_success that rested on it (fold.py).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from autonomy_controller.controller.attackers.profile import Answer, AttackerProfile, Unanswered
from autonomy_controller.controller.ingest import nginx_access
from autonomy_controller.controller.models import canonical_ip

if TYPE_CHECKING:
    from autonomy_controller.controller.attackers.observe import Observation

MATCH_WINDOW = timedelta(seconds=60)
"""Between an alert on a request and the access log's record of it: the record is written when the answer went
out (nginx's proxy timeouts are 60 s by default), at one-second resolution. A client reuses its port for the
same server far less often than this."""
EVE_ENDS = (("src_ip", "src_port"), ("dest_ip", "dest_port"))
"""An EVE record's two ends: the client is either (an alert on the server's answer names the server first)."""


def request_key(payload: dict[str, Any], raw: dict[str, Any]) -> str | None:
    """The identity of the request an alert record is about, as an IDS (EVE) and the access log both write it: the
    client's address and port, the server's address and port, the request target. None when any is missing."""
    client = payload.get("src_ip")
    port = _client_port(payload.get("source"), client, raw)
    parts = (client, port, payload.get("dst_ip"), payload.get("dst_port"), payload.get("url"))
    if any(part is None or part == "" for part in parts):
        return None
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def _client_port(source: object, client: object, raw: dict[str, Any]) -> int | None:
    if source == nginx_access.SOURCE:
        return whole_number(raw.get("remote_port"))
    for address_key, port_key in EVE_ENDS:
        address = raw.get(address_key)
        if isinstance(address, str) and _canonical(address) == client:
            return whole_number(raw.get(port_key))
    return None


def answer_of(profile: AttackerProfile, obs: Observation) -> Answer | None:
    """The access log's record of `obs`'s request folded before it, if the profile still holds it."""
    near = [a for a in profile.answers if a.request == obs.request and _near(a.at, obs.at)]
    return min(near, key=lambda a: abs(a.at - obs.at), default=None)


def remember_answer(profile: AttackerProfile, obs: Observation, cap: int) -> None:
    """Keep an access-log record for alerts on its request folded after it: the latest `cap`, within the window."""
    assert obs.request is not None
    kept = [a for a in profile.answers if _near(a.at, obs.at)]
    kept.append(Answer(request=obs.request, at=obs.at, status=obs.status, blocked=obs.blocked))
    profile.answers = kept[-cap:]


def wait_for_answer(profile: AttackerProfile, obs: Observation, cap: int) -> None:
    """Keep an alert whose answer is unknown until the access log's record of its request comes (the latest `cap`:
    one pushed out stays counted as not refused, as an alert the access log holds no record of)."""
    assert obs.request is not None
    profile.unanswered.append(Unanswered(request=obs.request, at=obs.at, path=obs.path))
    del profile.unanswered[:-cap]


def answered(profile: AttackerProfile, answer: Observation) -> list[Unanswered]:
    """The waiting alerts `answer` (an access-log record) is the record of, taken out of the waiting list."""
    matched = [u for u in profile.unanswered if u.request == answer.request and _near(u.at, answer.at)]
    if matched:
        profile.unanswered = [u for u in profile.unanswered if u not in matched]
    return matched


def _near(a: datetime, b: datetime) -> bool:
    try:
        return abs(a - b) <= MATCH_WINDOW
    except TypeError:  # one naive, one aware: not comparable, not paired
        return False


def _canonical(address: str) -> str | None:
    try:
        return canonical_ip(address)
    except ValueError:
        return None


def whole_number(value: object) -> int | None:
    """A number a sensor wrote as a number or as digits (nginx quotes some of its variables), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None
