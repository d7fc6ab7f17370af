"""The production-topology server's ports (workflows/cluster.py): each service gets its own. Two services given one
port made the server exit at start ("Failed to start ringpop listener: address already in use"), as a CI run saw."""

from __future__ import annotations

import random
import socket

import pytest

from autonomy_controller.workflows.cluster import low_ports


def test_the_ports_are_distinct_even_when_the_draw_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([25_001, 25_001, 25_001, 25_002, 25_001, 25_003])
    monkeypatch.setattr(random, "randint", lambda _low, _high: next(draws))
    assert low_ports(3) == [25_001, 25_002, 25_003]


def test_a_port_in_use_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        draws = iter([busy, 25_004])
        monkeypatch.setattr(random, "randint", lambda _low, _high: next(draws))
        assert low_ports(1) == [25_004]
