"""Votes refused before they reach the workflow, written to the ledger: an auditor sees every refused attempt.

The workflow's own refusals are recorded already (its validator's by `cast_vote`, its verifier's by the worker).
These are the service's: no session, a wrong CSRF token, a malformed form, a Slack request not signed by Slack or
from a user nobody mapped, a vote the service cannot sign, Temporal unreachable. Each is an `approval` record
of event `vote_refused`, the shape of the workflow's refusals (who, which incident, action and run as far as the
request said, why), plus the channel (`inbox`, `slack`), the client and the HTTP status.

Where: under the incident's key when the ledger holds that incident (its trail shows the attempt), else under
`_vote-refusals`, a controller key (no case is made of a key someone typed; `incidents list` and the inbox skip
`_` keys). The request's words are cut to `FIELD_CHARS`.

Bounded, since some come from clients nobody authenticated: at most `per_source` records per source (the signed-in
identity, else the client) and `total` in all, per sliding window of `window_seconds`. A refusal over either is
counted, not written, and the next record written carries the count (`unrecorded_before`): every refusal is
accounted for, in the ledger or in a later record's count (the count of the last ones waits for the next refusal).
The windows live in the service's memory, per replica, like the sign-in throttle's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from autonomy_controller.controller.ledger import Ledger, RecordKind
from autonomy_controller.workflows.operations import CONTROLLER_KEYS

if TYPE_CHECKING:
    from autonomy_controller.controller.service.approvals import Refused

log = logging.getLogger(__name__)
REFUSALS_KEY = "_vote-refusals"
FIELD_CHARS = 200
MAX_SOURCES = 10_000
"""Sources tracked at most: beyond it the idlest are forgotten first (made-up addresses cannot grow memory)."""


@dataclass(frozen=True)
class Attempt:
    """A vote as far as the request said (empty where it did not), and who sent it."""

    channel: str
    client: str
    """The client address, or the Slack user id: where the request came from."""
    identity: str | None = None
    """The authenticated identity (the signed-in account's, the mapped Slack user's); None: nobody authenticated."""
    incident: str = ""
    action_id: str = ""
    run_id: str = ""
    choice: str = ""

    @property
    def source(self) -> str:
        return f"user:{self.identity}" if self.identity else f"{self.channel}:{self.client}"


@dataclass(frozen=True)
class RefusalLimits:
    per_source: int = 10
    total: int = 120
    window_seconds: float = 60.0


class RefusalRecorder:
    def __init__(
        self, ledger: Ledger, limits: RefusalLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ledger = ledger
        self.limits = limits or RefusalLimits()
        self._clock = clock
        self._by_source: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self.unrecorded = 0
        """Refusals counted but not written since the last record written."""

    async def record(self, attempt: Attempt, status: int, reason: str) -> None:
        """Write the refusal (or count it, over the limits). A ledger that cannot be written is logged: the vote
        was refused anyway, and the refusal is what the person sees."""
        if not self._admit(attempt.source):
            self.unrecorded += 1
            return
        carried, self.unrecorded = self.unrecorded, 0
        try:
            await asyncio.to_thread(self._write, attempt, status, reason, carried)
        except (SQLAlchemyError, OSError) as exc:
            self.unrecorded += carried + 1
            log.error("a refused vote could not be recorded (%s): %s", attempt.source, exc)

    async def record_refused(self, attempt: Attempt, refused: Refused) -> None:
        """A front end's refusal, unless the vote path recorded it already (the workflow's refusals are its own)."""
        if not refused.recorded:
            await self.record(attempt, refused.status, refused.text)

    def _admit(self, source: str) -> bool:
        now, window = self._clock(), self.limits.window_seconds
        while self._all and self._all[0] <= now - window:
            self._all.popleft()
        times = self._by_source.pop(source, None) or deque()
        while times and times[0] <= now - window:
            times.popleft()
        admitted = len(times) < self.limits.per_source and len(self._all) < self.limits.total
        if admitted:
            times.append(now)
            self._all.append(now)
        if times:
            self._by_source[source] = times  # re-inserted last: the idlest sources come first
            while len(self._by_source) > MAX_SOURCES:
                del self._by_source[next(iter(self._by_source))]
        return admitted

    def _write(self, attempt: Attempt, status: int, reason: str, carried: int) -> None:
        incident = attempt.incident[:FIELD_CHARS]
        typed = bool(incident) and not incident.startswith(CONTROLLER_KEYS)
        known = typed and self.ledger.incident_head(incident) is not None
        self.ledger.append(
            incident if known else REFUSALS_KEY,
            RecordKind.APPROVAL,
            f"user:{attempt.identity}" if attempt.identity else f"{attempt.channel}:unauthenticated",
            {
                "action_id": attempt.action_id[:FIELD_CHARS],
                "event": "vote_refused",
                "approver": attempt.identity or "unauthenticated",
                "choice": attempt.choice[:FIELD_CHARS],
                "detail": reason[: FIELD_CHARS * 5],
                "code": f"http_{status}",
                "channel": attempt.channel,
                "client": attempt.client[:FIELD_CHARS],
                "incident": incident,
                "run_id": attempt.run_id[:FIELD_CHARS],
                "unrecorded_before": carried,
            },
        )
