"""TLS to a real Temporal server: the pinned release built from source, PostgreSQL persistence, mutual TLS on its
frontend (tests/temporal_server.py). A client with the right CA and its own certificate gets in; a client that
trusts another CA, or has no certificate, or one from another CA, does not.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from autonomy_controller.workflows.cluster import pollers
from autonomy_controller.workflows.connection import TemporalConnection
from autonomy_controller.workflows.contracts import TASK_QUEUE
from autonomy_controller.workflows.operations import TemporalUnavailable, open_client
from tests.temporal_server import SERVER_NAME, Pki, Postgres, TemporalServer, make_pki, require_server, wait_serving

POSTGRES_URL = os.environ.get("AUTONOMY_TEST_POSTGRES_URL")


def good(pki: Pki, address: str) -> TemporalConnection:
    return TemporalConnection(
        address=address, tls_cert=pki.client_cert, tls_key=pki.client_key, tls_ca=pki.ca, tls_server_name=SERVER_NAME
    ).validate()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TemporalServer]:
    require_server()
    if not POSTGRES_URL:
        pytest.fail("AUTONOMY_TEST_POSTGRES_URL is not set: `bash .ci/postgres.sh` prints it (make unit does)")
    running = TemporalServer(tmp_path_factory.mktemp("temporal"), Postgres.from_url(POSTGRES_URL), pki)
    running.setup_schema()
    try:
        running.start()
        yield running
    finally:
        running.stop()
        running.drop()


@pytest_asyncio.fixture
async def serving(server: TemporalServer, pki: Pki) -> AsyncIterator[TemporalServer]:
    await wait_serving(server, good(pki, server.address))
    yield server


async def refused(connection: TemporalConnection) -> str:
    """open_client must fail (not hang): TemporalUnavailable naming where, within the connect timeout."""
    with pytest.raises(TemporalUnavailable) as caught:
        await open_client(connection, timeout=20)
    assert connection.address in str(caught.value)
    return str(caught.value)


async def test_a_client_with_the_right_ca_and_its_certificate_gets_in(serving: TemporalServer, pki: Pki) -> None:
    client = await open_client(good(pki, serving.address))
    described = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
    assert described.namespace_info.name == "default"
    assert good(pki, serving.address).describe().count("mTLS") == 1


async def test_a_client_that_trusts_another_ca_refuses_the_server(serving: TemporalServer, pki: Pki) -> None:
    wrong = TemporalConnection(
        address=serving.address,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
        tls_ca=pki.stranger_ca,
        tls_server_name=SERVER_NAME,
    )
    await refused(wrong.validate())


async def test_a_server_name_the_certificate_does_not_carry_is_refused(serving: TemporalServer, pki: Pki) -> None:
    wrong = TemporalConnection(
        address=serving.address,
        tls_cert=pki.client_cert,
        tls_key=pki.client_key,
        tls_ca=pki.ca,
        tls_server_name="other.test",
    )
    await refused(wrong.validate())


async def test_the_server_refuses_a_client_without_a_certificate(serving: TemporalServer, pki: Pki) -> None:
    no_key = TemporalConnection(address=serving.address, tls_ca=pki.ca, tls_server_name=SERVER_NAME)
    await refused(no_key.validate())


async def test_the_server_refuses_a_certificate_from_another_ca(serving: TemporalServer, pki: Pki) -> None:
    stranger = TemporalConnection(
        address=serving.address,
        tls_cert=pki.stranger_cert,
        tls_key=pki.stranger_key,
        tls_ca=pki.ca,
        tls_server_name=SERVER_NAME,
    )
    await refused(stranger.validate())


async def test_plaintext_to_a_tls_frontend_is_refused(serving: TemporalServer) -> None:
    await refused(TemporalConnection(address=serving.address))


async def test_a_certificate_without_its_key_never_reaches_the_server(serving: TemporalServer, pki: Pki) -> None:
    missing_key = TemporalConnection(
        address=serving.address, tls_cert=pki.client_cert, tls_ca=pki.ca, tls_server_name=SERVER_NAME
    )
    with pytest.raises(ValueError, match="AUTONOMY_TEMPORAL_TLS_KEY"):
        await open_client(missing_key, timeout=20)


async def test_the_worker_command_connects_with_the_environments_tls_settings(
    serving: TemporalServer, pki: Pki, tmp_path: Path
) -> None:
    """`autonomy worker` as docs/deploy.md runs it: the AUTONOMY_TEMPORAL_* variables, nothing else."""
    client = await open_client(good(pki, serving.address))
    env = {**os.environ, **serving.client_env(), "AUTONOMY_STATE_DIR": str(tmp_path)}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "autonomy_controller.controller.cli", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while await pollers(client, TASK_QUEUE) < 1:
            assert worker.poll() is None, log.read_text()
            assert asyncio.get_running_loop().time() < deadline, f"the worker never polled: {log.read_text()}"
            await asyncio.sleep(0.5)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert worker.returncode == 0, log.read_text()
    output = log.read_text()
    assert serving.address in output
    assert pki.client_key.read_text().splitlines()[1] not in output  # the private key never reaches a log
