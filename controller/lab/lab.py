"""The lab as one object: `Lab(config).up()`, `.status()`, `.attack(name)`, `.down()`.

What `up` builds, in order, each step idempotent: the Debian packages (installed when root with apt-get), the
namespaces (victim, attacker, benign), nginx + ModSecurity + CRS inside the victim writing a JSON audit log and
a JSON access log, Suricata 7 on the victim's interfaces writing EVE JSON (controller/lab/ids.py), the
enforcement file that points the nftables adapter at the victim namespace (with the attacker -> victim
probe that verifies a block, from the blocked address itself when it is one of the replay's sources, and the
benign -> victim bystander check), and, unless asked not to, the
background services: the embedded Temporal dev server, a worker, and one `ingest --follow` per sensor log (the
WAF's audit log, Suricata's EVE, nginx's access log).
Everything lives under one folder (default `var/lab/`): configs, logs, pid files, the ledger, Temporal's DB.

`down` stops the services, Suricata, nginx and every process left in the lab's namespaces, deletes the namespaces (the
nft tables live inside the victim one and go with it), and then checks that nothing is left: no namespace of
the lab by name or by inode, no lab process. The files stay for inspection; `up --fresh` starts from none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autonomy_controller.actions.adapters.nftables.lock import LOCK_DIRS
from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.lab.attacks import ATTACKS, BENIGN, HttpResult, request
from autonomy_controller.controller.lab.ids import Ids
from autonomy_controller.controller.lab.login import LoginService
from autonomy_controller.controller.lab.network import (
    LabNetwork,
    Topology,
    existing_namespaces,
    namespace_inode,
    processes_in_inode,
    run_ip,
)
from autonomy_controller.controller.lab.packages import SBIN_PATH, ensure_packages, find_binary
from autonomy_controller.controller.lab.services import Service, listening, wait_listening
from autonomy_controller.controller.lab.sessions import REPLAY_POOL
from autonomy_controller.controller.lab.waf import Waf
from autonomy_controller.controller.models import Level
from autonomy_controller.workflows.devserver import temporal_cli

TABLE = "autonomy"
SET4 = "blocklist4"
READY_TIMEOUT_SECONDS = 120.0
WORKER_READY = "worker on task queue"
FOLLOW_READY = "following"


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabConfig:
    root: Path = REPO_ROOT / "var" / "lab"
    prefix: str = ""
    """Namespace name prefix: "" gives victim/attacker/benign; tests and benchmarks use their own."""
    http_port: int = 8080
    temporal_port: int = 7234
    """Not 7233: a developer's `autonomy server` may hold that one."""
    level: Level | None = None
    """None: the scope's level (web-01 is production: L3). Passed to the follow ingest as --level."""
    settle_seconds: float = 1.0
    quiet_seconds: float = 60.0
    paranoia_level: int = 1
    """The WAF's CRS paranoia level (1-4); `up` on a running lab rewrites the config and reloads nginx."""
    probe_timeout_seconds: float = 0.5
    """How long the verification waits for the blocked source's SYN to be answered. On a veth pair a real
    answer takes well under a millisecond, and a block's verification costs exactly this long."""


CONFIG_FILE = "lab.json"
"""Written by `up` into the lab folder, so `status`, `attack` and `down` find the same namespaces and ports."""


def save_config(config: LabConfig) -> None:
    data = {**asdict(config), "root": str(config.root), "level": config.level.value if config.level else None}
    config.root.mkdir(parents=True, exist_ok=True)
    (config.root / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")


def load_config(root: Path) -> LabConfig:
    """The config `up` used for the lab in `root`, or the defaults for a lab never started there."""
    try:
        data = json.loads((root / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return LabConfig(root=root)
    known = {name: data[name] for name in LabConfig.__dataclass_fields__ if name in data}
    known["root"] = root
    known["level"] = Level(known["level"]) if known.get("level") else None
    return LabConfig(**known)


@dataclass
class ServiceState:
    name: str
    pid: int | None
    running: bool
    log: str
    detail: str = ""


@dataclass
class LabStatus:
    root: str
    namespaces: dict[str, bool]
    network_complete: bool
    nginx: ServiceState
    ids: ServiceState
    services: list[ServiceState]
    temporal_address: str
    nft: dict[str, Any]
    audit_log: dict[str, Any]
    sensor_logs: dict[str, dict[str, Any]]
    enforcement_file: str

    @property
    def up(self) -> bool:
        sensors = self.nginx.running and self.ids.running
        return self.network_complete and sensors and all(s.running for s in self.services)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "up": self.up}


@dataclass
class DownReport:
    steps: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "leftovers": self.leftovers, "clean": not self.leftovers}


class Lab:
    def __init__(self, config: LabConfig | None = None) -> None:
        self.config = config or LabConfig()
        self.root = self.config.root.resolve()
        self.topology = Topology(prefix=self.config.prefix)
        self.network = LabNetwork(self.topology)
        self.waf = Waf(self.root, self.topology.victim, self.config.http_port, self.config.paranoia_level)
        run_dir, log_dir = self.root / "run", self.root / "logs"
        self.ids = Ids(self.root / "suricata", self.topology, run_dir, log_dir)
        self.temporal = Service("temporal", run_dir, log_dir)
        self.worker = Service("worker", run_dir, log_dir)
        self.follow = Service("follow", run_dir, log_dir)
        self.follow_ids = Service("follow-ids", run_dir, log_dir)
        self.follow_access = Service("follow-access", run_dir, log_dir)
        self.login = LoginService(self.root, self.topology.victim)
        """The brute-force scenario's login service: started only by what needs it (it needs a directory)."""
        self.directory: dict[str, Any] | None = None
        """The identity adapter's `identity:` section for this lab's directory, when one runs (docs/identity.md)."""

    # -- paths -------------------------------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        """AUTONOMY_STATE_DIR of the lab's worker and follower: ledger, follow offsets, reports, tickets."""
        return self.root / "state"

    @property
    def enforcement_file(self) -> Path:
        return self.root / "enforcement.yaml"

    @property
    def audit_log(self) -> Path:
        return self.waf.audit_log

    @property
    def sensor_logs(self) -> dict[str, Path]:
        """Every log a sensor of the lab writes, by sensor: what the follow ingest reads."""
        return {"waf": self.waf.audit_log, "ids": self.ids.eve, "access": self.waf.access_log}

    def truncate_sensor_logs(self) -> None:
        """Empty every sensor log in place (all three writers append, so their next line lands at the start)."""
        self.waf.truncate_audit_log()
        self.waf.truncate_access_log()
        with contextlib.suppress(FileNotFoundError):
            os.truncate(self.ids.eve, 0)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.config.temporal_port}"

    @property
    def followers(self) -> dict[Service, Path]:
        logs = self.sensor_logs
        return {self.follow: logs["waf"], self.follow_ids: logs["ids"], self.follow_access: logs["access"]}

    @property
    def services(self) -> list[Service]:
        return [self.temporal, self.worker, *self.followers]

    # -- enforcement -------------------------------------------------------------------------------------

    def enforcement(self) -> dict[str, Any]:
        """The nftables adapter's config (actions/adapters/nftables/config.py) for this lab, and the identity
        adapter's when the lab has a directory."""
        t = self.topology
        port = self.config.http_port
        return {
            "nftables": {
                "netns": t.victim,
                "table": TABLE,
                "set4": SET4,
                "hosts": {"web-01": {"netns": t.victim, "management": []}},
                "probe": {
                    "from_netns": t.attacker,
                    "to": f"{t.victim_a}:{port}",
                    "bystander_netns": t.benign,
                    "bystander_to": f"{t.victim_b}:{port}",
                    # The replay's clients (controller/lab/sessions.py): a block of one is probed from it.
                    "sources": [str(REPLAY_POOL)],
                    "timeout_seconds": self.config.probe_timeout_seconds,
                },
            },
            **({"identity": self.directory} if self.directory is not None else {}),
        }

    def write_enforcement(self, path: Path | None = None) -> Path:
        target = path or self.enforcement_file
        target.parent.mkdir(parents=True, exist_ok=True)
        header = "# Written by `autonomy lab up` (controller/lab/lab.py): the lab's nftables enforcement point.\n"
        target.write_text(header + yaml.safe_dump(self.enforcement(), sort_keys=False))
        return target

    # -- up ----------------------------------------------------------------------------------------------

    def up(self, services: bool = True, install: bool = True, fresh: bool = False) -> list[str]:
        """Build (or complete) the lab; returns what was done. Raises LabError / LabPackagesMissing."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root: it creates network namespaces and nftables tables (run as root)")
        steps: list[str] = []
        installed = ensure_packages(install=install)
        if installed:
            steps.append(f"installed Debian packages: {' '.join(installed)}")
        if fresh:
            self.down()
            shutil.rmtree(self.root, ignore_errors=True)
            steps.append(f"removed {self.root} (fresh start)")
        save_config(replace(self.config, root=self.root))
        steps += [f"created {what}" for what in self.network.up()]
        pid = self.waf.start()
        steps.append(f"nginx + ModSecurity + CRS in {self.topology.victim} (pid {pid}), audit log {self.audit_log}")
        steps.append(f"access log {self.waf.access_log}")
        pid = self.ids.start()
        steps.append(f"Suricata in {self.topology.victim} (pid {pid}), EVE log {self.ids.eve}")
        steps.append(f"enforcement file {self.write_enforcement()}")
        if services:
            steps += self.start_services()
        return steps

    def service_env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PATH": os.pathsep.join([venv_bin, SBIN_PATH]),
            "AUTONOMY_STATE_DIR": str(self.state_dir),
            "AUTONOMY_ENFORCEMENT_FILE": str(self.enforcement_file),
            "AUTONOMY_TEMPORAL_ADDRESS": self.temporal_address,
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }

    def start_services(self) -> list[str]:
        steps: list[str] = []
        env = self.service_env()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.temporal.pid() is None and listening(self.temporal_address):
            raise LabError(f"{self.temporal_address} is taken by another program: choose another --temporal-port")
        temporal = [temporal_cli(), "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        temporal += ["--port", str(self.config.temporal_port), "--log-level", "error"]
        temporal += ["--db-filename", str(self.state_dir / "temporal.db")]
        pid = self.temporal.start(temporal, env, cwd=REPO_ROOT)
        if not wait_listening(self.temporal_address, READY_TIMEOUT_SECONDS, self.temporal):
            raise LabError(f"Temporal did not listen on {self.temporal_address}: {self.temporal.log_tail()}")
        steps.append(f"Temporal dev server at {self.temporal_address} (pid {pid})")
        cli = [sys.executable, "-m", "autonomy_controller.controller.cli"]
        pid = self.worker.start([*cli, "worker", "--address", self.temporal_address], env, cwd=REPO_ROOT)
        if not self.worker.wait_for_log(WORKER_READY, READY_TIMEOUT_SECONDS):
            raise LabError(f"the worker did not start: {self.worker.log_tail()}")
        steps.append(f"worker (pid {pid}) with enforcement {self.enforcement_file}")
        for service, log in self.followers.items():
            follow = [*cli, "ingest", "--follow", str(log), "--address", self.temporal_address]
            follow += ["--settle", str(self.config.settle_seconds), "--quiet", str(self.config.quiet_seconds)]
            follow += ["--interval", "0.25"]
            if self.config.level is not None:
                follow += ["--level", self.config.level.value]
            pid = service.start(follow, env, cwd=REPO_ROOT)
            if not service.wait_for_log(FOLLOW_READY, READY_TIMEOUT_SECONDS):
                raise LabError(f"the follow ingest of {log.name} did not start: {service.log_tail()}")
            steps.append(f"ingest --follow {log} (pid {pid})")
        return steps

    # -- down --------------------------------------------------------------------------------------------

    def down(self) -> DownReport:
        """Stop and delete everything the lab runs; report what is left (nothing, when it worked)."""
        report = DownReport()
        for service in reversed(self.services):  # follow and worker before Temporal
            pid = service.stop()
            if pid is not None:
                report.steps.append(f"stopped {service.name} (pid {pid})")
        pid = self.ids.stop()
        if pid is not None:
            report.steps.append(f"stopped Suricata (pid {pid})")
        pid = self.login.stop()
        if pid is not None:
            report.steps.append(f"stopped the login service (pid {pid})")
        stopped = self.waf.stop()
        if stopped:
            report.steps.append(f"stopped nginx (pids {', '.join(map(str, stopped))})")
        inodes = {ns: namespace_inode(ns) for ns in self.topology.namespaces}
        report.steps += self.network.down()
        report.steps += self._remove_lock_files()
        report.leftovers += [f"namespace {ns} still exists" for ns in self.network.leftovers()]
        for ns, inode in inodes.items():
            if inode is not None and processes_in_inode(inode):
                report.leftovers.append(f"processes still inside the deleted namespace {ns}")
        report.leftovers += [f"{s.name} still runs (pid {s.pid()})" for s in self.services if s.pid() is not None]
        if self.waf.pid() is not None:
            report.leftovers.append(f"nginx still runs (pid {self.waf.pid()})")
        if self.ids.pid() is not None:
            report.leftovers.append(f"Suricata still runs (pid {self.ids.pid()})")
        if self.login.service.pid() is not None:
            report.leftovers.append(f"the login service still runs (pid {self.login.service.pid()})")
        return report

    def _remove_lock_files(self) -> list[str]:
        """The nftables adapter's per-table lock files of this lab's namespaces. Only safe once nothing runs
        there any more (a lock file deleted while held lets a second holder in), which is where `down` calls it."""
        removed = []
        for directory in LOCK_DIRS:
            for namespace in self.topology.namespaces:
                for lock in directory.glob(f"autonomy-nft.{namespace}.*.lock"):
                    lock.unlink(missing_ok=True)
                    removed.append(f"removed lock file {lock}")
        return removed

    # -- status ------------------------------------------------------------------------------------------

    def status(self) -> LabStatus:
        present = self.network.present()
        nginx_pid = self.waf.pid()
        nginx = ServiceState("nginx", nginx_pid, nginx_pid is not None, str(self.waf.paths.error_log))
        if nginx_pid is not None:
            nginx.detail = f"{self.topology.victim_a}:{self.config.http_port}, {self.topology.victim_b}"
        ids_pid = self.ids.pid()
        ids = ServiceState("suricata", ids_pid, ids_pid is not None, str(self.ids.service.log_file))
        if ids_pid is not None:
            ids.detail = ", ".join(device for device, _, _ in self.topology.pairs())
        services = []
        for service in self.services:
            pid = service.pid()
            detail = "exited: see its log" if service.exited() else ""
            if service is self.temporal and pid is not None:
                detail = self.temporal_address if listening(self.temporal_address) else "not listening yet"
            services.append(ServiceState(service.name, pid, pid is not None, str(service.log_file), detail))
        return LabStatus(
            root=str(self.root),
            namespaces=present,
            network_complete=all(present.values()) and self.network.complete(),
            nginx=nginx,
            ids=ids,
            services=services,
            temporal_address=self.temporal_address,
            nft=self.nft_state() if present[self.topology.victim] else {"table": None, "blocked": []},
            audit_log={"path": str(self.audit_log), "lines": _count_lines(self.audit_log)},
            sensor_logs={name: {"path": str(p), "lines": _count_lines(p)} for name, p in self.sensor_logs.items()},
            enforcement_file=str(self.enforcement_file) if self.enforcement_file.exists() else "",
        )

    def nft_state(self) -> dict[str, Any]:
        """The adapter's table in the victim namespace and the addresses in its IPv4 blocklist."""
        elements = self.blocklist()
        return {
            "netns": self.topology.victim,
            "table": f"inet {TABLE}" if elements is not None else None,
            "blocked": elements or [],
        }

    def blocklist(self) -> list[dict[str, Any]] | None:
        """Elements of `inet autonomy blocklist4` in the victim (`nft -j list set`), or None without the table."""
        nft = find_binary("nft")
        if nft is None:
            return None
        listing = [nft, "-j", "list", "set", "inet", TABLE, SET4]
        result = run_ip("netns", "exec", self.topology.victim, *listing, check=False)
        if result.returncode != 0:
            return None
        for item in json.loads(result.stdout).get("nftables", []):
            if "set" in item:
                return [_element(entry) for entry in item["set"].get("elem", [])]
        return []

    def blocked_addresses(self) -> list[str]:
        return [str(element["val"]) for element in self.blocklist() or []]

    def clear_blocks(self) -> None:
        """Delete the adapter's tables in the victim (between test runs): the adapter recreates them on use."""
        nft = find_binary("nft")
        if nft is None:
            return
        for table in (TABLE, "autonomy_isolation"):
            run_ip("netns", "exec", self.topology.victim, nft, "delete", "table", "inet", table, check=False)

    # -- traffic -----------------------------------------------------------------------------------------

    def attack(self, name: str, source: str = "attacker", timeout: float = 3.0) -> HttpResult:
        """Send a named attack from the attacker (or `benign`) namespace to the victim address facing it."""
        netns = self._netns(source)
        if name not in ATTACKS:
            raise LabError(f"unknown attack {name!r}: one of {', '.join(ATTACKS)}")
        return request(netns, self.topology.target_for(netns), ATTACKS[name], self.config.http_port, timeout)

    def browse(self, source: str = "benign", timeout: float = 3.0) -> HttpResult:
        """A plain page request: 200 while the source may reach the site."""
        netns = self._netns(source)
        return request(netns, self.topology.target_for(netns), BENIGN, self.config.http_port, timeout)

    def _netns(self, source: str) -> str:
        names = {"attacker": self.topology.attacker, "benign": self.topology.benign}
        if source not in names:
            raise LabError(f"unknown source {source!r}: attacker or benign")
        if names[source] not in existing_namespaces():
            raise LabError(f"namespace {names[source]} does not exist: the lab is not up (autonomy lab up)")
        return names[source]


def _element(entry: Any) -> dict[str, Any]:
    """A set element as nft -j prints it: a bare value, or {"elem": {"val", "timeout", "expires", "comment"}}."""
    if isinstance(entry, dict) and "elem" in entry:
        return dict(entry["elem"])
    return {"val": entry}


def _count_lines(path: Path) -> int | None:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return None
