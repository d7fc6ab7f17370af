"""Sign-in throttling: password guessing against the inbox slows down to nothing, and a guesser cannot lock a
person out of it.

Two counts of failed sign-ins, each over a sliding window:

- **per client address**: after `per_address` failures in `window_seconds`, that address is refused (429) until
  its oldest failure leaves the window. This stops one machine guessing at many names.
- **per account name**: after `per_name` failures from anywhere, each further attempt at that name waits a
  delay that doubles with every failure (1 s, 2 s, 4 s ... at most `max_delay_seconds`) after the last one.
  This stops guessing at one name from many machines, at a bounded cost, and never locks the name: its owner
  signing in after the delay works (a hard lockout would let anyone lock an approver out during an incident).

A success clears its name's count (not its address's: a guesser with an account of their own could otherwise
sign in between guesses to start over). A refused attempt verifies no password (argon2 costs
CPU, and an answer would leak whether the guess was right). The counts live in the service's memory: a
restart clears them, and each replica of the service counts for itself (limits multiply by replicas). The
client address is the connection's peer, or the X-Forwarded-For of a proxy uvicorn trusts (FORWARDED_ALLOW_IPS,
by default only 127.0.0.1).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_TRACKED = 10_000
"""Names and addresses kept at most (each): beyond it the entries idle longest are forgotten first, so a flood
of made-up names cannot grow memory without bound."""


@dataclass(frozen=True)
class ThrottleConfig:
    per_address: int = 20
    per_name: int = 5
    window_seconds: float = 900.0
    max_delay_seconds: float = 900.0


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)


class SignInThrottle:
    def __init__(self, config: ThrottleConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or ThrottleConfig()
        self._clock = clock
        self._by_address: dict[str, _Failures] = {}
        self._by_name: dict[str, _Failures] = {}

    def wait(self, name: str, address: str) -> float:
        """Seconds before this name may be tried from this address; 0 when it may be tried now."""
        now = self._clock()
        waits = [0.0]
        by_address = self._recent(self._by_address, address, now)
        if len(by_address) >= self.config.per_address:
            waits.append(by_address[0] + self.config.window_seconds - now)
        by_name = self._recent(self._by_name, _key(name), now)
        over = len(by_name) - self.config.per_name
        if over >= 0:
            delay = min(2.0**over, self.config.max_delay_seconds)
            waits.append(by_name[-1] + delay - now)
        return max(waits)

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        for table, key in ((self._by_address, address), (self._by_name, _key(name))):
            failures = table.pop(key, None) or _Failures()
            failures.times.append(now)
            table[key] = failures  # re-inserted last: dicts keep insertion order, the oldest idle come first
            while len(table) > MAX_TRACKED:
                del table[next(iter(table))]

    def succeeded(self, name: str) -> None:
        self._by_name.pop(_key(name), None)

    def _recent(self, table: dict[str, _Failures], key: str, now: float) -> deque[float]:
        failures = table.get(key)
        if failures is None:
            return deque()
        while failures.times and failures.times[0] <= now - self.config.window_seconds:
            failures.times.popleft()
        if not failures.times:
            del table[key]
        return failures.times


def _key(name: str) -> str:
    return name.strip().lower()[:256]
