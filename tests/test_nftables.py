"""The nftables adapters against real nft, in throwaway network namespaces (LAB.md: "Hosts: network namespaces").

Three namespaces per session, wired as in LAB.md: victim (198.51.100.1 and 203.0.113.1, plus 2001:db8:1::1 and
2001:db8:2::1), attacker (198.51.100.66, 2001:db8:1::66) and benign (203.0.113.7, 2001:db8:2::7). A TCP listener
runs in the victim and in benign; "blocked" means a real connect from the attacker times out. Everything is
deleted in teardown, and the root namespace's ruleset must be the same after the module as before it.

Needs root and nft (`bash .ci/nftables.sh` installs it); otherwise the lab tests skip and say why.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from autonomy_controller.actions.adapters import build_adapters
from autonomy_controller.actions.adapters.base import ActionOutcome, ActionRequest, ActionStatus, AdapterError, Purpose
from autonomy_controller.actions.adapters.nftables.adapters import (
    BlockIpAdapter,
    IsolateHostAdapter,
    MisconfiguredAdapter,
    ReleaseHostAdapter,
    UnblockIpAdapter,
)
from autonomy_controller.actions.adapters.nftables.blocklist import Blocklist
from autonomy_controller.actions.adapters.nftables.config import (
    EnforcementConfigError,
    HostTarget,
    NftFirewall,
    Probe,
    load_enforcement,
)
from autonomy_controller.actions.adapters.nftables.isolation import Isolation
from autonomy_controller.actions.adapters.nftables.lock import LOCK_DIRS
from autonomy_controller.actions.adapters.nftables.nft import NetnsMissingError, NftDeniedError, NftMissingError
from autonomy_controller.actions.adapters.nftables.ownership import COMMENT_MAX_BYTES, Undo, owner_comment
from autonomy_controller.actions.adapters.nftables.state import TableState
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.ledger import Ledger

pytestmark = pytest.mark.lab

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
NFT = shutil.which("nft", path=SBIN_PATH)
IP = shutil.which("ip", path=SBIN_PATH)
PORT = 8080
KEY = "sqli:198.51.100.66/run-1/a1"
OTHER_KEY = "scanner:198.51.100.66/run-7/a2"

LISTENER = """
import socket, sys
server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("::", int(sys.argv[1])))
server.listen(128)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(b"ok\\n")
    conn.close()
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError:
    sys.exit(1)
"""


# -- the lab -----------------------------------------------------------------------------------------------


def run(*argv: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=check, timeout=30)


def nft_in(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert NFT is not None and IP is not None
    prefix = [IP, "netns", "exec", netns] if netns else []
    return run(*prefix, NFT, *args, check=check)


def normalised_ruleset(netns: str | None) -> Any:
    """The ruleset as JSON without what changes by itself (counter values, element expiry countdowns)."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (None if k == "counter" else scrub(v)) for k, v in node.items() if k != "expires"}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    return scrub(json.loads(nft_in(netns, "-j", "list", "ruleset").stdout))


def connects(netns: str, host: str, port: int = PORT, timeout: float = 0.5) -> bool:
    """A real TCP connect from inside `netns` (independent of the adapter's own probe code)."""
    assert IP is not None
    result = run(
        IP, "netns", "exec", netns, sys.executable, "-I", "-c", CONNECT, host, str(port), str(timeout), check=False
    )
    return result.returncode == 0


@dataclass
class Lab:
    suffix: str
    listeners: list[subprocess.Popen[str]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    @property
    def victim(self) -> str:
        return f"act-victim-{self.suffix}"

    @property
    def attacker(self) -> str:
        return f"act-attacker-{self.suffix}"

    @property
    def benign(self) -> str:
        return f"act-benign-{self.suffix}"

    def build(self) -> None:
        """LAB.md's topology, with the veth pairs created inside the namespaces (no names in the root one)."""
        assert IP is not None
        for netns in (self.victim, self.attacker, self.benign):
            run(IP, "netns", "add", netns)
            self.created.append(netns)
            run(IP, "-n", netns, "link", "set", "lo", "up")
        run(
            IP,
            "-n",
            self.victim,
            "link",
            "add",
            "veth-va",
            "type",
            "veth",
            "peer",
            "name",
            "veth-a",
            "netns",
            self.attacker,
        )
        run(
            IP,
            "-n",
            self.victim,
            "link",
            "add",
            "veth-vb",
            "type",
            "veth",
            "peer",
            "name",
            "veth-b",
            "netns",
            self.benign,
        )
        for netns, dev, addresses in (
            (self.victim, "veth-va", ["198.51.100.1/24", "2001:db8:1::1/64"]),
            (self.victim, "veth-vb", ["203.0.113.1/24", "2001:db8:2::1/64"]),
            (self.attacker, "veth-a", ["198.51.100.66/24", "2001:db8:1::66/64"]),
            (self.benign, "veth-b", ["203.0.113.7/24", "2001:db8:2::7/64"]),
        ):
            for address in addresses:
                run(IP, "-n", netns, "addr", "add", address, "dev", dev, *(["nodad"] if ":" in address else []))
            run(IP, "-n", netns, "link", "set", dev, "up")

    def listen(self, netns: str) -> None:
        assert IP is not None
        process = subprocess.Popen(
            [IP, "netns", "exec", netns, sys.executable, "-I", "-c", LISTENER, str(PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.listeners.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", f"listener in {netns} did not start: {process.stderr and process.stderr.read()}"

    def wait_until_reachable(self) -> None:
        deadline = time.monotonic() + 10
        while not (connects(self.attacker, "198.51.100.1") and connects(self.benign, "203.0.113.1")):
            assert time.monotonic() < deadline, "the lab's veth links never came up"
            time.sleep(0.1)

    def destroy(self) -> None:
        for process in self.listeners:
            process.kill()
            process.communicate()
        assert IP is not None
        for netns in self.created:
            run(IP, "netns", "del", netns, check=False)
        for directory in LOCK_DIRS:  # the adapters' lock files (per namespace and table), once nothing runs
            for lock in directory.glob(f"autonomy-nft.act-*-{self.suffix}.*.lock"):
                lock.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def lab_requirements() -> None:
    if os.geteuid() != 0:
        pytest.skip("nftables lab tests need root: they create network namespaces and load nftables rules")
    if NFT is None or IP is None:
        pytest.skip("nft or ip missing: `bash .ci/nftables.sh` installs Debian's nftables and iproute2")


@pytest.fixture(scope="module")
def root_ruleset_untouched(lab_requirements: None) -> Iterator[None]:
    """The whole module must leave the host's (root namespace's) ruleset exactly as it found it."""
    before = normalised_ruleset(None)
    yield
    assert normalised_ruleset(None) == before, "the root namespace's nftables ruleset changed during the lab tests"


@pytest.fixture(scope="module")
def lab(root_ruleset_untouched: None) -> Iterator[Lab]:
    the_lab = Lab(suffix=f"{os.getpid()}-{secrets.token_hex(2)}")
    try:
        the_lab.build()
        the_lab.listen(the_lab.victim)
        the_lab.listen(the_lab.benign)
        the_lab.wait_until_reachable()
        yield the_lab
    finally:
        the_lab.destroy()


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    """Every test starts and ends with the victim free of our tables (and of the stand-in host table)."""

    def wipe() -> None:
        for table in ("autonomy", "autonomy_isolation", "hostfw"):
            nft_in(lab.victim, "delete", "table", "inet", table, check=False)

    wipe()
    yield lab
    wipe()


def firewall(lab: Lab, **overrides: Any) -> NftFirewall:
    fields: dict[str, Any] = {
        "netns": lab.victim,
        "hosts": {"web-01": HostTarget(netns=lab.victim)},
        "probe": Probe(
            from_netns=lab.attacker, to="198.51.100.1:8080", bystander_netns=lab.benign, bystander_to="203.0.113.1:8080"
        ),
        **overrides,
    }
    return NftFirewall(**fields)


def request(
    action: str, params: dict[str, Any], key: str = KEY, purpose: Purpose = "execute", undoes: str | None = None
) -> ActionRequest:
    return ActionRequest(
        incident_key=key.split("/")[0],
        action_id="a1",
        action=action,
        params=params,
        idempotency_key=key,
        purpose=purpose,
        undoes=undoes,
    )


def elements(lab: Lab, set_name: str = "blocklist4") -> list[dict[str, Any]]:
    listed = json.loads(nft_in(lab.victim, "-j", "list", "set", "inet", "autonomy", set_name).stdout)
    the_set = next(item["set"] for item in listed["nftables"] if "set" in item)
    return [
        item["elem"] if isinstance(item, dict) and "elem" in item else {"val": item} for item in the_set.get("elem", [])
    ]


# -- ensure ------------------------------------------------------------------------------------------------


def test_ensure_builds_the_table_on_a_fresh_namespace_and_leaves_the_hosts_own_rules_alone(clean: Lab) -> None:
    nft_in(clean.victim, "add", "table", "inet", "hostfw")
    nft_in(
        clean.victim, "add", "chain", "inet", "hostfw", "in", "{ type filter hook input priority 0; policy accept; }"
    )
    nft_in(clean.victim, "add", "rule", "inet", "hostfw", "in", "tcp", "dport", "22", "accept")
    host_table = nft_in(clean.victim, "-j", "list", "table", "inet", "hostfw").stdout
    blocklist = Blocklist(firewall(clean))

    applied = blocklist.ensure()

    assert applied, "a fresh namespace needs the table, sets, chains and rules"
    state = blocklist.read()
    assert state is not None
    assert state.sets["blocklist4"]["type"] == "ipv4_addr"
    assert set(state.sets["blocklist6"]["flags"]) == {"interval", "timeout"}
    for hook in ("input", "forward"):
        assert (state.chains[hook]["hook"], state.chains[hook]["prio"], state.chains[hook]["policy"]) == (
            hook,
            -10,
            "accept",
        )
        assert state.rule_comments(hook) == [
            "autonomy: drop ip saddr in @blocklist4",
            "autonomy: drop ip6 saddr in @blocklist6",
        ]
    listing = nft_in(clean.victim, "-j", "list", "table", "inet", "autonomy").stdout

    assert blocklist.ensure() == []
    assert nft_in(clean.victim, "-j", "list", "table", "inet", "autonomy").stdout == listing
    assert nft_in(clean.victim, "-j", "list", "table", "inet", "hostfw").stdout == host_table


def test_ensure_repairs_a_flushed_chain_without_losing_blocks(clean: Lab) -> None:
    adapter = BlockIpAdapter(firewall(clean, probe=None))
    adapter.execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    nft_in(clean.victim, "flush", "chain", "inet", "autonomy", "input")
    assert connects(clean.attacker, "198.51.100.1"), "no drop rule, no block"

    verdict = adapter.verify(
        request("network.block_ip", {"ip": "198.51.100.66"}), ActionOutcome(status=ActionStatus.DONE, detail="")
    )
    assert not verdict.ok and "lacks the rule" in verdict.detail

    again = adapter.execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    assert again.status is ActionStatus.ALREADY_DONE
    assert not connects(clean.attacker, "198.51.100.1")
    assert [e["val"] for e in elements(clean)] == ["198.51.100.66"]


def test_ensure_refuses_a_set_of_the_wrong_kind(clean: Lab) -> None:
    nft_in(clean.victim, "add", "table", "inet", "autonomy")
    nft_in(clean.victim, "add", "set", "inet", "autonomy", "blocklist4", "{ type ipv4_addr; flags timeout; }")

    with pytest.raises(AdapterError, match=r"blocklist4 .* flags interval,timeout"):
        Blocklist(firewall(clean)).ensure()


# -- block, verify, unblock --------------------------------------------------------------------------------


def test_block_drops_the_attacker_not_the_bystander_and_verify_probes_it(clean: Lab) -> None:
    adapter = BlockIpAdapter(firewall(clean))
    req = request("network.block_ip", {"ip": "198.51.100.66"})
    assert connects(clean.attacker, "198.51.100.1")

    started = time.perf_counter()
    outcome = adapter.execute(req)
    executed = time.perf_counter()
    verdict = adapter.verify(req, outcome)
    verified = time.perf_counter()

    assert outcome.status is ActionStatus.DONE, outcome.detail
    assert outcome.evidence["comment"] == KEY
    assert elements(clean) == [{"val": "198.51.100.66", "comment": KEY}]
    assert not connects(clean.attacker, "198.51.100.1")
    assert connects(clean.benign, "203.0.113.1")
    assert verdict.ok, verdict.detail
    probe = verdict.evidence["probe"]
    assert probe["blocked"]["connected"] is False and probe["bystander"]["connected"] is True
    assert verdict.evidence["drop_counters"]["input"] > 0, "the drop rule counted the attacker's SYNs"
    timings = f"execute {1000 * (executed - started):.0f} ms, verify incl. probe {1000 * (verified - executed):.0f} ms"
    print(f"\nblock: {timings}")


def test_the_same_key_again_is_already_done_and_another_key_is_named(clean: Lab) -> None:
    adapter = BlockIpAdapter(firewall(clean, probe=None))
    first = adapter.execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    again = adapter.execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    other = adapter.execute(request("network.block_ip", {"ip": "198.51.100.66", "ttl_seconds": 600}, key=OTHER_KEY))

    assert (first.status, again.status, other.status) == (
        ActionStatus.DONE,
        ActionStatus.ALREADY_DONE,
        ActionStatus.ALREADY_DONE,
    )
    assert "this idempotency key" in again.detail
    assert KEY in other.detail and other.evidence["comment"] == KEY
    assert elements(clean) == [{"val": "198.51.100.66", "comment": KEY}], "one element, still without expiry"


def test_concurrent_blocks_of_one_address_add_one_element(clean: Lab) -> None:
    adapter = BlockIpAdapter(firewall(clean, probe=None))
    keys = [f"sqli:198.51.100.66/run-{n}/a1" for n in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda key: adapter.execute(request("network.block_ip", {"ip": "198.51.100.66"}, key)), keys)
        )

    assert sorted(o.status for o in outcomes).count(ActionStatus.DONE) == 1
    assert [e["val"] for e in elements(clean)] == ["198.51.100.66"]
    assert not connects(clean.attacker, "198.51.100.1")
    state = Blocklist(firewall(clean)).read()
    assert state is not None and len(state.rules["input"]) == 2, "first use by four at once: the rules once"


def test_unblock_removes_the_element_and_the_attacker_connects_again(clean: Lab) -> None:
    config = firewall(clean)
    BlockIpAdapter(config).execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    assert not connects(clean.attacker, "198.51.100.1")
    unblock = UnblockIpAdapter(config)
    req = request("network.unblock_ip", {"ip": "198.51.100.66"})

    outcome = unblock.execute(req)
    verdict = unblock.verify(req, outcome)

    assert outcome.status is ActionStatus.DONE and KEY in outcome.detail
    assert elements(clean) == []
    assert connects(clean.attacker, "198.51.100.1")
    assert verdict.ok, verdict.detail
    assert verdict.evidence["probe"]["connected"] is True
    assert unblock.execute(req).status is ActionStatus.ALREADY_DONE


def test_a_ttl_is_the_elements_timeout_and_nftables_expires_it(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    via_params = BlockIpAdapter(config).execute(request("network.block_ip", {"ip": "198.51.100.99", "ttl_seconds": 60}))
    assert via_params.status is ActionStatus.DONE
    assert {e["val"]: e.get("timeout") for e in elements(clean)} == {"198.51.100.99": 60}

    # params forbid a TTL under 60 s; the blocklist underneath takes any, which lets nft's own expiry be watched
    short = Blocklist(config).block(ipaddress.ip_network("198.51.100.66/32"), KEY, ttl_seconds=1)
    assert short.status is ActionStatus.DONE
    assert not connects(clean.attacker, "198.51.100.1")
    time.sleep(2.2)

    assert [e["val"] for e in elements(clean)] == ["198.51.100.99"], "the 1 s element is gone by itself"
    assert connects(clean.attacker, "198.51.100.1")
    revert = UnblockIpAdapter(config).execute(request("network.unblock_ip", {"ip": "198.51.100.66"}))
    assert revert.status is ActionStatus.ALREADY_DONE and "expired or never blocked" in revert.detail


def test_a_network_block_covers_its_addresses(clean: Lab) -> None:
    config = firewall(clean)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    req = request("network.block_ip", {"ip": "198.51.100.64/29"})

    outcome = block.execute(req)
    verdict = block.verify(req, outcome)

    assert outcome.status is ActionStatus.DONE
    assert elements(clean) == [{"val": {"prefix": {"addr": "198.51.100.64", "len": 29}}, "comment": KEY}]
    assert not connects(clean.attacker, "198.51.100.1") and connects(clean.benign, "203.0.113.1")
    assert verdict.ok and "probe:" in verdict.detail, "the attacker's .66 is inside the /29: the probe applies"

    inside = block.execute(request("network.block_ip", {"ip": "198.51.100.66"}, key=OTHER_KEY))
    assert inside.status is ActionStatus.ALREADY_DONE and "inside 198.51.100.64/29" in inside.detail
    with pytest.raises(AdapterError, match=r"cannot unblock 198\.51\.100\.66 alone: 198\.51\.100\.64/29"):
        unblock.execute(request("network.unblock_ip", {"ip": "198.51.100.66"}))
    assert not connects(clean.attacker, "198.51.100.1")

    assert unblock.execute(request("network.unblock_ip", {"ip": "198.51.100.64/29"})).status is ActionStatus.DONE
    assert connects(clean.attacker, "198.51.100.1")


def test_a_network_overlapping_a_blocked_address_is_refused_whole(clean: Lab) -> None:
    block = BlockIpAdapter(firewall(clean, probe=None))
    block.execute(request("network.block_ip", {"ip": "198.51.100.66"}))

    with pytest.raises(AdapterError, match=r"cannot block 198\.51\.100\.64/29: it overlaps 198\.51\.100\.66"):
        block.execute(request("network.block_ip", {"ip": "198.51.100.64/29"}, key=OTHER_KEY))
    assert [e["val"] for e in elements(clean)] == ["198.51.100.66"]


def test_ipv6_addresses_go_to_the_v6_set(clean: Lab) -> None:
    config = firewall(clean)
    block = BlockIpAdapter(config)
    req = request("network.block_ip", {"ip": "2001:db8:1::66"})
    assert connects(clean.attacker, "2001:db8:1::1")

    outcome = block.execute(req)
    skipped = block.verify(req, outcome)

    assert outcome.status is ActionStatus.DONE
    assert elements(clean, "blocklist6") == [{"val": "2001:db8:1::66", "comment": KEY}]
    assert elements(clean, "blocklist4") == []
    assert not connects(clean.attacker, "2001:db8:1::1")
    assert connects(clean.attacker, "198.51.100.1"), "the attacker's IPv4 address is not blocked"
    assert skipped.ok and "probe skipped" in skipped.detail and "198.51.100.66" in skipped.detail

    v6_probe = Probe(
        from_netns=clean.attacker,
        to="[2001:db8:1::1]:8080",
        bystander_netns=clean.benign,
        bystander_to="[2001:db8:2::1]:8080",
    )
    probed = BlockIpAdapter(firewall(clean, probe=v6_probe)).verify(req, outcome)
    assert probed.ok and probed.evidence["probe"]["blocked"]["connected"] is False, probed.detail


def test_verify_fails_when_the_element_is_gone_and_skips_a_probe_that_proves_nothing(clean: Lab) -> None:
    block = BlockIpAdapter(firewall(clean))
    elsewhere = request("network.block_ip", {"ip": "198.51.100.200"})
    outcome = block.execute(elsewhere)
    verdict = block.verify(elsewhere, outcome)
    assert verdict.ok and "probe skipped" in verdict.detail and "not in 198.51.100.200" in verdict.detail

    nft_in(clean.victim, "delete", "element", "inet", "autonomy", "blocklist4", "{ 198.51.100.200 }")
    gone = block.verify(elsewhere, outcome)
    assert not gone.ok and "not in blocklist4" in gone.detail


# -- one address, several incidents: the one whose need ends last owns the block -----------------------------

A_KEY = "sqli:198.51.100.66/run-1/a1/execute"
"""Keys as workflows/activities.py hands them to adapters: `<workflow>/<run>/<action>/<purpose>`."""
B_KEY = "scanner:198.51.100.66/run-7/a2/execute"
C_KEY = "xss:198.51.100.66/run-9/a1/execute"
ATTACKER_IP = {"ip": "198.51.100.66"}


def undo(action: str, params: dict[str, Any], undone: str, purpose: Purpose = "revert") -> ActionRequest:
    """What the TTL revert (or the compensation) of the execution run under `undone` hands its undo action's
    adapter, as workflows/activities.py builds it: its own key, and purpose + undoes naming what it reverses."""
    return request(action, params, undone.removesuffix("/execute") + f"/{purpose}", purpose, undoes=undone)


def without_countdown(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in element.items() if k != "expires"} for element in found]


def block_ttl(ttl: int, key: str) -> ActionRequest:
    return request("network.block_ip", {**ATTACKER_IP, "ttl_seconds": ttl}, key)


def test_a_longer_need_takes_the_block_over_and_each_revert_lifts_only_its_own(clean: Lab) -> None:
    config = firewall(clean)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    assert block.execute(block_ttl(60, A_KEY)).status is ActionStatus.DONE

    b_req = block_ttl(300, B_KEY)
    taken = block.execute(b_req)

    assert taken.status is ActionStatus.DONE, taken.detail
    assert taken.evidence["mine"] is True and taken.evidence["comment"] == B_KEY
    previous = taken.evidence["took_over_from"]
    assert previous["comment"] == A_KEY and previous["timeout"] == 60 and 0 < previous["expires"] <= 60
    assert A_KEY in taken.detail and "leaves it in place" in taken.detail
    (element,) = elements(clean)
    assert (element["val"], element["comment"], element["timeout"]) == ("198.51.100.66", B_KEY, 300)
    assert element["expires"] > 290, "B's own timeout, counting from the handover"
    assert block.verify(b_req, taken).ok
    assert not connects(clean.attacker, "198.51.100.1")

    a_revert = undo("network.unblock_ip", ATTACKER_IP, A_KEY)
    left = unblock.execute(a_revert)
    left_verdict = unblock.verify(a_revert, left)

    assert left.status is ActionStatus.ALREADY_DONE, left.detail
    assert left.evidence["left_in_place"] is True and left.evidence["owner"] == B_KEY
    assert "left 198.51.100.66 in place" in left.detail and B_KEY in left.detail
    assert without_countdown(elements(clean)) == [{"val": "198.51.100.66", "comment": B_KEY, "timeout": 300}]
    assert not connects(clean.attacker, "198.51.100.1"), "B still needs the block: A's revert must not lift it"
    assert left_verdict.ok and left_verdict.evidence["left_in_place"] is True, left_verdict.detail

    b_revert = undo("network.unblock_ip", ATTACKER_IP, B_KEY)
    lifted = unblock.execute(b_revert)
    lifted_verdict = unblock.verify(b_revert, lifted)

    assert lifted.status is ActionStatus.DONE and lifted.evidence["removed"]["comment"] == B_KEY, lifted.detail
    assert elements(clean) == []
    assert connects(clean.attacker, "198.51.100.1")
    assert lifted_verdict.ok and lifted_verdict.evidence["probe"]["connected"] is True


def test_a_shorter_need_leaves_the_longer_block_alone_and_a_retry_never_stretches_its_own(clean: Lab) -> None:
    block = BlockIpAdapter(firewall(clean, probe=None))
    block.execute(block_ttl(300, A_KEY))
    before = without_countdown(elements(clean))

    shorter = block.execute(block_ttl(60, B_KEY))
    retried = block.execute(block_ttl(600, A_KEY))

    assert shorter.status is ActionStatus.ALREADY_DONE and shorter.evidence["mine"] is False, shorter.detail
    assert shorter.evidence["comment"] == A_KEY and "took_over_from" not in shorter.evidence
    assert retried.status is ActionStatus.ALREADY_DONE and retried.evidence["mine"] is True
    assert without_countdown(elements(clean)) == before == [{"val": "198.51.100.66", "comment": A_KEY, "timeout": 300}]


def test_a_wider_network_is_never_taken_over(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    block.execute(request("network.block_ip", {"ip": "198.51.100.64/29", "ttl_seconds": 60}, A_KEY))
    before = without_countdown(elements(clean))

    inside = block.execute(block_ttl(3600, B_KEY))

    assert inside.status is ActionStatus.ALREADY_DONE and inside.evidence["mine"] is False, inside.detail
    assert "inside 198.51.100.64/29" in inside.detail
    assert without_countdown(elements(clean)) == before, "the /29 keeps A's comment and 60 s timeout"
    lifted = unblock.execute(undo("network.unblock_ip", {"ip": "198.51.100.64/29"}, A_KEY))
    assert lifted.status is ActionStatus.DONE and elements(clean) == [], "A's revert still lifts its own /29"


@pytest.mark.parametrize("comment", ["operator: permanent", None])
def test_an_element_without_expiry_is_never_taken_over_nor_lifted_by_an_undo(clean: Lab, comment: str | None) -> None:
    config = firewall(clean, probe=None)
    Blocklist(config).ensure()
    spelled = f' comment "{comment}"' if comment else ""
    nft_in(clean.victim, "add", "element", "inet", "autonomy", "blocklist4", f"{{ 198.51.100.66{spelled} }}")
    before = elements(clean)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)

    asked = block.execute(block_ttl(3600, B_KEY))
    b_revert = undo("network.unblock_ip", ATTACKER_IP, B_KEY, "compensate")
    undone = unblock.execute(b_revert)

    assert asked.status is ActionStatus.ALREADY_DONE and asked.evidence["mine"] is False, asked.detail
    assert undone.status is ActionStatus.ALREADY_DONE and undone.evidence["left_in_place"] is True, undone.detail
    assert undone.evidence["owner"] == comment
    assert unblock.verify(b_revert, undone).ok
    assert elements(clean) == before
    assert not connects(clean.attacker, "198.51.100.1")


def test_an_undo_whose_own_element_is_still_there_fails_verification(clean: Lab) -> None:
    """Even when an outcome claims the element was left to another owner, verify reads the set: if the element
    is still the undone block's own, the revert did not happen."""
    config = firewall(clean, probe=None)
    executed = BlockIpAdapter(config).execute(block_ttl(60, A_KEY))
    a_revert = undo("network.unblock_ip", ATTACKER_IP, A_KEY)
    claimed = ActionOutcome(status=ActionStatus.ALREADY_DONE, detail="", evidence={"left_in_place": True})

    verdict = UnblockIpAdapter(config).verify(a_revert, claimed)

    assert executed.status is ActionStatus.DONE
    assert not verdict.ok and "the element this undo had to remove" in verdict.detail, verdict.detail


def test_a_persons_own_unblock_lifts_the_block_whoever_holds_it(clean: Lab) -> None:
    """An explicit network.unblock_ip (its own action, key `.../execute`) is the decision to lift the block:
    it removes the element of the incident that took it over, and says whose it was."""
    config = firewall(clean, probe=None)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    block.execute(block_ttl(60, A_KEY))
    block.execute(block_ttl(300, B_KEY))
    explicit = request("network.unblock_ip", ATTACKER_IP, "fp:198.51.100.66/run-3/a1/execute")

    lifted = unblock.execute(explicit)

    assert lifted.status is ActionStatus.DONE and lifted.evidence["removed"]["comment"] == B_KEY, lifted.detail
    assert elements(clean) == [] and unblock.verify(explicit, lifted).ok
    assert connects(clean.attacker, "198.51.100.1")
    b_revert = unblock.execute(undo("network.unblock_ip", ATTACKER_IP, B_KEY))
    assert b_revert.status is ActionStatus.ALREADY_DONE and "expired or never blocked" in b_revert.detail


class ChangesAfterItsFirstRead(Blocklist):
    """A blocklist whose first read is followed at once by `nft_args` (nft run by an actor outside the adapter:
    the kernel's expiry, an operator), so its decision is taken on a read that is stale when the batch goes."""

    def __init__(self, config: NftFirewall, *nft_args: str) -> None:
        super().__init__(config)
        self.pending: tuple[str, ...] | None = nft_args
        self.reads = 0

    def read(self) -> TableState | None:
        state = super().read()
        self.reads += 1
        if self.pending is not None:
            args, self.pending = self.pending, None
            nft_in(self.config.netns, *args)
        return state


def test_an_element_that_vanishes_between_read_and_handover_ends_in_a_clean_decision(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    BlockIpAdapter(config).execute(block_ttl(60, A_KEY))
    stale = ChangesAfterItsFirstRead(config, "delete", "element", "inet", "autonomy", "blocklist4", "{ 198.51.100.66 }")

    outcome = stale.block(ipaddress.ip_network("198.51.100.66/32"), B_KEY, 300)

    assert stale.reads == 2, "the refused batch made it read again"
    assert outcome.status is ActionStatus.DONE and outcome.evidence["mine"] is True, outcome.detail
    assert "took_over_from" not in outcome.evidence, "A's element was gone: nothing was taken over, B created it"
    assert without_countdown(elements(clean)) == [{"val": "198.51.100.66", "comment": B_KEY, "timeout": 300}]


def test_an_element_that_turns_up_between_read_and_create_is_decided_on_again(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    Blocklist(config).ensure()
    added = f'{{ 198.51.100.66 timeout 1h comment "{C_KEY}" }}'
    stale = ChangesAfterItsFirstRead(config, "add", "element", "inet", "autonomy", "blocklist4", added)

    outcome = stale.block(ipaddress.ip_network("198.51.100.66/32"), B_KEY, 300)

    assert stale.reads == 2
    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["mine"] is False, outcome.detail
    assert without_countdown(elements(clean)) == [{"val": "198.51.100.66", "comment": C_KEY, "timeout": 3600}]


def test_workers_decide_one_at_a_time_so_a_handover_never_overwrites_a_newer_owner(clean: Lab) -> None:
    """nft cannot delete an element only if its comment is still X, so the read-decide-write runs under the
    table's lock: a worker that wants to take A's element over waits while another worker changes it, and then
    decides on what is there (here: C's element lasts longer than it needs, so it leaves it)."""
    config = firewall(clean, probe=None)
    block = BlockIpAdapter(config)
    block.execute(block_ttl(60, A_KEY))
    with ThreadPoolExecutor(max_workers=1) as pool:
        with Blocklist(config).serialized():
            pending = pool.submit(block.execute, block_ttl(300, B_KEY))
            time.sleep(0.5)
            assert not pending.done(), "B's worker must wait for the lock before it reads"
            replace = (  # what another worker holding the lock does: take A's element over for 1 h
                "delete element inet autonomy blocklist4 { 198.51.100.66 }\n"
                f'add element inet autonomy blocklist4 {{ 198.51.100.66 timeout 1h comment "{C_KEY}" }}\n'
            )
            assert IP is not None and NFT is not None
            run(IP, "netns", "exec", clean.victim, NFT, "-f", "-", stdin=replace)
        outcome = pending.result(timeout=30)

    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["mine"] is False, outcome.detail
    assert without_countdown(elements(clean)) == [{"val": "198.51.100.66", "comment": C_KEY, "timeout": 3600}]


def test_concurrent_blocks_with_different_ttls_end_owned_by_the_longest_need(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    ttls = {f"sqli:198.51.100.66/run-{n}/a1/execute": ttl for n, ttl in enumerate([300, 900, 120, 600, 60, 3600])}

    with ThreadPoolExecutor(max_workers=len(ttls)) as pool:
        outcomes = dict(zip(ttls, pool.map(lambda key: block.execute(block_ttl(ttls[key], key)), ttls), strict=True))

    longest = max(ttls, key=lambda key: ttls[key])
    (element,) = elements(clean)
    assert (element["comment"], element["timeout"]) == (longest, 3600)
    assert outcomes[longest].evidence["mine"] is True
    for key in ttls:
        reverted = unblock.execute(undo("network.unblock_ip", ATTACKER_IP, key))
        assert (reverted.status is ActionStatus.DONE) == (key == longest), (key, reverted.detail)
    assert elements(clean) == []


def test_purpose_and_undoes_decide_an_undo_not_the_key(clean: Lab) -> None:
    """Whether an unblock is an undo, and of which block, is the request's purpose and undoes: a revert naming A's
    key leaves B's element whatever its own key says, and a request that merely looks like a revert by its key
    (purpose execute) is a plain unblock that lifts the block whoever holds it."""
    config = firewall(clean, probe=None)
    block, unblock = BlockIpAdapter(config), UnblockIpAdapter(config)
    block.execute(block_ttl(60, A_KEY))
    block.execute(block_ttl(300, B_KEY))
    a_revert = request("network.unblock_ip", ATTACKER_IP, "any key at all", purpose="revert", undoes=A_KEY)

    left = unblock.execute(a_revert)

    assert left.status is ActionStatus.ALREADY_DONE and left.evidence["left_in_place"] is True, left.detail
    assert left.evidence["owner"] == B_KEY and left.evidence["undoes"] == A_KEY
    assert unblock.verify(a_revert, left).ok
    assert without_countdown(elements(clean)) == [{"val": "198.51.100.66", "comment": B_KEY, "timeout": 300}]

    looks_like_a_revert = request("network.unblock_ip", ATTACKER_IP, A_KEY.removesuffix("/execute") + "/revert")
    lifted = unblock.execute(looks_like_a_revert)

    assert lifted.status is ActionStatus.DONE and lifted.evidence["removed"]["comment"] == B_KEY, lifted.detail
    assert elements(clean) == []


def test_an_undo_that_names_no_execution_removes_nothing(clean: Lab) -> None:
    """ActionRequest refuses an undo without `undoes`; below that check (a request built around it) the blocklist
    still fails closed: nothing is recognisably the undo's own, so nothing is lifted, and verify does not pass."""
    config = firewall(clean, probe=None)
    BlockIpAdapter(config).execute(block_ttl(60, A_KEY))
    with pytest.raises(ValidationError, match="must name the execution it undoes"):
        request("network.unblock_ip", ATTACKER_IP, "wf/run/a1/revert", "revert")
    blind = Undo("revert", None)

    left = Blocklist(config).unblock(ipaddress.ip_network("198.51.100.66/32"), "wf/run/a1/revert", blind)

    assert left.status is ActionStatus.ALREADY_DONE and left.evidence["left_in_place"] is True, left.detail
    assert "names no execution it undoes" in left.detail
    assert [e["comment"] for e in elements(clean)] == [A_KEY]
    assert not Blocklist(config).verify_unblocked(ipaddress.ip_network("198.51.100.66/32"), blind, left).ok


# -- host isolation ----------------------------------------------------------------------------------------


def test_isolate_cuts_everything_but_loopback_and_release_restores(clean: Lab) -> None:
    host_probe = Probe(from_netns=clean.benign, to="203.0.113.1:8080")
    config = firewall(clean, hosts={"web-01": HostTarget(netns=clean.victim, probe=host_probe)})
    isolate, release = IsolateHostAdapter(config), ReleaseHostAdapter(config)
    req = request("host.isolate", {"host": "web-01"})

    outcome = isolate.execute(req)
    verdict = isolate.verify(req, outcome)

    assert outcome.status is ActionStatus.DONE, outcome.detail
    assert not connects(clean.benign, "203.0.113.1") and not connects(clean.attacker, "198.51.100.1")
    assert not connects(clean.victim, "203.0.113.7"), "nothing gets out either"
    assert connects(clean.victim, "127.0.0.1") and connects(clean.victim, "::1"), "loopback still works"
    assert verdict.ok, verdict.detail
    assert verdict.evidence["probe"]["blocked"]["connected"] is False
    assert isolate.execute(req).status is ActionStatus.ALREADY_DONE

    release_req = request("host.release", {"host": "web-01"})
    released = release.execute(release_req)
    assert released.status is ActionStatus.DONE and KEY in released.detail
    assert release.verify(release_req, released).ok
    assert connects(clean.benign, "203.0.113.1") and connects(clean.attacker, "198.51.100.1")
    assert connects(clean.victim, "203.0.113.7")
    assert release.execute(release_req).status is ActionStatus.ALREADY_DONE


def test_isolation_keeps_the_management_path(clean: Lab) -> None:
    config = firewall(clean, hosts={"web-01": HostTarget(netns=clean.victim, management=["203.0.113.7"])})
    IsolateHostAdapter(config).execute(request("host.isolate", {"host": "web-01"}))

    assert connects(clean.benign, "203.0.113.1") and connects(clean.victim, "203.0.113.7")
    assert not connects(clean.attacker, "198.51.100.1")


def test_isolation_and_blocklist_are_separate_tables(clean: Lab) -> None:
    config = firewall(clean, probe=None)
    BlockIpAdapter(config).execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    IsolateHostAdapter(config).execute(request("host.isolate", {"host": "web-01"}))
    ReleaseHostAdapter(config).execute(request("host.release", {"host": "web-01"}))

    assert [e["val"] for e in elements(clean)] == ["198.51.100.66"], "releasing a host keeps the blocks"
    assert connects(clean.benign, "203.0.113.1") and not connects(clean.attacker, "198.51.100.1")


def test_a_host_outside_the_inventory_is_refused(clean: Lab) -> None:
    with pytest.raises(AdapterError, match=r"host 'db-07' is not in .*nftables\.hosts \(known: web-01\)"):
        IsolateHostAdapter(firewall(clean)).execute(request("host.isolate", {"host": "db-07"}))


WEB = {"host": "web-01"}


def isolation_owner(lab: Lab) -> str | None:
    """The owner comment on the isolation table's input chain, read with nft itself (None: not isolated)."""
    listed = nft_in(lab.victim, "-j", "list", "chain", "inet", "autonomy_isolation", "input", check=False)
    if listed.returncode != 0:
        return None
    rules = [item["rule"] for item in json.loads(listed.stdout)["nftables"] if "rule" in item]
    return rules[-1].get("comment") if rules else "(no rules)"


def test_a_second_isolation_is_not_its_own_and_its_undo_leaves_the_owners(clean: Lab) -> None:
    """An isolation has no expiry, so nothing outlasts it and it is never taken over: B, isolating a host A
    isolated, rides along (ALREADY_DONE, not mine), and an undo of B's execution (whose workflow would not even
    run one) leaves A's isolation in place, which verification accepts. A person's explicit release lifts it."""
    config = firewall(clean, probe=None)
    isolate, release = IsolateHostAdapter(config), ReleaseHostAdapter(config)

    first = isolate.execute(request("host.isolate", WEB, A_KEY))
    second = isolate.execute(request("host.isolate", WEB, B_KEY))

    assert first.status is ActionStatus.DONE and first.evidence["mine"] is True, first.detail
    assert second.status is ActionStatus.ALREADY_DONE and second.evidence["mine"] is False, second.detail
    assert second.evidence["owner"] == A_KEY and A_KEY in second.detail
    assert isolation_owner(clean) == A_KEY

    b_undo = undo("host.release", WEB, B_KEY, "compensate")
    left = release.execute(b_undo)
    left_verdict = release.verify(b_undo, left)

    assert left.status is ActionStatus.ALREADY_DONE, left.detail
    assert left.evidence["left_in_place"] is True and left.evidence["owner"] == A_KEY, left.evidence
    assert left.evidence["undoes"] == B_KEY and A_KEY in left.detail and "left web-01" in left.detail
    assert isolation_owner(clean) == A_KEY
    assert not connects(clean.benign, "203.0.113.1"), "A still relies on the isolation: B's undo must not lift it"
    assert left_verdict.ok and left_verdict.evidence["left_in_place"] is True, left_verdict.detail

    explicit = request("host.release", WEB, "fp:web-01/run-3/a1/execute")
    lifted = release.execute(explicit)

    assert lifted.status is ActionStatus.DONE and lifted.evidence["overrode"] == A_KEY, lifted.detail
    assert A_KEY in lifted.detail
    assert isolation_owner(clean) is None and release.verify(explicit, lifted).ok
    assert connects(clean.benign, "203.0.113.1")


def test_an_undo_leaves_an_isolation_another_incident_holds_and_lifts_its_own(clean: Lab) -> None:
    """A isolated, a person released, B isolated anew: A's late compensation finds B's isolation, not its own,
    and leaves it; B's own undo then removes it."""
    config = firewall(clean, probe=None)
    isolate, release = IsolateHostAdapter(config), ReleaseHostAdapter(config)
    isolate.execute(request("host.isolate", WEB, A_KEY))
    release.execute(request("host.release", WEB, "fp:web-01/run-3/a1/execute"))
    assert isolate.execute(request("host.isolate", WEB, B_KEY)).evidence["mine"] is True

    a_undo = undo("host.release", WEB, A_KEY, "compensate")
    left = release.execute(a_undo)

    assert left.status is ActionStatus.ALREADY_DONE and left.evidence["owner"] == B_KEY, left.detail
    assert release.verify(a_undo, left).ok
    assert isolation_owner(clean) == B_KEY and not connects(clean.benign, "203.0.113.1")

    b_undo = undo("host.release", WEB, B_KEY)
    lifted = release.execute(b_undo)

    assert lifted.status is ActionStatus.DONE and lifted.evidence["undoes"] == B_KEY, lifted.detail
    assert "left_in_place" not in lifted.evidence and release.verify(b_undo, lifted).ok
    assert isolation_owner(clean) is None and connects(clean.benign, "203.0.113.1")


def test_a_release_that_left_our_own_isolation_fails_verification(clean: Lab) -> None:
    """Verify reads the table: an undo whose own isolation is still there did not happen, whatever its outcome
    claims; and after an explicit release any isolation still there fails."""
    config = firewall(clean, probe=None)
    IsolateHostAdapter(config).execute(request("host.isolate", WEB, A_KEY))
    release = ReleaseHostAdapter(config)
    claimed = ActionOutcome(status=ActionStatus.ALREADY_DONE, detail="", evidence={"left_in_place": True})

    own = release.verify(undo("host.release", WEB, A_KEY), claimed)
    explicit = release.verify(request("host.release", WEB), ActionOutcome(status=ActionStatus.DONE, detail=""))

    assert not own.ok and "this revert had to remove" in own.detail and A_KEY in own.detail, own.detail
    assert not explicit.ok and "still has its isolation table" in explicit.detail, explicit.detail


@pytest.mark.parametrize("comment", ["operator: quarantine", None])
def test_an_isolation_made_outside_the_controller_is_never_lifted_by_an_undo(clean: Lab, comment: str | None) -> None:
    nft_in(clean.victim, "add", "table", "inet", "autonomy_isolation")
    nft_in(
        clean.victim,
        "add",
        "chain",
        "inet",
        "autonomy_isolation",
        "input",
        "{ type filter hook input priority -20; policy drop; }",
    )
    if comment is not None:
        nft_in(clean.victim, "add", "rule", "inet", "autonomy_isolation", "input", "counter", "comment", f'"{comment}"')
    config = firewall(clean, probe=None)
    release = ReleaseHostAdapter(config)
    a_undo = undo("host.release", WEB, A_KEY)

    left = release.execute(a_undo)

    assert left.status is ActionStatus.ALREADY_DONE and left.evidence["left_in_place"] is True, left.detail
    assert left.evidence["owner"] == comment
    assert release.verify(a_undo, left).ok
    assert not connects(clean.benign, "203.0.113.1")
    lifted = release.execute(request("host.release", WEB, "fp:web-01/run-3/a1/execute"))
    assert lifted.status is ActionStatus.DONE and lifted.evidence["overrode"] == comment, lifted.detail
    assert isolation_owner(clean) is None


def test_releases_decide_under_the_lock_so_an_undo_never_lifts_a_newer_owners_isolation(clean: Lab) -> None:
    """A's undo waits while another worker holding the lock replaces A's isolation by C's, then decides on
    what is there: C's, left in place."""
    config = firewall(clean, probe=None)
    IsolateHostAdapter(config).execute(request("host.isolate", WEB, A_KEY))
    release = ReleaseHostAdapter(config)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with Isolation(config, "web-01").serialized():
            pending = pool.submit(release.execute, undo("host.release", WEB, A_KEY))
            time.sleep(0.5)
            assert not pending.done(), "A's undo must wait for the lock before it reads"
            nft_in(clean.victim, "delete", "table", "inet", "autonomy_isolation")
            assert IP is not None and NFT is not None
            batch = json.dumps({"nftables": Isolation(config, "web-01").commands(owner_comment(C_KEY))})
            run(IP, "netns", "exec", clean.victim, NFT, "-j", "-f", "-", stdin=batch)
        outcome = pending.result(timeout=30)

    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["owner"] == C_KEY, outcome.detail
    assert isolation_owner(clean) == C_KEY


class ReplacedAfterItsFirstRead(Isolation):
    """An isolation whose first read is followed at once by someone outside the lock (an operator) deleting the
    table and isolating the host again as `new_owner`: the decision is taken on a read that is stale."""

    def __init__(self, config: NftFirewall, new_owner: str) -> None:
        super().__init__(config, "web-01")
        self.new_owner: str | None = new_owner
        self.reads = 0

    def read(self) -> TableState | None:
        state = super().read()
        self.reads += 1
        if self.new_owner is not None:
            owner, self.new_owner = self.new_owner, None
            nft_in(self.target.netns, "delete", "table", "inet", self.config.isolation_table)
            self.nft.apply(self.commands(owner_comment(owner)), "an operator isolates again")
        return state


def test_a_release_deletes_only_the_table_it_read(clean: Lab) -> None:
    """nft has no compare-and-swap, but a table has a handle: A's undo decided on A's table, the operator
    replaced it by C's meanwhile, so the delete by handle fails, the undo reads again and leaves C's."""
    config = firewall(clean, probe=None)
    IsolateHostAdapter(config).execute(request("host.isolate", WEB, A_KEY))
    stale = ReplacedAfterItsFirstRead(config, C_KEY)

    outcome = stale.release("wf/run/a1/revert", Undo("revert", A_KEY))

    assert stale.reads == 2, "the refused delete made it read again"
    assert outcome.status is ActionStatus.ALREADY_DONE and outcome.evidence["owner"] == C_KEY, outcome.detail
    assert isolation_owner(clean) == C_KEY


# -- errors ------------------------------------------------------------------------------------------------


def test_a_missing_namespace_is_named(clean: Lab) -> None:
    config = firewall(clean, netns=f"act-missing-{clean.suffix}")
    with pytest.raises(NetnsMissingError, match=rf"network namespace 'act-missing-{clean.suffix}' does not exist"):
        BlockIpAdapter(config).execute(request("network.block_ip", {"ip": "198.51.100.66"}))


def test_a_missing_nft_binary_is_named(clean: Lab, tmp_path: Path) -> None:
    config = firewall(clean, nft=str(tmp_path / "no-such-nft"))
    with pytest.raises(NftMissingError, match=r"no-such-nft does not exist .*nftables"):
        BlockIpAdapter(config).execute(request("network.block_ip", {"ip": "198.51.100.66"}))
    assert normalised_ruleset(clean.victim)["nftables"][1:] == [], "nothing was applied"


def test_nft_without_root_is_named(clean: Lab, tmp_path: Path) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) missing: cannot drop root for this test")
    wrapper = tmp_path / "nft-as-nobody"
    wrapper.write_text(f'#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups {NFT} "$@"\n')
    wrapper.chmod(0o755)
    with pytest.raises(NftDeniedError, match=r"must run as root"):
        BlockIpAdapter(firewall(clean, nft=str(wrapper))).execute(request("network.block_ip", {"ip": "198.51.100.66"}))


def test_a_bad_address_never_reaches_nft(clean: Lab) -> None:
    with pytest.raises(AdapterError, match=r"invalid params for network.block_ip: ip"):
        BlockIpAdapter(firewall(clean)).execute(request("network.block_ip", {"ip": "example.org"}))
    with pytest.raises(AdapterError, match=r"invalid params"):
        BlockIpAdapter(firewall(clean)).execute(request("network.block_ip", {"ip": "198.51.100.65/29"}))
    assert nft_in(clean.victim, "list", "table", "inet", "autonomy", check=False).returncode != 0, "not even ensured"


# -- config: the enforcement file and registration (no root needed) ----------------------------------------


ENFORCEMENT_YAML = """
nftables:
  netns: victim
  hosts:
    web-01: {netns: victim, management: [192.0.2.10]}
  probe: {from_netns: attacker, to: "198.51.100.1:8080", bystander_netns: benign, bystander_to: "203.0.113.1:8080"}
"""


def test_the_enforcement_file_parses_to_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "enforcement.yaml"
    path.write_text(ENFORCEMENT_YAML)
    loaded = load_enforcement(path)

    assert loaded is not None and loaded.nftables is not None
    config = loaded.nftables
    assert (config.table, config.set4, config.set6, config.hooks, config.priority) == (
        "autonomy",
        "blocklist4",
        "blocklist6",
        ["input", "forward"],
        -10,
    )
    assert config.hosts["web-01"].management == ["192.0.2.10"]
    assert config.probe is not None and config.probe.to == "198.51.100.1:8080"
    assert load_enforcement(tmp_path / "absent.yaml") is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("nftables: {tabel: x}", r"enforcement.yaml: nftables.tabel: Extra inputs are not permitted"),
        ("nftables: {hosts: {web-01: {}}}", r"enforcement.yaml: nftables.hosts.web-01.netns: Field required"),
        ("nftables: {netns: '../etc'}", r"enforcement.yaml: nftables.netns: String should match pattern"),
        ("nftables: {probe: {to: 'victim:80'}}", r"enforcement.yaml: nftables.probe.to: .*does not appear to be an IP"),
        ("nftables: {isolation_table: autonomy}", r"enforcement.yaml: nftables: Value error, isolation_table must"),
        ("nftables: [", r"enforcement.yaml: not valid YAML"),
        ("firewall: {}", r"enforcement.yaml: firewall: Extra inputs are not permitted"),
    ],
)
def test_a_broken_enforcement_file_names_file_key_and_problem(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "enforcement.yaml"
    path.write_text(text)
    with pytest.raises(EnforcementConfigError, match=error):
        load_enforcement(path)


def test_build_adapters_adds_nftables_only_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTONOMY_ENFORCEMENT_FILE", raising=False)
    settings = Settings(state_dir=tmp_path / "var")
    settings.state_dir.mkdir()
    four = {"network.block_ip", "network.unblock_ip", "host.isolate", "host.release"}
    with Ledger.from_url(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        assert settings.enforcement_file == settings.state_dir / "enforcement.yaml"
        assert not four & set(build_adapters(settings, ledger)), "no file: the firewall is never touched"

        settings.enforcement_file.write_text("# enforcement comes later\n")
        assert not four & set(build_adapters(settings, ledger))

        settings.enforcement_file.write_text(ENFORCEMENT_YAML)
        adapters = build_adapters(settings, ledger)
        assert four <= set(adapters) and isinstance(adapters["network.block_ip"], BlockIpAdapter)

        settings.enforcement_file.write_text("nftables: {priority: lots}")
        broken = build_adapters(settings, ledger)["network.block_ip"]
        assert isinstance(broken, MisconfiguredAdapter)
        with pytest.raises(EnforcementConfigError, match=r"enforcement.yaml: nftables.priority: Input should be"):
            broken.execute(request("network.block_ip", {"ip": "198.51.100.66"}))

        elsewhere = tmp_path / "elsewhere.yaml"
        elsewhere.write_text(ENFORCEMENT_YAML)
        monkeypatch.setenv("AUTONOMY_ENFORCEMENT_FILE", str(elsewhere))
        assert Settings(state_dir=tmp_path / "var").enforcement_file == elsewhere


def test_owner_comments_fit_nfts_limit_and_keep_the_incident_readable() -> None:
    assert owner_comment(KEY) == KEY
    long_key = "sqli:2001:db8:ffff:ffff:ffff:ffff:ffff:66/" + "0" * 120 + "/a1"
    comment = owner_comment(long_key)
    assert len(comment.encode()) == COMMENT_MAX_BYTES
    assert comment.startswith("sqli:2001:db8:ffff:ffff:ffff:ffff:ffff:66/")
    assert comment != owner_comment(long_key.replace("/a1", "/a2")), "keys differing at the end stay apart"
    assert owner_comment('quote"d') != 'quote"d' and '"' not in owner_comment('quote"d')
