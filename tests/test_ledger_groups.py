"""`Ledger.append_groups`: several incidents' records in one transaction and one set of statements.

The chain it writes must be the one appending the incidents one after another writes (same seqs, hashes and
incident chains), on both backends; idempotency holds across the incidents of one call (a key reused by
another incident is a conflict and nothing of the call is written).
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from autonomy_controller.controller.ledger import IdempotencyConflict, Ledger, LedgerRecord, RecordKind
from tests.test_ledger import ledger_url  # noqa: F401  # the fixture: SQLite and PostgreSQL

Groups = dict[str, list[tuple[dict[str, object], str | None]]]


def _groups(start: int, incidents: int, per: int) -> Groups:
    return {
        f"inc-{i}": [({"n": start + j, "incident": i}, f"alert:inc-{i}:{start + j}") for j in range(per)]
        for i in range(incidents)
    }


def test_groups_continue_each_incident_and_return_held_records(ledger_url: str) -> None:  # noqa: F811
    first, second = _groups(0, 5, 3), _groups(2, 5, 3)  # the second call repeats a key per incident
    with Ledger.from_url(ledger_url) as grouped:
        grouped.append("other", RecordKind.REPORT, "someone", {"text": "an incident the groups do not touch"})
        returned = grouped.append_groups(RecordKind.ALERT, "ingest", first)
        again = grouped.append_groups(RecordKind.ALERT, "ingest", second)
        assert grouped.verify().ok, grouped.verify()
        total = len(_all(grouped))
        heads = {h.incident_key: (h.seq, h.count) for h in grouped.incidents()}
    assert [r.seq for rs in returned.values() for r in rs] == list(range(2, 17))  # incident after incident
    for key, records in again.items():  # a held key returns the first record; the new ones follow it
        assert records[0] == returned[key][2]
        assert [r.idempotency_key for r in records] == [k for _, k in second[key]]
    assert heads["inc-0"] == (again["inc-0"][-1].seq, 5) and heads["other"] == (1, 1)
    assert total == 1 + 5 * 5


def test_groups_chain_like_appends_one_incident_at_a_time(ledger_url: str) -> None:  # noqa: F811
    groups = _groups(0, 4, 3)
    with Ledger.from_url(ledger_url) as grouped:
        grouped.append_groups(RecordKind.ALERT, "ingest", groups)
        expected = [(r.seq, r.incident_key, r.idempotency_key, r.payload) for r in _all(grouped)]
        links = [(r.prev_hash, r.incident_prev_hash) for r in _all(grouped)]
        by_hash = {r.hash: r.seq for r in _all(grouped)}
    assert [seq for seq, *_ in expected] == list(range(1, 13))
    for key, entries in groups.items():  # each incident's records in its entries' order, consecutive seqs
        seqs = [seq for seq, incident, *_ in expected if incident == key]
        assert seqs == list(range(seqs[0], seqs[0] + len(entries)))
    for n, (prev, incident_prev) in enumerate(links[1:], start=2):  # the global chain and each incident's chain
        assert by_hash[prev] == n - 1
        incident = expected[n - 1][1]
        earlier = [seq for seq, key, *_ in expected[: n - 1] if key == incident]
        assert (by_hash.get(incident_prev) == earlier[-1]) if earlier else incident_prev not in by_hash


def _all(ledger: Ledger) -> list[LedgerRecord]:
    return sorted((r for h in ledger.incidents() for r in ledger.records(h.incident_key)), key=lambda r: r.seq)


def test_a_key_reused_by_another_incident_of_the_call_is_a_conflict_and_writes_nothing(ledger_url: str) -> None:  # noqa: F811
    with Ledger.from_url(ledger_url) as ledger:
        ledger.append("inc-0", RecordKind.ALERT, "ingest", {"n": 0}, idempotency_key="held")
        with pytest.raises(IdempotencyConflict, match="shared"):
            ledger.append_groups(
                RecordKind.ALERT, "ingest", {"inc-1": [({"n": 1}, "shared")], "inc-2": [({"n": 2}, "shared")]}
            )
        with pytest.raises(IdempotencyConflict, match="record 1"):
            ledger.append_groups(
                RecordKind.ALERT, "ingest", {"inc-1": [({"n": 1}, "fresh")], "inc-2": [({"n": 2}, "held")]}
            )
        assert ledger.head().seq == 1 and ledger.find("fresh") is None and ledger.verify().ok


def test_a_call_of_200_incidents_is_a_handful_of_statements(ledger_url: str) -> None:  # noqa: F811
    with Ledger.from_url(ledger_url) as ledger:
        statements: list[str] = []
        event.listen(ledger.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        ledger.append_groups(RecordKind.ALERT, "ingest", _groups(0, 200, 3))
        writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE", "SELECT"))]
        assert len(writes) <= 8, writes  # lock, heads, keys, insert, head, new incidents (not 200 x 6)
        assert ledger.head().seq == 600 and len(ledger.incidents()) == 200 and ledger.verify().ok
