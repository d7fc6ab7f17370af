"""The embedded Temporal dev server's start: a port lost to another process is a retry on a fresh port when the
port was ours to choose, an error naming the port when the caller gave it, and a server that cannot start at all
is an error after a bounded number of tries (never a hang, never a false success)."""

from __future__ import annotations

import socket

import pytest

from autonomy_controller.controller.processes import free_port
from autonomy_controller.workflows.devserver import STARTS, DevServer, DevServerError


def test_a_chosen_port_lost_before_the_start_is_replaced_by_a_fresh_one() -> None:
    server = DevServer()
    lost = server.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", lost))  # another process took it between our pick and the start
        with server:
            assert server.port != lost
            with socket.create_connection(("127.0.0.1", server.port), timeout=2):
                pass


def test_a_port_the_caller_gave_is_never_swapped() -> None:
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        with pytest.raises(DevServerError, match=f"port {port} is already in use"):
            DevServer(port=port).start()


def test_a_server_that_cannot_start_fails_after_a_bounded_number_of_tries() -> None:
    server = DevServer(extra_args=["--no-such-flag"])  # the CLI refuses it: every try exits while starting
    first = server.port
    with pytest.raises(DevServerError, match="exited with"):
        server.start(timeout=20)
    assert server.port != first  # tried again on a fresh port, then gave up (STARTS tries in all)
    assert server.process is None or server.process.poll() is not None
    assert STARTS > 1
