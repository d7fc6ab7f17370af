"""The replay harness on the real lab: labelled CSIC requests from many source addresses through nginx +
ModSecurity + CRS, alerts attributed to the right sources, and a block of a replay source verified by a
connect from that very address (issue 12).

Real: the namespaces, nginx + ModSecurity v3 + CRS 3.3.4 (Accept-Charset allowed, PL1), the client inside the
attacker namespace, the audit log and the ingest's parser, nft and the adapter's probe. Needs root; the lab's
namespaces are `replay<pid>-*` and are deleted in a finally (also when a test fails).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from autonomy_controller.actions.adapters.base import ActionRequest, ActionStatus
from autonomy_controller.actions.adapters.nftables import NftFirewall
from autonomy_controller.actions.adapters.nftables.adapters import BlockIpAdapter
from autonomy_controller.actions.adapters.nftables.probe import ReachabilityProbe
from autonomy_controller.controller.config import REPO_ROOT
from autonomy_controller.controller.lab import Lab
from autonomy_controller.controller.lab.manifest import alerts_of, load_manifest
from autonomy_controller.controller.lab.replay import replay
from autonomy_controller.controller.lab.requests import read_requests
from autonomy_controller.controller.lab.sessions import assign
from tests.test_lab_e2e import running_lab

pytestmark = pytest.mark.lab

DATA = Path(__file__).parent / "data" / "csic"
FILES = [DATA / "normalTrafficSample.txt", DATA / "anomalousTrafficSample.txt"]
LAB_ATTACKER = "198.51.100.66"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), "replay") as lab:
        yield lab


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    lab.clear_blocks()
    try:
        yield lab
    finally:
        lab.clear_blocks()


def connects_from(lab: Lab, source: str, timeout: float = 0.5) -> bool:
    """A plain TCP connect to the WAF from `source` inside the attacker namespace (not the adapter's probe)."""
    code = (
        "import socket, sys\n"
        "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]), "
        "source_address=(sys.argv[3], 0))\n"
        "s.close()\n"
    )
    argv = ["ip", "netns", "exec", lab.topology.attacker, sys.executable, "-I", "-c", code]
    argv += [lab.topology.victim_a, str(lab.config.http_port), source, str(timeout)]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False).returncode == 0


def test_replay_from_three_sources_attributes_alerts_to_the_attacker_and_removes_its_addresses(clean: Lab) -> None:
    """The CLI, as a user runs it: 2 benign users x 12 normal requests, 1 attacker x 12 anomalous ones."""
    command = [
        sys.executable,
        "-m",
        "autonomy_controller.controller.cli",
        "lab",
        "replay",
        *map(str, FILES),
        "--root",
        str(clean.root),
    ]
    command += ["--sources", "3", "--attackers", "1", "--run-length", "12", "--attack-run-length", "12", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["totals"] == {"requests": 36, "sent": 36, "no_answer": 0, "statuses": {"200": 24, "403": 12}}

    manifest = load_manifest(Path(output["manifest"]))
    assert (
        manifest.audit_log["path"] == str(clean.audit_log) and Path(output["manifest"]).parent == clean.audit_log.parent
    )
    labels = Counter(record.label for record in manifest.sources.values())
    assert labels == {"normal": 2, "anomalous": 1}
    (attacker,) = [source for source, record in manifest.sources.items() if record.label == "anomalous"]
    assert manifest.sources[attacker].statuses == {"403": 12} and manifest.sources[attacker].sent == 12
    attributed = alerts_of(manifest)
    assert attributed.foreign == 0 and not attributed.unparsed
    per_source = Counter(alert.src_ip for alert, _ in attributed.alerts)
    assert per_source == {attacker: 12}, "every alert is the attacker's; the benign users raised none"
    assert all(label == "anomalous" for _, label in attributed.alerts)
    assert {a.category for a, _ in attributed.alerts} <= {"sqli", "xss", "rce", "lfi", "protocol", "other"}

    left = {a for a in clean.network.attacker_addresses() if ipaddress.ip_address(a).version == 4}
    assert left == {LAB_ATTACKER}, "the replay's addresses are gone again"


def test_a_source_that_gets_no_answer_is_cut_off_and_the_manifest_says_where(clean: Lab, tmp_path: Path) -> None:
    sessions = assign([r for f in FILES for r in read_requests(f)], 2, 1, run_length=6, attack_run_length=6)
    (attacker,) = [s.source for s in sessions if s.label == "anomalous"]
    adapter = BlockIpAdapter(NftFirewall(**clean.enforcement()["nftables"]))
    block = request(attacker)
    assert adapter.execute(block).status is ActionStatus.DONE

    manifest, _ = replay(clean, sessions, timeout=0.5, manifest_path=tmp_path / "replay.json")

    record = manifest.sources[attacker]
    assert (record.sent, record.no_answer, record.cut_off_at, record.statuses) == (2, 2, 2, {})
    assert all(r.sent == 6 and r.statuses == {"200": 6} for s, r in manifest.sources.items() if s != attacker)


def request(ip: str) -> ActionRequest:
    key = f"sqli:{ip}/run-1/a1"
    return ActionRequest(
        incident_key=key.split("/")[0],
        action_id="a1",
        action="network.block_ip",
        params={"ip": ip},
        idempotency_key=key,
        purpose="execute",
    )


def test_a_blocked_replay_source_is_verified_by_a_refused_connect_from_that_address(clean: Lab) -> None:
    source = "198.51.100.23"
    config = NftFirewall(**clean.enforcement()["nftables"])
    adapter = BlockIpAdapter(config)
    added = clean.network.add_sources([source])
    try:
        assert connects_from(clean, source), "before: the replay source reaches the WAF"
        unblocked = ReachabilityProbe(config, config.probe).expect_cut_off(ipaddress.ip_network(source))
        assert not unblocked.ok and unblocked.evidence["blocked"]["from"] == source, "the probe bites unblocked"

        outcome = adapter.execute(request(source))
        verdict = adapter.verify(request(source), outcome)

        assert outcome.status is ActionStatus.DONE and verdict.ok, verdict.detail
        probe = verdict.evidence["probe"]
        assert probe["blocked"]["from"] == source and probe["blocked"]["connected"] is False
        assert probe["bystander"]["connected"] is True
        assert f"from {source} could not connect" in verdict.detail
        assert not connects_from(clean, source), "the block bites the source itself"
        assert connects_from(clean, LAB_ATTACKER), "and no other address of the namespace"
    finally:
        clean.network.remove_sources(added)
    skipped = adapter.verify(request(source), outcome)
    assert (
        skipped.ok
        and "probe skipped" in skipped.detail
        and "nor is an address of the probe's sources" in (skipped.detail)
    ), "once the replay gave the address back, the set is read back and the probe says why it did not run"
