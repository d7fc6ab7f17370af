"""Talking to nftables (and probing reachability) inside a network namespace, for actions/adapters/nftables.py.

Everything goes through nft's JSON API (`nft -j -f -` with the batch on stdin, `nft -j list ...` to read back),
so no value is ever spliced into a shell command or into nft's text grammar: an address or comment cannot
turn into syntax. A change is always one batch, and nft commits a batch atomically (all of it or none).

nft's own errors are terse ("Could not process rule: No such file or directory"); this module turns the ones
an operator will meet (nft or ip missing, not root, namespace missing) into messages that name the problem.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actions.adapters.base import AdapterError, TransientAdapterError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
"""Where `ip netns add` pins named namespaces (iproute2's NETNS_RUN_DIR; /var/run is /run on Debian)."""
SBIN_DIRS = ("/usr/sbin", "/sbin")
"""nft and ip live in sbin, which a service's or a non-login shell's PATH may lack."""
TRANSIENT_MARKERS = ("Device or resource busy", "Interrupted system call", "Resource temporarily unavailable")
"""Netlink answers that mean "try again" (a concurrent ruleset change, a dump interrupted), not a bad request."""
DENIED_MARKERS = ("Operation not permitted", "Permission denied", "you must be root")
LOCK_DIRS = (Path("/run/lock"), Path(tempfile.gettempdir()))
"""Where the per-table lock files live: /run/lock (a tmpfs: no stale lock survives a reboot), else the temp dir."""
LOCK_POLL_SECONDS = 0.02


class NftMissingError(AdapterError):
    """A binary the adapter needs (nft, ip) is not installed or not where the config says."""


class NetnsMissingError(AdapterError):
    """The configured network namespace does not exist (not created, or deleted since)."""


class NftDeniedError(AdapterError):
    """nft or ip was refused: changing a ruleset or entering a namespace needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)."""


class NftCommandError(AdapterError):
    """nft rejected a command; `stderr` holds its words (callers match "File exists", "overlaps", ...)."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def resolve_binary(name: str, package: str) -> str:
    """The executable for `name` (a bare name looked up on PATH plus sbin, or a path), or NftMissingError."""
    if "/" in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
        raise NftMissingError(f"{name} does not exist or is not executable (install Debian's {package})")
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    found = shutil.which(name, path=search)
    if found is None:
        raise NftMissingError(
            f"{name!r} not found on PATH or in {', '.join(SBIN_DIRS)}: install Debian's {package} (.ci/nftables.sh)"
        )
    return found


def netns_exists(netns: str) -> bool:
    return any((directory / netns).exists() for directory in NETNS_DIRS)


def where(netns: str | None) -> str:
    """How messages name a namespace."""
    return f"network namespace {netns!r}" if netns else "the current network namespace"


@dataclass(frozen=True)
class NsExec:
    """Runs programs inside one network namespace (`ip netns exec NS ...`), or in the current one (netns None)."""

    netns: str | None
    ip: str = "ip"
    timeout_seconds: float = 10.0

    def argv(self, command: Sequence[str]) -> list[str]:
        """The full argument vector; checks the namespace first so its absence is named, not guessed from stderr."""
        if self.netns is None:
            return list(command)
        if not netns_exists(self.netns):
            raise NetnsMissingError(f"{where(self.netns)} does not exist (`ip netns list` shows the ones that do)")
        return [resolve_binary(self.ip, "iproute2"), "netns", "exec", self.netns, *command]

    def run(self, command: Sequence[str], stdin: str | None = None, what: str = "") -> subprocess.CompletedProcess[str]:
        """Run to completion; a hang is transient (the activity retries), a failure to start is permanent."""
        argv = self.argv(command)
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=self.timeout_seconds, check=False
            )
        except subprocess.TimeoutExpired:
            raise TransientAdapterError(
                f"{what or argv[0]} in {where(self.netns)} did not finish within {self.timeout_seconds} s"
            ) from None
        except OSError as exc:
            raise AdapterError(f"cannot run {argv[0]}: {exc}") from exc

    def check_denied_or_missing(self, stderr: str, what: str) -> None:
        """Raise the named error when stderr says the namespace is gone or we lack the privilege."""
        if "Cannot open network namespace" in stderr:
            raise NetnsMissingError(f"{where(self.netns)} does not exist: {stderr.strip()}")
        if any(marker in stderr for marker in DENIED_MARKERS):
            raise NftDeniedError(
                f"{what} in {where(self.netns)} was refused ({first_line(stderr)}): nftables enforcement must run "
                "as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN for namespaces)"
            )


def first_line(text: str) -> str:
    """nft prints the error, then the offending command; the first non-empty line is the message."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(dict.fromkeys(lines[:2])) if lines else "(no message)"


@dataclass(frozen=True)
class Nft:
    """nft's JSON API in one namespace: `apply` one atomic batch, `list_table` read one table back."""

    ns: NsExec
    nft: str = "nft"

    def _nft(self) -> str:
        return resolve_binary(self.nft, "nftables")

    def apply(self, commands: list[dict[str, Any]], what: str) -> None:
        """Send `commands` as one batch (`nft -j -f -`): nft commits it atomically, so a failure applies nothing."""
        if not commands:
            return
        batch = json.dumps({"nftables": commands})
        result = self.ns.run([self._nft(), "-j", "-f", "-"], stdin=batch, what=f"nft ({what})")
        if result.returncode != 0:
            self._raise(result.stderr, what)

    def list_table(self, family: str, table: str) -> list[dict[str, Any]] | None:
        """The table's objects (sets with their elements, chains, rules with counters), or None when absent."""
        result = self.ns.run([self._nft(), "-j", "list", "table", family, table], what="nft list table")
        if result.returncode != 0:
            self.ns.check_denied_or_missing(result.stderr, "nft list table")
            if "No such file or directory" in result.stderr:
                return None
            self._raise(result.stderr, f"list table {family} {table}")
        try:
            document = json.loads(result.stdout)
        except ValueError as exc:
            raise AdapterError(f"nft list table {family} {table} printed no JSON: {exc}") from exc
        items = document.get("nftables") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise AdapterError(f"nft list table {family} {table}: unexpected JSON (no `nftables` list)")
        return [item for item in items if isinstance(item, dict) and "metainfo" not in item]

    def _raise(self, stderr: str, what: str) -> None:
        self.ns.check_denied_or_missing(stderr, f"nft {what}")
        message = f"nft {what} failed in {where(self.ns.netns)}: {first_line(stderr)}"
        if any(marker in stderr for marker in TRANSIENT_MARKERS):
            raise TransientAdapterError(message)
        raise NftCommandError(message, stderr)


@contextlib.contextmanager
def serialized(name: str, wait_seconds: float) -> Iterator[None]:
    """Hold an exclusive advisory lock named `name` (flock on a file in LOCK_DIRS) for the `with` body.

    nft has no compare-and-swap: a batch cannot say "delete this element only if its comment is still X". An
    adapter that reads the set, decides on what it read (whose element, how long it lasts) and then writes
    must therefore not interleave with another worker doing the same, or a takeover could delete a third
    owner's newer element, and an owner-aware revert could delete the element another incident just took
    over. Every worker on this machine (threads and processes alike: flock conflicts between separate
    opens) takes this lock around read-decide-write. Actors outside it (the kernel's own expiry, an operator
    typing nft) are caught by the batch failing instead (a delete of a missing element fails it whole).

    A holder that dies releases the lock with its file descriptor. Waiting longer than `wait_seconds` is a
    TransientAdapterError: the activity's retry policy tries again later."""
    directory = next((d for d in LOCK_DIRS if d.is_dir() and os.access(d, os.W_OK)), None)
    if directory is None:
        raise AdapterError(f"no writable directory for the nftables lock file (tried {', '.join(map(str, LOCK_DIRS))})")
    path = directory / f"autonomy-nft.{name}.lock"
    try:  # O_NOFOLLOW: the directory is world-writable; a planted symlink must not redirect root's open
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AdapterError(f"cannot open the nftables lock file {path}: {exc}") from exc
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # someone else's file could be held by them forever
            raise AdapterError(f"the nftables lock file {path} belongs to another user: remove it")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TransientAdapterError(
                        f"another worker held {path} for over {wait_seconds} s: try again"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # releases the flock


# -- reading a table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetElement:
    """One element of an interval set as nft lists it: `val` is kept verbatim so deleting it names it exactly."""

    val: Any
    first: int
    last: int
    version: int
    comment: str | None = None
    timeout: int | None = None
    expires: int | None = None

    @property
    def label(self) -> str:
        """CIDR for a single prefix (what params use), `a-b` for a range somebody added by hand."""
        low, high = _address(self.first, self.version), _address(self.last, self.version)
        size = self.last - self.first + 1
        if size & (size - 1) or self.first % size:  # not a power of two, or not aligned: no single prefix
            return f"{low}-{high}"
        if size == 1:
            return str(low)
        return f"{low}/{(32 if self.version == 4 else 128) - size.bit_length() + 1}"

    def covers(self, network: IPNetwork) -> bool:
        return self.version == network.version and self.first <= int(network[0]) and int(network[-1]) <= self.last

    def intersects(self, network: IPNetwork) -> bool:
        return self.version == network.version and not (self.last < int(network[0]) or int(network[-1]) < self.first)

    def exactly(self, network: IPNetwork) -> bool:
        return self.covers(network) and self.first == int(network[0]) and self.last == int(network[-1])

    def describe(self) -> str:
        """For outcome details: which element, whose comment, and when nft will drop it by itself."""
        owner = f"comment {self.comment!r}" if self.comment else "no comment (added outside the controller)"
        expiry = f"expires in {self.expires} s" if self.expires is not None else "no expiry"
        return f"{self.label} ({owner}, {expiry})"

    def evidence(self) -> dict[str, Any]:
        return {"element": self.label, "comment": self.comment, "timeout": self.timeout, "expires": self.expires}


def _address(value: int, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address from its integer; explicit about the version (ip_address(1) would be 0.0.0.1, not ::1)."""
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def _bounds(val: Any) -> tuple[int, int, int] | None:
    """(first, last, version) of an element value: an address string, a {"prefix"} or a {"range"}."""
    try:
        if isinstance(val, str):
            address = ipaddress.ip_address(val)
            return int(address), int(address), address.version
        if isinstance(val, dict) and "prefix" in val:
            network = ipaddress.ip_network(f"{val['prefix']['addr']}/{val['prefix']['len']}", strict=False)
            return int(network[0]), int(network[-1]), network.version
        if isinstance(val, dict) and "range" in val:
            low, high = (ipaddress.ip_address(v) for v in val["range"])
            return int(low), int(high), low.version
    except (ValueError, KeyError, TypeError):
        return None
    return None


def parse_elements(set_object: dict[str, Any]) -> list[SetElement]:
    """The elements of a listed set; values that are not addresses (never written by us) are skipped."""
    elements = []
    for item in set_object.get("elem", []) or []:
        body = item.get("elem", {"val": item}) if isinstance(item, dict) else {"val": item}
        bounds = _bounds(body.get("val"))
        if bounds is None:
            continue
        elements.append(
            SetElement(
                val=body["val"],
                first=bounds[0],
                last=bounds[1],
                version=bounds[2],
                comment=body.get("comment"),
                timeout=body.get("timeout"),
                expires=body.get("expires"),
            )
        )
    return elements


@dataclass
class TableState:
    """One listed table, indexed: what `ensure` compares against and what execute/verify read."""

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, items: list[dict[str, Any]]) -> TableState:
        state = cls()
        for item in items:
            if "set" in item:
                state.sets[item["set"]["name"]] = item["set"]
            elif "chain" in item:
                state.chains[item["chain"]["name"]] = item["chain"]
                state.rules.setdefault(item["chain"]["name"], [])
            elif "rule" in item:
                state.rules.setdefault(item["rule"]["chain"], []).append(item["rule"])
        return state

    def elements(self, set_name: str) -> list[SetElement]:
        return parse_elements(self.sets[set_name]) if set_name in self.sets else []

    def rule_comments(self, chain: str) -> list[str | None]:
        return [rule.get("comment") for rule in self.rules.get(chain, [])]

    def counter(self, chain: str, comment: str) -> int | None:
        """Packets counted by our rule with this comment: evidence that the drop actually bit."""
        for rule in self.rules.get(chain, []):
            if rule.get("comment") == comment:
                for expr in rule.get("expr", []):
                    if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
                        return int(expr["counter"].get("packets", 0))
        return None


# -- reachability probes -----------------------------------------------------------------------------------

PROBE_SCRIPT = """
import json, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
start = time.monotonic()
try:
    socket.create_connection((host, port), timeout=timeout).close()
    connected, error = True, None
except OSError as exc:
    connected, error = False, f"{type(exc).__name__}: {exc}"
print(json.dumps({"connected": connected, "error": error, "ms": round((time.monotonic() - start) * 1000, 1)}))
"""
"""A TCP connect from inside a namespace; host and port arrive as argv, never as code."""


@dataclass(frozen=True)
class ProbeResult:
    netns: str | None
    target: str
    connected: bool
    error: str | None
    ms: float

    def evidence(self) -> dict[str, Any]:
        return {"netns": self.netns, "to": self.target, "connected": self.connected, "error": self.error, "ms": self.ms}

    def describe(self) -> str:
        verb = "connected to" if self.connected else f"could not connect to ({self.error})"
        return f"{self.netns or 'this namespace'} {verb} {self.target} in {self.ms:.0f} ms"


@dataclass(frozen=True)
class Endpoint:
    host: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.host.version == 6 else f"{self.host}:{self.port}"


class PendingProbe:
    """A started probe: several run at once, so a blocked probe's timeout is paid once, not per probe."""

    def __init__(self, ns: NsExec, endpoint: Endpoint, timeout_seconds: float, python: str) -> None:
        self.ns, self.endpoint, self.started = ns, endpoint, time.monotonic()
        argv = ns.argv([python, "-I", "-c", PROBE_SCRIPT, str(endpoint.host), str(endpoint.port), str(timeout_seconds)])
        self.wait_seconds = timeout_seconds + ns.timeout_seconds
        try:
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError as exc:
            raise AdapterError(f"cannot start the reachability probe ({argv[0]}): {exc}") from exc

    def result(self) -> ProbeResult:
        try:
            stdout, stderr = self.process.communicate(timeout=self.wait_seconds)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise TransientAdapterError(f"the probe from {where(self.ns.netns)} to {self.endpoint} hung") from None
        try:
            answer = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.ns.check_denied_or_missing(stderr, "the reachability probe")
            raise AdapterError(
                f"the probe from {where(self.ns.netns)} printed no result: {first_line(stderr)}"
            ) from None
        return ProbeResult(self.ns.netns, str(self.endpoint), bool(answer["connected"]), answer["error"], answer["ms"])


def start_probe(ns: NsExec, endpoint: Endpoint, timeout_seconds: float, python: str | None = None) -> PendingProbe:
    return PendingProbe(ns, endpoint, timeout_seconds, python or sys.executable)


def source_address(ns: NsExec, destination: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """The address the kernel in `ns` would send from to reach `destination` (`ip route get`'s prefsrc).

    This is what a blocklist entry has to match for the probe to say anything about the block."""
    result = ns.run([resolve_binary(ns.ip, "iproute2"), "-j", "route", "get", str(destination)], what="ip route get")
    if result.returncode != 0:
        ns.check_denied_or_missing(result.stderr, "ip route get")
        return None
    try:
        routes = json.loads(result.stdout)
    except ValueError:
        return None
    return next((route["prefsrc"] for route in routes if isinstance(route, dict) and "prefsrc" in route), None)
