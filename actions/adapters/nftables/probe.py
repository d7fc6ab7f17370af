"""Reachability probes: checking an effect from the other side, by trying to connect.

A configured Probe (config.Probe) is a TCP connect that must fail once the effect (a block, an isolation) is on,
and optionally one from a bystander that must still work (the drop is not too wide). Each connect runs as a
small Python program inside its namespace; the source's and the bystander's run at once, so a dropped SYN's
timeout is paid once. A block is probed only from an address inside the blocked network: the namespace's own
source address for the target (`ip route get`), or, when the probe lists `sources` (addresses the namespace may
hold besides its own, such as the lab replay's many clients), one of those that is assigned there right now: the
probe then binds to it, so the connect that must fail comes from the very address that was blocked. Otherwise the
probe is skipped, saying why (a connect from any other address would prove nothing about this block).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from autonomy_controller.actions.adapters.base import AdapterError, TransientAdapterError
from autonomy_controller.actions.adapters.nftables.config import Endpoint, NftFirewall, Probe, parse_endpoint
from autonomy_controller.actions.adapters.nftables.nft import NsExec, first_line, resolve_binary, where
from autonomy_controller.actions.adapters.nftables.state import IPNetwork, show

PROBE_SCRIPT = """
import json, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else None
start = time.monotonic()
bound, connected, error = True, False, None
try:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source is not None:
            try:
                sock.bind((source, 0))
            except OSError as exc:
                bound, error = False, f"cannot bind {source}: {type(exc).__name__}: {exc}"
        if bound:
            sock.connect((host, port))
            connected = True
except OSError as exc:
    error = f"{type(exc).__name__}: {exc}"
ms = round((time.monotonic() - start) * 1000, 1)
print(json.dumps({"connected": connected, "bound": bound, "error": error, "ms": ms}))
"""
"""A TCP connect from inside a namespace; host and port arrive as argv, never as code."""


@dataclass(frozen=True)
class ProbeResult:
    netns: str | None
    target: str
    connected: bool
    error: str | None
    ms: float
    source: str | None = None
    """The address the probe was bound to; None: the namespace's own choice."""

    def evidence(self) -> dict[str, Any]:
        evidence = {"netns": self.netns, "to": self.target, "connected": self.connected, "error": self.error}
        return {**evidence, "ms": self.ms, "from": self.source}

    def describe(self) -> str:
        verb = "connected to" if self.connected else f"could not connect to ({self.error})"
        source = f" from {self.source}" if self.source else ""
        return f"{self.netns or 'this namespace'}{source} {verb} {self.target} in {self.ms:.0f} ms"


class PendingProbe:
    """A started probe: several run at once, so a blocked probe's timeout is paid once, not per probe."""

    def __init__(
        self, ns: NsExec, endpoint: Endpoint, timeout_seconds: float, python: str, source: str | None = None
    ) -> None:
        self.ns, self.endpoint, self.source, self.started = ns, endpoint, source, time.monotonic()
        args = [str(endpoint.host), str(endpoint.port), str(timeout_seconds), *([source] if source else [])]
        argv = ns.argv([python, "-I", "-c", PROBE_SCRIPT, *args])
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
        if not answer.get("bound", True):
            # The address went away between the check and the probe (a replay ended): retry the verification,
            # which then reads the set back without a probe. Never counted as a refused connect.
            raise TransientAdapterError(f"the probe in {where(self.ns.netns)} {answer['error']}")
        return ProbeResult(
            self.ns.netns, str(self.endpoint), bool(answer["connected"]), answer["error"], answer["ms"], self.source
        )


def start_probe(
    ns: NsExec, endpoint: Endpoint, timeout_seconds: float, python: str | None = None, source: str | None = None
) -> PendingProbe:
    return PendingProbe(ns, endpoint, timeout_seconds, python or sys.executable, source)


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


def assigned_addresses(ns: NsExec) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address assigned in `ns` now (`ip -j addr show`)."""
    result = ns.run([resolve_binary(ns.ip, "iproute2"), "-j", "addr", "show"], what="ip addr show")
    if result.returncode != 0:
        ns.check_denied_or_missing(result.stderr, "ip addr show")
        return []
    try:
        links = json.loads(result.stdout)
    except ValueError:
        return []
    return [
        ipaddress.ip_address(info["local"])
        for link in links
        if isinstance(link, dict)
        for info in link.get("addr_info", [])
        if isinstance(info, dict) and "local" in info
    ]


NO_PROBE = "no probe configured"


class ProbeVerdict(BaseModel):
    ok: bool
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ReachabilityProbe:
    """Runs a configured Probe: the source's connect and the bystander's at once (one timeout, not two)."""

    def __init__(self, config: NftFirewall, probe: Probe | None) -> None:
        self.config, self.probe = config, probe

    def _run(self, probe: Probe, source: str | None = None) -> tuple[ProbeResult, ProbeResult | None]:
        started: list[PendingProbe] = []
        try:
            started.append(self._start(probe.from_netns, probe.to, probe.timeout_seconds, source))
            if probe.bystander_to is not None:
                started.append(self._start(probe.bystander_netns, probe.bystander_to, probe.timeout_seconds))
            results = [pending.result() for pending in started]
        finally:
            for pending in started:
                if pending.process.poll() is None:
                    pending.process.kill()
                    pending.process.communicate()
        return results[0], (results[1] if len(results) > 1 else None)

    def _start(self, netns: str | None, target: str, timeout: float, source: str | None = None) -> PendingProbe:
        return start_probe(self.config.ns(netns), parse_endpoint(target), timeout, self.config.python, source)

    def _source_for(self, probe: Probe, network: IPNetwork) -> tuple[bool, str | None, str]:
        """Whether to probe this block, the address to bind (None: the namespace's own), and why not."""
        ns = self.config.ns(probe.from_netns)
        own = source_address(ns, parse_endpoint(probe.to).host)
        if own is not None and ipaddress.ip_address(own) in network:
            return True, None, ""
        owned = [ipaddress.ip_network(s, strict=False) for s in probe.sources]
        candidates = sorted(
            address
            for address in (assigned_addresses(ns) if owned else [])
            if address.version == network.version
            and address in network
            and any(address.version == o.version and address in o for o in owned)
        )
        if candidates:
            return True, str(candidates[0]), ""
        why = (
            f"probe skipped: the probe source {own or '(no route)'} ({where(probe.from_netns)}) is not in "
            f"{show(network)}"
            + (", nor is an address of the probe's sources assigned there inside it now" if owned else "")
            + ", so a connect from it would say nothing about this block"
        )
        return False, None, why

    def _plan(self, network: IPNetwork | None) -> tuple[ProbeVerdict | None, str | None]:
        """(the verdict when there is nothing to probe, else None; the address to probe from)."""
        if self.probe is None:
            return ProbeVerdict(ok=True, detail=NO_PROBE), None
        if network is None:
            return None, None
        inside, source, why = self._source_for(self.probe, network)
        if not inside:
            return ProbeVerdict(ok=True, detail=why, evidence={"skipped": why}), None
        return None, source

    def expect_cut_off(self, network: IPNetwork | None) -> ProbeVerdict:
        """After a block (network given: only when the probe source is inside it) or an isolation (None)."""
        skipped, source = self._plan(network)
        if skipped is not None or self.probe is None:
            return skipped or ProbeVerdict(ok=True, detail=NO_PROBE)
        blocked, bystander = self._run(self.probe, source)
        evidence = {"blocked": blocked.evidence(), "bystander": bystander.evidence() if bystander else None}
        if blocked.connected:
            return ProbeVerdict(
                ok=False, detail=f"probe: {blocked.describe()}: the drop does not bite", evidence=evidence
            )
        if bystander is not None and not bystander.connected:
            return ProbeVerdict(
                ok=False,
                detail=f"probe: {blocked.describe()}, but the bystander {bystander.describe()} too: the target is "
                "down or the drop is too wide, so the probe proves nothing",
                evidence=evidence,
            )
        also = f"; bystander {bystander.describe()}" if bystander else ""
        return ProbeVerdict(ok=True, detail=f"probe: {blocked.describe()}{also}", evidence=evidence)

    def observe_restored(self, network: IPNetwork | None) -> ProbeVerdict:
        """After an unblock or release: record whether the source connects again, without judging (ok=True)."""
        skipped, source = self._plan(network)
        if skipped is not None or self.probe is None:
            return skipped or ProbeVerdict(ok=True, detail=NO_PROBE)
        alone = self.probe.model_copy(update={"bystander_to": None, "bystander_netns": None})
        result, _ = self._run(alone, source)
        return ProbeVerdict(ok=True, detail=f"probe (informational): {result.describe()}", evidence=result.evidence())
