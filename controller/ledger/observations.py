"""Access-log lines as observations: what a server answered, kept as evidence, never a case of their own.

An nginx access-log line (controller/ingest/nginx_access.py) is not a detection: it says what got through and
what the application answered. Each benign client of a site would otherwise open a noise case. So the Submitter
(workflows/client.py) routes them here: each becomes an ACCESS ledger record under `_access:<address>` (the
leading `_` keeps it out of incident listings, like `_controller`), and none is signalled to a workflow.

They still count where answers matter: the source's case reads them for its impact verdict
(controller/attackers/impact.py, at plan time), the batch that carries them with the source's alerts shows their stage,
attacker profiles fold them (outcomes 2xx..5xx, paths, bytes), and reports and the audit trail cite them by
ledger seq. The record's payload is the whole Alert, as an ACCESS record's is.

A line may come after the case's alerts were decided (logs are shipped apart, a WAF in detection mode logs
before the application answers). `late_stage` (controller/attackers/impact.py) tells the Submitter whether such
lines raised what the case knows: only a success answer (2xx) can, and only for a source that has a case; then
the case's stage with these lines (earlier ones were judged when they came), which the Submitter signals to the
open case (no alerts in the batch: it never starts one), and the case is decided again exactly as if the line had
come first (controller/case/rounds.py `due`, `stage_alone`). A benign client has no case and wakes nothing; a
closed case is not reopened (its source's next case reads the lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from autonomy_controller.controller.ingest import nginx_access
from autonomy_controller.controller.ledger import Ledger, LedgerRecord, RecordKind
from autonomy_controller.controller.models import Alert, canonical_ip

KEY_PREFIX = "_access:"
CASE_PREFIX = "src:"
CASE_LINES_MAX = 2_000
"""Access-log lines of a case's source that its plan, report and audit trail read: the most recent ones. A source
decides how many lines it makes (one request, one line); read whole, a flood of requests made every plan of its
case read and hold them all (~2 s per 20,000 lines, and their memory), toward the plan step's time limit. Lines
left out can only leave impact evidence unseen, which lowers what the machine does alone, never raises it."""


def is_observation(alert: Alert) -> bool:
    """An access-log line: an answer the server gave, not an alert a sensor raised."""
    return alert.source == nginx_access.SOURCE


def observation_key(address: str) -> str:
    """The ledger key a source's access-log records are kept under."""
    return KEY_PREFIX + (canonical_ip(address) or address)


def record_key(alert: Alert) -> str:
    """Idempotency key of an alert's ACCESS record: a re-read log finds its first record."""
    return f"access:{alert.src_ip}:{alert.id}"


def split(alerts: Iterable[Alert]) -> tuple[list[Alert], list[Alert]]:
    """(alerts for a case, observations), each in the order given."""
    cased: list[Alert] = []
    observed: list[Alert] = []
    for alert in alerts:
        (observed if is_observation(alert) else cased).append(alert)
    return cased, observed


def write(ledger: Ledger, observed: Sequence[Alert]) -> list[LedgerRecord]:
    """Append the observations (one transaction, idempotent per line); their records in the order given."""
    if not observed:
        return []  # most batches carry none: no transaction for them
    groups: dict[str, list[Alert]] = {}
    for alert in observed:
        groups.setdefault(observation_key(str(alert.src_ip)), []).append(alert)
    entries = {key: [(a.model_dump(mode="json"), record_key(a)) for a in alerts] for key, alerts in groups.items()}
    written = ledger.append_groups(RecordKind.ACCESS, "ingest", entries)
    pending = {key: iter(records) for key, records in written.items()}
    return [next(pending[observation_key(str(alert.src_ip))]) for alert in observed]


def merged(
    batches: Mapping[str, Sequence[Alert]], cased: Mapping[str, list[LedgerRecord]], observed: Sequence[LedgerRecord]
) -> dict[str, list[LedgerRecord]]:
    """Each batch's records in its alerts' order: its ALERT records (`cased`, per key) and, in the order they
    were written, the ACCESS records of its observations (`observed`, all batches in turn)."""
    access = iter(observed)
    records: dict[str, list[LedgerRecord]] = {}
    for key, alerts in batches.items():
        alert_records = iter(cased.get(key, []))
        records[key] = [next(access) if is_observation(a) else next(alert_records) for a in alerts]
    return records


def case_address(incident_key: str) -> str | None:
    """The source of a `src:<address>` case (only those have a source whose answers were logged)."""
    return incident_key[len(CASE_PREFIX) :] if incident_key.startswith(CASE_PREFIX) else None


def case_records(ledger: Ledger, incident_key: str, latest: int = CASE_LINES_MAX) -> list[LedgerRecord]:
    """The latest ACCESS records of a case's source (at most `latest`), in ledger order (none for a case not keyed
    by a source)."""
    address = case_address(incident_key)
    return ledger.records(observation_key(address), [RecordKind.ACCESS], latest=latest) if address else []


def case_observations(ledger: Ledger, incident_key: str, latest: int = CASE_LINES_MAX) -> list[Alert]:
    """The case's source's latest access-log lines as Alerts (raw record included: status, bytes, upstream)."""
    return [Alert.model_validate(record.payload) for record in case_records(ledger, incident_key, latest)]
