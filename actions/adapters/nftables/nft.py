"""Talking to nftables inside a network namespace: the one way the blocklist and isolation tables are changed.

Everything goes through nft's JSON API (`nft -j -f -` with the batch on stdin, `nft -j list ...` to read back),
so no value is ever spliced into a shell command or into nft's text grammar: an address or comment cannot
turn into syntax. A change is always one batch, and nft commits a batch atomically (all of it or none).

nft's own errors are terse ("Could not process rule: No such file or directory"); this module turns the ones
an operator will meet (nft or ip missing, not root, namespace missing) into messages that name the problem.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autonomy_controller.actions.adapters.base import AdapterError, TransientAdapterError
from autonomy_controller.actions.adapters.nftables.state import IPNetwork

FAMILY = "inet"
"""Every table the adapters own is an inet table: one table (and one set per address family) for IPv4 and IPv6."""
NETNS_DIRS = (Path("/run/netns"), Path("/var/run/netns"))
"""Where `ip netns add` pins named namespaces (iproute2's NETNS_RUN_DIR; /var/run is /run on Debian)."""
SBIN_DIRS = ("/usr/sbin", "/sbin")
"""nft and ip live in sbin, which a service's or a non-login shell's PATH may lack."""
TRANSIENT_MARKERS = ("Device or resource busy", "Interrupted system call", "Resource temporarily unavailable")
"""Netlink answers that mean "try again" (a concurrent ruleset change, a dump interrupted), not a bad request."""
DENIED_MARKERS = ("Operation not permitted", "Permission denied", "you must be root")


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


def payload_match(protocol: str, field: str, right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"payload": {"protocol": protocol, "field": field}}, "right": right}}


def prefix_value(network: IPNetwork) -> Any:
    """An element or match value: a bare address for a single host, else {"prefix": ...}."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}
