"""Reachability probes: checking an effect from the other side, by trying to connect.

A configured Probe (config.Probe) is a TCP connect that must fail once the effect (a block, an isolation) is on,
and optionally one from a bystander that must still work (the drop is not too wide). Each connect runs as a
small Python program inside its namespace; the source's and the bystander's run at once, so a dropped SYN's
timeout is paid once. A block is probed only when the probe's source address is inside the blocked network.
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

from actions.adapters.base import AdapterError, TransientAdapterError
from actions.adapters.nftables.config import Endpoint, NftFirewall, Probe, parse_endpoint
from actions.adapters.nftables.nft import NsExec, first_line, resolve_binary, where
from actions.adapters.nftables.state import IPNetwork, show

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


NO_PROBE = "no probe configured"


class ProbeVerdict(BaseModel):
    ok: bool
    detail: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ReachabilityProbe:
    """Runs a configured Probe: the source's connect and the bystander's at once (one timeout, not two)."""

    def __init__(self, config: NftFirewall, probe: Probe | None) -> None:
        self.config, self.probe = config, probe

    def _run(self, probe: Probe) -> tuple[ProbeResult, ProbeResult | None]:
        started: list[PendingProbe] = []
        try:
            started.append(self._start(probe.from_netns, probe.to, probe.timeout_seconds))
            if probe.bystander_to is not None:
                started.append(self._start(probe.bystander_netns, probe.bystander_to, probe.timeout_seconds))
            results = [pending.result() for pending in started]
        finally:
            for pending in started:
                if pending.process.poll() is None:
                    pending.process.kill()
                    pending.process.communicate()
        return results[0], (results[1] if len(results) > 1 else None)

    def _start(self, netns: str | None, target: str, timeout: float) -> PendingProbe:
        return start_probe(self.config.ns(netns), parse_endpoint(target), timeout, self.config.python)

    def _source_inside(self, probe: Probe, network: IPNetwork) -> tuple[bool, str]:
        source = source_address(self.config.ns(probe.from_netns), parse_endpoint(probe.to).host)
        if source is not None and ipaddress.ip_address(source) in network:
            return True, source
        why = (
            f"probe skipped: the probe source {source or '(no route)'} ({where(probe.from_netns)}) is not in "
            f"{show(network)}, so a connect from it would say nothing about this block"
        )
        return False, why

    def _skipped(self, network: IPNetwork | None) -> ProbeVerdict | None:
        """The verdict when there is nothing to probe: no probe, or its source outside `network`; else None."""
        if self.probe is None:
            return ProbeVerdict(ok=True, detail=NO_PROBE)
        if network is not None:
            inside, why = self._source_inside(self.probe, network)
            if not inside:
                return ProbeVerdict(ok=True, detail=why, evidence={"skipped": why})
        return None

    def expect_cut_off(self, network: IPNetwork | None) -> ProbeVerdict:
        """After a block (network given: only when the probe source is inside it) or an isolation (None)."""
        skipped = self._skipped(network)
        if skipped is not None or self.probe is None:
            return skipped or ProbeVerdict(ok=True, detail=NO_PROBE)
        blocked, bystander = self._run(self.probe)
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
        skipped = self._skipped(network)
        if skipped is not None or self.probe is None:
            return skipped or ProbeVerdict(ok=True, detail=NO_PROBE)
        source, _ = self._run(self.probe.model_copy(update={"bystander_to": None, "bystander_netns": None}))
        return ProbeVerdict(ok=True, detail=f"probe (informational): {source.describe()}", evidence=source.evidence())
