"""Adversarial review: `ingest --follow` (workflows/follow.py LineSource) on a log truncated in place.

logrotate's `copytruncate` empties the file the sensor keeps writing; the follower notices only when the file is
shorter than where it stopped reading.
"""

from __future__ import annotations

from pathlib import Path

from autonomy_controller.workflows.follow import LineSource


def test_a_log_truncated_and_refilled_between_two_polls_loses_no_record(tmp_path: Path) -> None:
    log = tmp_path / "eve.json"
    log.write_bytes(b'{"a":1}\n{"a":2}\n{"a":3}\n')
    source = LineSource(log, None)
    assert [line.text for line in source.read(100)] == ['{"a":1}', '{"a":2}', '{"a":3}']
    assert not source.rotate_if_needed()
    with log.open("r+b") as handle:
        handle.truncate(0)  # copytruncate
    with log.open("ab") as handle:  # the sensor writes on before the next poll
        handle.write(b'{"b":"new record 1"}\n{"b":"new record 2"}\n')
    read = [line.text for line in source.read(100)]
    if source.rotate_if_needed():
        read += [line.text for line in source.read(100)]
    assert read == ['{"b":"new record 1"}', '{"b":"new record 2"}']
    assert any("truncated and written again" in note for note in source.notes)
    with log.open("ab") as handle:  # an append leaves the start as read: reading goes on, nothing twice
        handle.write(b'{"b":"new record 3"}\n')
    assert [line.text for line in source.read(100)] == ['{"b":"new record 3"}']
