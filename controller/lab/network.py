"""The lab's hosts: three network namespaces joined by veth pairs, as LAB.md's recipe builds them.

    attacker 198.51.100.66 --veth-a|veth-va-- 198.51.100.1  victim  203.0.113.1 --veth-vb|veth-b-- 203.0.113.7 benign

Addresses are documentation ranges (RFC 5737); nothing is routed and nothing leaves the machine. The veth pairs
are created inside the namespaces (never in the root one), so deleting the namespaces is the whole cleanup:
their links, addresses and nftables tables go with them once no process is left inside. `up` is idempotent
(each step checks first); `down` kills whatever still runs in the namespaces before deleting them, and then
proves the namespaces are gone from the kernel, not just unnamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from autonomy_controller.controller.lab.packages import SBIN_PATH, find_binary

NETNS_DIR = Path("/run/netns")
COMMAND_TIMEOUT_SECONDS = 30.0


class LabNetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Link:
    netns_role: str
    device: str
    address: str
    """with prefix length"""


@dataclass(frozen=True)
class Topology:
    """Names and addresses. A prefix keeps several labs (a developer's, the tests', the benchmark's) apart."""

    prefix: str = ""
    victim_a: str = "198.51.100.1"
    victim_b: str = "203.0.113.1"
    attacker_ip: str = "198.51.100.66"
    benign_ip: str = "203.0.113.7"

    @property
    def victim(self) -> str:
        return f"{self.prefix}victim"

    @property
    def attacker(self) -> str:
        return f"{self.prefix}attacker"

    @property
    def benign(self) -> str:
        return f"{self.prefix}benign"

    @property
    def namespaces(self) -> tuple[str, str, str]:
        return (self.victim, self.attacker, self.benign)

    def links(self) -> list[Link]:
        return [
            Link(self.victim, "veth-va", f"{self.victim_a}/24"),
            Link(self.victim, "veth-vb", f"{self.victim_b}/24"),
            Link(self.attacker, "veth-a", f"{self.attacker_ip}/24"),
            Link(self.benign, "veth-b", f"{self.benign_ip}/24"),
        ]

    def pairs(self) -> list[tuple[str, str, str]]:
        """(victim device, peer device, peer namespace)"""
        return [("veth-va", "veth-a", self.attacker), ("veth-vb", "veth-b", self.benign)]

    def source_of(self, netns: str) -> str:
        """The address a request from this namespace comes from."""
        return {self.attacker: self.attacker_ip, self.benign: self.benign_ip}.get(netns, self.victim_a)

    def target_for(self, netns: str) -> str:
        """The victim address on the segment that namespace sits on."""
        return self.victim_b if netns == self.benign else self.victim_a


def ip_binary() -> str:
    found = find_binary("ip")
    if found is None:
        raise LabNetworkError("iproute2's `ip` is missing (apt-get install iproute2)")
    return found


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [ip_binary(), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "PATH": SBIN_PATH},
    )
    if check and result.returncode != 0:
        raise LabNetworkError(f"ip {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def existing_namespaces() -> set[str]:
    result = run_ip("-j", "netns", "list", check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return set()
    return {entry["name"] for entry in json.loads(result.stdout)}


def _link_exists(netns: str, device: str) -> bool:
    return run_ip("-n", netns, "link", "show", device, check=False).returncode == 0


def _addresses(netns: str, device: str) -> set[str]:
    result = run_ip("-n", netns, "-j", "addr", "show", "dev", device, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return set()
    return {
        f"{info['local']}/{info['prefixlen']}" for entry in json.loads(result.stdout) for info in entry["addr_info"]
    }


def namespace_pids(netns: str) -> list[int]:
    """Every process whose network namespace is this one (nginx, probes, anything the lab left running)."""
    result = run_ip("netns", "pids", netns, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def namespace_inode(netns: str) -> int | None:
    try:
        return (NETNS_DIR / netns).stat().st_ino
    except OSError:
        return None


def processes_in_inode(inode: int) -> list[int]:
    """Processes still inside a namespace by its inode: a namespace without a name still lives while any does."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino == inode:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class LabNetwork:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def up(self) -> list[str]:
        """Create what is missing; returns what was done (empty when the network was complete)."""
        done: list[str] = []
        present = existing_namespaces()
        for netns in self.topology.namespaces:
            if netns not in present:
                run_ip("netns", "add", netns)
                done.append(f"namespace {netns}")
            run_ip("-n", netns, "link", "set", "lo", "up")
        for victim_dev, peer_dev, peer_ns in self.topology.pairs():
            victim_has, peer_has = _link_exists(self.topology.victim, victim_dev), _link_exists(peer_ns, peer_dev)
            if victim_has and peer_has:
                continue
            for netns, device, has in ((self.topology.victim, victim_dev, victim_has), (peer_ns, peer_dev, peer_has)):
                if has:  # half a pair (an interrupted up): remove it and make the pair anew
                    run_ip("-n", netns, "link", "del", device)
            run_ip(
                "-n", self.topology.victim, "link", "add", victim_dev, "type", "veth", "peer", "name", peer_dev,
                "netns", peer_ns,
            )  # fmt: skip
            done.append(f"veth {self.topology.victim}/{victim_dev} <-> {peer_ns}/{peer_dev}")
        for link in self.topology.links():
            if link.address not in _addresses(link.netns_role, link.device):
                run_ip("-n", link.netns_role, "addr", "add", link.address, "dev", link.device)
                done.append(f"{link.netns_role}/{link.device} {link.address}")
            run_ip("-n", link.netns_role, "link", "set", link.device, "up")
        return done

    def present(self) -> dict[str, bool]:
        existing = existing_namespaces()
        return {netns: netns in existing for netns in self.topology.namespaces}

    def complete(self) -> bool:
        if not all(self.present().values()):
            return False
        return all(link.address in _addresses(link.netns_role, link.device) for link in self.topology.links())

    def down(self, grace_seconds: float = 3.0) -> list[str]:
        """Kill every process inside the lab's namespaces, delete them, and check the kernel let them go."""
        done: list[str] = []
        existing = existing_namespaces()
        inodes = {netns: namespace_inode(netns) for netns in self.topology.namespaces if netns in existing}
        for netns in inodes:
            killed = kill_all(namespace_pids(netns), grace_seconds)
            if killed:
                done.append(f"stopped {len(killed)} process(es) left in {netns}: {', '.join(map(str, killed))}")
        for netns in inodes:
            run_ip("netns", "del", netns)
            done.append(f"namespace {netns} deleted")
        lingering = {netns: processes_in_inode(inode) for netns, inode in inodes.items() if inode is not None}
        for netns, pids in lingering.items():
            if pids:  # entered the namespace without its name (nsenter, setns): still ours to stop
                kill_all(pids, grace_seconds)
                done.append(f"stopped {len(pids)} process(es) still in the deleted {netns}")
        return done

    def add_sources(self, addresses: list[str]) -> list[str]:
        """Give the attacker's veth extra /32 addresses (the replay's sources); returns those it added. A /32
        adds no route: the attacker's /24 already reaches the victim, and the victim's /24 answers any of them."""
        device = self._attacker_device()
        have = {entry.split("/")[0] for entry in _addresses(self.topology.attacker, device)}
        added = []
        for address in addresses:
            if address not in have:
                run_ip("-n", self.topology.attacker, "addr", "add", f"{address}/32", "dev", device)
                added.append(address)
        return added

    def remove_sources(self, addresses: list[str]) -> list[str]:
        """Remove the given /32 addresses from the attacker's veth; returns those still there afterwards."""
        device = self._attacker_device()
        for address in addresses:
            run_ip("-n", self.topology.attacker, "addr", "del", f"{address}/32", "dev", device, check=False)
        have = {entry.split("/")[0] for entry in _addresses(self.topology.attacker, device)}
        return [address for address in addresses if address in have]

    def attacker_addresses(self) -> set[str]:
        return {entry.split("/")[0] for entry in _addresses(self.topology.attacker, self._attacker_device())}

    def _attacker_device(self) -> str:
        return next(link.device for link in self.topology.links() if link.netns_role == self.topology.attacker)

    def leftovers(self) -> list[str]:
        """What of this lab still exists (names only: `down` checks processes by namespace inode itself)."""
        return sorted(set(self.topology.namespaces) & existing_namespaces())


def kill_all(pids: list[int], grace_seconds: float) -> list[int]:
    """SIGTERM, a grace period, then SIGKILL for whatever still runs. Returns the pids that were running."""
    running = [pid for pid in pids if pid != os.getpid() and alive(pid)]
    for pid in running:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in running):
        time.sleep(0.05)
    for pid in running:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(alive(pid) for pid in running):
        time.sleep(0.05)
    return running


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie child of ours is gone for every purpose but its exit status)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True
