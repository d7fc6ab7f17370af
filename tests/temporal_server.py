"""The Temporal server of the TLS and topology tests (workflows/cluster.py, shared with bench/scale.py), and the
tests' rule for a server that is not built."""

from __future__ import annotations

import shutil

import pytest

from autonomy_controller.workflows.cluster import (
    SERVER_DIR,
    SERVER_NAME,
    TEMPORAL_SERVER_VERSION,
    Pki,
    Postgres,
    TemporalServer,
    built,
    make_pki,
    wait_serving,
)

__all__ = ["SERVER_NAME", "Pki", "Postgres", "TemporalServer", "make_pki", "require_server", "wait_serving"]


def require_server() -> None:
    """Skip where the server cannot be built (no Go); fail where it could be but was not (CI builds it)."""
    if built():
        return
    if shutil.which("go") is None:
        pytest.skip(f"the Temporal server {TEMPORAL_SERVER_VERSION} is not built and Go is missing to build it")
    pytest.fail(f"the Temporal server is not built at {SERVER_DIR}: `make temporal-server` (make setup does it)")
