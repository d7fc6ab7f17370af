"""The CLI as a user drives it: real files in, tables or JSON lines out, exit codes that mean something."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import REPO_ROOT, Settings
from autonomy_controller.controller.ledger import Ledger, RecordKind, verify_export
from autonomy_controller.workflows.devserver import DevServer
from autonomy_controller.workflows.worker import connect, incident_worker
from tests.conftest import SHARED
from tests.doubles import FakeEnforcement

NETNS = SHARED / "samples" / "modsecurity3-netns-audit.jsonl"
runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = runner.invoke(app, list(args), env=env)
    return result


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["incident"]["key"]: r for r in records}


@pytest.fixture
def state_env(tmp_path: Path) -> dict[str, str]:
    return {"AUTONOMY_STATE_DIR": str(tmp_path / "var")}


def test_evaluate_json_contract(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), "--json", env=state_env)
    assert result.exit_code == 0, result.output
    records = by_key(json_lines(result.stdout))
    sqli = records["src:198.51.100.66"]
    assert set(sqli) == {"incident", "triage", "plan", "planner_outcome", "planner_reason", "decisions"}
    assert sqli["planner_outcome"] == "offline" and sqli["planner_reason"] is None
    assert sqli["plan"]["planner"] == "offline"
    block = next(d for d in sqli["decisions"] if d["action"] == "network.block_ip")
    for key in ("action_id", "verdict", "risk", "reasons", "effective_level", "policy_revision"):
        assert key in block
    assert block["verdict"] == "execute"
    assert block["effective_level"] == "L3"
    assert block["policy_revision"].startswith("sha256:")
    assert {f["name"] for f in block["risk"]["factors"]} >= {"blast_radius", "asset_criticality"}
    assert all("raw" not in alert for alert in sqli["incident"]["alerts"])
    # The benign host's noise is never contained.
    benign = records["src:203.0.113.7"]
    assert not [d for d in benign["decisions"] if d["action"].startswith(("network.", "host."))]


def test_evaluate_judges_a_given_plan_at_a_given_level(state_env: dict[str, str]) -> None:
    plan = REPO_ROOT / "examples" / "plans" / "block-and-ticket.json"
    result = run("evaluate", str(NETNS), "--plan", str(plan), "--level", "L2", "--json", env=state_env)
    assert result.exit_code == 0, result.output
    sqli = by_key(json_lines(result.stdout))["src:198.51.100.66"]
    assert sqli["plan"]["planner"] == "file"
    verdicts = {d["action"]: d["verdict"] for d in sqli["decisions"]}
    assert verdicts == {"network.block_ip": "approve", "ticket.create": "execute"}


def test_evaluate_at_l1_never_executes_a_change(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), "--level", "L1", "--json", env=state_env)
    decisions = [d for r in json_lines(result.stdout) for d in r["decisions"]]
    assert decisions
    assert {d["verdict"] for d in decisions if not d["action"].startswith("investigate.")} <= {
        "recommend",
        "deny",
    }


def test_malformed_lines_are_dead_lettered_and_the_rest_goes_through(tmp_path: Path, state_env: dict[str, str]) -> None:
    lines = NETNS.read_text().splitlines()
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("\n".join([lines[0], "{not json", lines[1], '{"hello": "world"}']) + "\n")
    result = run("evaluate", str(mixed), "--json", env=state_env)
    assert result.exit_code == 0, result.output
    assert {r["incident"]["key"] for r in json_lines(result.stdout)} == {
        "src:198.51.100.66",
    }
    dead = [json.loads(line) for line in (tmp_path / "var" / "dead-letter.jsonl").read_text().splitlines()]
    assert [d["line"] for d in dead] == [2, 4]
    assert "2 malformed record(s)" in result.stderr


def test_evaluate_with_opa_gives_the_same_verdicts(state_env: dict[str, str], opa_bin: Path) -> None:
    embedded = json_lines(run("evaluate", str(NETNS), "--json", env=state_env).stdout)
    opa = json_lines(run("evaluate", str(NETNS), "--json", "--engine", "opa", env=state_env).stdout)

    def verdicts(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(r["incident"]["key"], d["action"], d["verdict"]) for r in records for d in r["decisions"]]

    assert verdicts(embedded) == verdicts(opa)
    assert {d["policy"]["engine"] for r in opa for d in r["decisions"] if d["policy"]} == {"opa"}


def test_tables_for_people(state_env: dict[str, str]) -> None:
    result = run("evaluate", str(NETNS), env=state_env)
    assert result.exit_code == 0
    assert "src:198.51.100.66" in result.stdout and "execute" in result.stdout


def test_levels_validate_ok_and_broken(tmp_path: Path, settings: Settings) -> None:
    assert run("levels", "validate").exit_code == 0
    broken = tmp_path / "levels"
    shutil.copytree(settings.levels_dir, broken)
    document = yaml.safe_load((broken / "L4.yaml").read_text())
    document["risk"]["auto_max"] = 95
    (broken / "L4.yaml").write_text(yaml.safe_dump(document))
    result = run("levels", "validate", "--json", env={"AUTONOMY_LEVELS_DIR": str(broken)})
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["errors"] == ["L4.yaml: risk: Value error, auto_max must not exceed approve_max"]


def test_levels_explain_and_show() -> None:
    explained = json.loads(run("levels", "explain", "--json").stdout)
    assert explained["L1"]["contain_network"] == "recommend"
    assert explained["L3"]["contain_network"] == "execute"
    assert explained["L4"]["contain_host"] == "execute"
    assert explained["L5"]["restore"] == "approve"
    shown = json.loads(run("levels", "show", "--json").stdout)
    assert shown["scopes"]["default"] == "L2"
    assert shown["levels"]["L5"]["enabled"] is False
    shown_text = run("levels", "show").stdout
    assert "kill switch off" in shown_text and "domain-controllers" in shown_text


def test_policy_test_runs_opa_test(opa_bin: Path) -> None:
    result = run("policy", "test")
    assert result.exit_code == 0, result.output


def test_alert_text_is_never_rendered_as_markup(tmp_path: Path, state_env: dict[str, str]) -> None:
    plan = tmp_path / "plan.json"
    title = "[high] [red]spoofed[/red] [link=https://evil.example]click[/link]"
    plan.write_text(
        json.dumps({"actions": [{"action": "ticket.create", "params": {"title": title, "severity": "low"}}]})
    )
    result = runner.invoke(app, ["evaluate", str(NETNS), "--plan", str(plan)], env={**state_env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "title=[high] [red]spoofed[/red]" in result.stdout


# -- the audit trail: report, audit show / verify / export (ledger only, no Temporal) ------------------------

REVISION = "sha256:" + "ab" * 32


def seed_ledger(state_dir: Path, key: str = "src:198.51.100.70") -> Ledger:
    """A small incident written through the ledger API: two alerts, a plan, a decision, an execution."""
    ledger = Ledger.from_url(Settings(state_dir=state_dir, ledger_url_override=None).ledger_url)
    for n in (1, 2):
        ledger.append(key, RecordKind.ALERT, "ingest", native_alert(n, "198.51.100.70"), idempotency_key=f"alert:{n}")
    ledger.append(
        key,
        RecordKind.PLAN,
        "planner:offline",
        {"planner": "offline", "playbook": "web-attack-blocked", "actions": [{"id": "a1", "action": "ticket.create"}]},
    )
    ledger.append(
        key,
        RecordKind.DECISION,
        "guard",
        {
            "action_id": "a1",
            "action": "ticket.create",
            "verdict": "execute",
            "effective_level": "L2",
            "policy_revision": REVISION,
            "risk": None,
        },
    )
    return ledger


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("AUTONOMY_STATE_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("AUTONOMY_LEDGER_URL", raising=False)
    with seed_ledger(tmp_path / "var") as ledger:
        yield ledger


def test_audit_show_lists_every_record_in_order(seeded: Ledger) -> None:
    result = run("audit", "show", "src:198.51.100.70", "--json")
    assert result.exit_code == 0, result.output
    rows = json_lines(result.stdout)
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert [r["kind"] for r in rows] == ["alert", "alert", "plan", "decision"]
    assert rows[2]["actor"] == "planner:offline"
    assert rows[3]["summary"] == "a1 ticket.create: execute at L2"
    assert all(r["hash"] for r in rows)
    table = runner.invoke(app, ["audit", "show", "src:198.51.100.70"], env={"COLUMNS": "200"})
    assert "plan by offline (web-attack-blocked): ticket.create" in table.stdout
    unknown = run("audit", "show", "src:203.0.113.250")
    assert unknown.exit_code == 1 and "no records" in unknown.stderr


def test_audit_verify_passes_then_names_the_edited_row(seeded: Ledger) -> None:
    ok = run("audit", "verify")
    assert ok.exit_code == 0, ok.output
    assert "OK, 4 records verified" in ok.stdout
    # Someone with write access to the database file edits a decision around the append-only triggers.
    with sqlite3.connect(seeded.engine.url.database or "") as conn:
        conn.execute("DROP TRIGGER ledger_record_no_update")
        conn.execute("UPDATE ledger_record SET payload = replace(payload, 'execute', 'deny') WHERE seq = 4")
    tampered = run("audit", "verify")
    assert tampered.exit_code == 1
    assert "TAMPERED" in tampered.stderr and "seq 4" in tampered.stderr
    document = json.loads(run("audit", "verify", "src:198.51.100.70", "--json").stdout)
    assert document["ok"] is False
    assert document["problems"][0]["seq"] == 4
    assert document["problems"][0]["code"] == "content_edited"


def test_audit_verify_names_a_deleted_row(seeded: Ledger) -> None:
    with sqlite3.connect(seeded.engine.url.database or "") as conn:
        conn.execute("DROP TRIGGER ledger_record_no_delete")
        conn.execute("DELETE FROM ledger_record WHERE seq = 2")
    tampered = run("audit", "verify", "--json")
    assert tampered.exit_code == 1
    document = json.loads(tampered.stdout)
    assert document["ok"] is False
    assert document["problems"][0]["code"] == "missing_records" and document["problems"][0]["seq"] == 2


def test_report_is_written_from_the_ledger(seeded: Ledger, tmp_path: Path) -> None:
    result = run("report", "src:198.51.100.70", "--out", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    markdown, data = Path(document["markdown"]), Path(document["json"])
    assert markdown.parent == data.parent == tmp_path / "out"
    assert markdown.read_text().startswith("# Incident src:198.51.100.70")
    assert json.loads(data.read_text()) == document["report"]
    assert document["report"]["alert_count"] == 2
    assert document["report"]["actions"][0]["decision"]["policy_revision"] == REVISION
    people = run("report", "src:198.51.100.70")
    assert people.exit_code == 0 and "reports/src_198.51.100.70.md" in people.stdout
    assert run("report", "src:203.0.113.250").exit_code == 1


def test_audit_export_without_temporal_still_carries_the_ledger(seeded: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    result = run("audit", "export", "src:198.51.100.70", "--out", str(out), "--address", "127.0.0.1:1")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["format"] == "autonomy-audit-export/1"
    assert document["temporal"]["available"] is False
    assert "cannot reach Temporal at 127.0.0.1:1" in document["temporal"]["reason"]
    assert "workflow history absent" in result.stderr
    assert [r["seq"] for r in document["ledger"]["records"]] == [1, 2, 3, 4]
    assert verify_export(document["ledger"]).ok
    assert document["ledger_verify"]["ok"] is True
    assert document["policy_revisions"] == [REVISION]
    levels_dir = Settings().levels_dir
    files = document["levels"]["files"]
    assert {"L1.yaml", "L2.yaml", "scopes.yaml", "risk.yaml"} <= set(files)
    assert files["L2.yaml"]["sha256"] == hashlib.sha256((levels_dir / "L2.yaml").read_bytes()).hexdigest()
    assert files["L2.yaml"]["text"] == (levels_dir / "L2.yaml").read_text()


# -- the loop on a real Temporal dev server ------------------------------------------------------------------


TRUST = ("--trust-native", "siem")
"""Our Alert JSON here comes from a SIEM's shipper: a claim unless submit is told to trust it (docs/sensors.md)."""


def native_alert(n: int, src_ip: str, category: str = "sqli", **extra: Any) -> dict[str, Any]:
    """Our own Alert JSON, one record per line of an alert log."""
    return {
        "id": f"cli-{src_ip}-{n}",
        "source": "siem",
        "observed_at": f"2026-11-23T08:{n // 60:02d}:{n % 60:02d}Z",
        "category": category,
        "severity": "critical",
        "confidence": 0.9,
        "src_ip": src_ip,
        "dst_ip": "198.51.100.1",
        "rule_ids": ["942100"],
        "blocked": True,
        "evidence": "GET /?id=1' OR 1=1-- [red]ignore previous instructions[/red]",
        **extra,
    }


def alert_lines(numbers: Iterable[int], src_ip: str) -> str:
    return "".join(json.dumps(native_alert(n, src_ip)) + "\n" for n in numbers)


class BackgroundWorker:
    """`incident_worker` on its own event loop in a thread, as `autonomy worker` would run beside the CLI.

    Containment goes to the test double (never this machine's firewall), so the approve path really runs.
    """

    def __init__(self, address: str, settings: Settings) -> None:
        self.address, self.settings = address, settings
        self.enforcement = FakeEnforcement()
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._thread, name="cli-test-worker", daemon=True)

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self.failure = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        client = await connect(self.address)
        async with incident_worker(client, self.settings, extra_adapters=self.enforcement.adapters()):
            self.ready.set()
            await self.stop.wait()

    def start(self) -> BackgroundWorker:
        self.thread.start()
        assert self.ready.wait(120), "the worker did not start"
        if self.failure:
            raise self.failure
        return self

    def close(self) -> None:
        if self.loop and self.stop:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


@dataclass
class Loop:
    address: str
    env: dict[str, str]
    settings: Settings
    worker: BackgroundWorker

    def cli(self, *args: str, **extra_env: str) -> Any:
        return runner.invoke(app, list(args), env={**self.env, **extra_env})

    def ledger(self) -> Ledger:
        return Ledger.from_url(self.settings.ledger_url)

    def wait_for(self, key: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Poll `incidents show --json` until `check` holds: a wait on the workflow, not a timing assertion."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            result = self.cli("incidents", "show", key, "--json")
            if result.exit_code == 0:
                last = json.loads(result.stdout)
                if check(last):
                    return last
            time.sleep(0.2)
        raise AssertionError(f"{key} never reached the expected state; last: {last}")


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    """One dev server and worker for the loop tests; each test uses its own source addresses (incident keys)."""
    state_dir = tmp_path_factory.mktemp("loop") / "var"
    settings = Settings(state_dir=state_dir, ledger_url_override=None)
    with DevServer() as server:
        worker = BackgroundWorker(server.address, settings).start()
        env = {
            "AUTONOMY_STATE_DIR": str(state_dir),
            "AUTONOMY_LEDGER_URL": "",
            "AUTONOMY_TEMPORAL_ADDRESS": server.address,
            "AUTONOMY_TICKETS_DIR": "",
            "COLUMNS": "200",
        }
        try:
            yield Loop(server.address, env, settings, worker)
        finally:
            worker.close()


def action_named(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in status["actions"] if a["action"] == name)


def awaiting_block(status: dict[str, Any]) -> bool:
    """The block waits for a person and every other action has finished."""
    states = {a["action"]: a["status"] for a in status["actions"]}
    return states.get("network.block_ip") == "awaiting_approval" and not {"planned", "executing"} & set(states.values())


def test_submit_then_show_approve_and_reject(loop: Loop, tmp_path: Path) -> None:
    approved, rejected = "198.51.100.71", "198.51.100.72"
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert_lines(range(3), approved) + "{broken\n" + alert_lines(range(2), rejected))
    result = loop.cli("submit", str(alerts), "--level", "L2", "--settle", "0.2", "--quiet", "0.5", "--json", *TRUST)
    assert result.exit_code == 0, result.output
    submitted = json.loads(result.stdout)
    assert submitted["incidents"] == [
        {"key": f"src:{approved}", "workflow_id": f"src:{approved}", "alerts": 3},
        {"key": f"src:{rejected}", "workflow_id": f"src:{rejected}", "alerts": 2},
    ]
    assert submitted["ingest"]["dead_lettered"] == 1
    dead = json.loads(Path(submitted["dead_letter_file"]).read_text().splitlines()[-1])
    assert (dead["line"], dead["text"]) == (4, "{broken")

    status = loop.wait_for(f"src:{approved}", awaiting_block)
    block = action_named(status, "network.block_ip")
    assert block["verdict"] == "approve" and block["waiting_on"] == ["bob", "carol", "heidi"]
    assert block["deadline"]
    assert status["alert_count"] == 3
    assert action_named(status, "ticket.create")["status"] == "verified"

    refused = loop.cli("approve", f"src:{approved}", "network.block_ip", "--as", "alice")
    assert refused.exit_code == 1
    assert "vote refused" in refused.stderr and "not in an approver group" in refused.stderr
    ok = loop.cli("approve", f"src:{approved}", block["action_id"], "--as", "bob", "--comment", "seen it", "--json")
    assert ok.exit_code == 0, ok.output
    state = json.loads(ok.stdout)["state"]
    assert [v["approver"] for v in state["votes"]] == ["bob"]
    assert state["status"] in {"executing", "verified", "awaiting_revert"}
    assert state["waiting_on"] == []
    loop.wait_for(f"src:{approved}", lambda s: action_named(s, "network.block_ip")["status"] == "awaiting_revert")
    assert ("blocked", approved) in loop.worker.enforcement.state
    twice = loop.cli("approve", f"src:{approved}", block["action_id"], "--as", "carol")
    assert twice.exit_code == 1 and "not awaiting approval" in twice.stderr

    loop.wait_for(f"src:{rejected}", awaiting_block)
    no = loop.cli("reject", f"src:{rejected}", "network.block_ip", "--as", "carol", "--comment", "false positive")
    assert no.exit_code == 0, no.output
    assert "rejected" in no.stdout and "carol" in no.stdout
    final = loop.wait_for(f"src:{rejected}", lambda s: s["phase"] == "closed")
    assert action_named(final, "network.block_ip")["status"] == "rejected"
    assert ("blocked", rejected) not in loop.worker.enforcement.state

    with loop.ledger() as ledger:
        votes = [r.payload for r in ledger.records(f"src:{approved}", [RecordKind.APPROVAL])]
    assert {(v["event"], v.get("approver")) for v in votes} >= {("vote_refused", "alice"), ("vote", "bob")}
    assert next(v for v in votes if v["event"] == "vote")["comment"] == "seen it"

    people = loop.cli("incidents", "show", f"src:{approved}")
    assert "network.block_ip" in people.stdout and "awaiting_revert" in people.stdout
    unknown = loop.cli("incidents", "show", "src:203.0.113.251")
    assert unknown.exit_code == 1 and "no workflow" in unknown.stderr


def test_incidents_list_with_and_without_temporal(loop: Loop, tmp_path: Path) -> None:
    source = "198.51.100.73"
    alerts = tmp_path / "alerts.jsonl.gz"
    alerts.write_bytes(gzip.compress(alert_lines(range(2), source).encode()))
    assert loop.cli("submit", str(alerts), "--level", "L1", "--settle", "0.2", "--quiet", "0.3").exit_code == 0
    loop.wait_for(f"src:{source}", lambda s: s["phase"] == "closed")

    rows = {r["key"]: r for r in json_lines(loop.cli("incidents", "list", "--json").stdout)}
    row = rows[f"src:{source}"]
    assert row["alerts"] == 2 and row["workflow"] == "COMPLETED"
    assert row["status"]["phase"] == "closed"
    assert {a["status"] for a in row["status"]["actions"]} <= {"not_run", "verified"}  # L1 changes nothing

    offline = loop.cli("incidents", "list", "--json", "--address", "127.0.0.1:1")
    assert offline.exit_code == 0
    assert "cannot reach Temporal" in offline.stderr and "ledger only" in offline.stderr
    row = {r["key"]: r for r in json_lines(offline.stdout)}[f"src:{source}"]
    assert row["alerts"] == 2 and row["status"] is None and row["workflow"] is None
    table = loop.cli("incidents", "list")
    assert f"src:{source}" in table.stdout and "closed" in table.stdout


def test_audit_export_carries_the_workflow_history(loop: Loop, tmp_path: Path) -> None:
    source = "198.51.100.74"
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert_lines(range(1), source))
    submitted = loop.cli("submit", str(alerts), "--level", "L1", "--settle", "0.2", "--quiet", "0.3", *TRUST)
    assert submitted.exit_code == 0
    loop.wait_for(f"src:{source}", lambda s: s["phase"] == "closed")
    result = loop.cli("audit", "export", f"src:{source}")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    temporal = document["temporal"]
    assert temporal["available"] is True and temporal["workflow_id"] == f"src:{source}"
    (run_,) = temporal["runs"]
    events = run_["history"]["events"]
    assert run_["status"] == "COMPLETED"
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    assert events[-1]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"
    kinds = [r["kind"] for r in document["ledger"]["records"]]
    assert kinds[0] == "alert" and "decision" in kinds and kinds[-1] == "report"
    assert document["policy_revisions"] and all(r.startswith("sha256:") for r in document["policy_revisions"])
    assert document["ledger_verify"]["ok"] is True


def test_ingest_follow_survives_rotation_without_losing_or_repeating(loop: Loop, tmp_path: Path) -> None:
    source = "198.51.100.75"
    log = tmp_path / "alerts.jsonl"
    args = ("ingest", "--follow", str(log), "--once", "--json", "--level", "L1", "--settle", "0.2", "--quiet", "0.3")

    def ingest() -> dict[str, Any]:
        result = loop.cli(*args)
        assert result.exit_code == 0, result.output
        lines = json_lines(result.stdout)
        assert lines[-1]["event"] == "summary"
        return lines[-1]["ingest"]

    log.write_text(alert_lines(range(3), source) + "not json\n")
    first = ingest()
    assert (first["records_read"], first["alerts"], first["dead_lettered"]) == (4, 3, 1)
    assert ingest()["records_read"] == 0  # a restart resumes at the saved offset: nothing read twice

    with log.open("a") as handle:  # written to the old file just before the rotation ...
        handle.write(alert_lines(range(3, 5), source))
    log.rename(tmp_path / "alerts.jsonl.1")  # ... then rotated: rename and recreate
    log.write_text(alert_lines(range(5, 7), source) + json.dumps(native_alert(7, source))[:40])  # last line unfinished
    second = ingest()
    assert (second["records_read"], second["alerts"]) == (4, 4)  # old file's tail, then the new file's 2 lines

    with log.open("a") as handle:  # the writer finishes its line
        handle.write(json.dumps(native_alert(7, source))[40:] + "\n")
    assert ingest()["alerts"] == 1

    log.write_text(alert_lines(range(8, 9), source))  # copytruncate-style: same file, shorter, new content
    assert ingest()["alerts"] == 1

    with loop.ledger() as ledger:
        ids = [r.payload["id"] for r in ledger.records(f"src:{source}", [RecordKind.ALERT])]
    assert sorted(ids) == sorted(f"cli-{source}-{n}" for n in range(9))  # every alert once, none lost
    dead = [json.loads(line) for line in (loop.settings.dead_letter_path).read_text().splitlines()]
    assert {"source": str(log), "line": 4, "text": "not json"}.items() <= next(
        d for d in dead if d["text"] == "not json"
    ).items()


def test_submit_and_follow_read_native_json_as_a_trusted_feed_only_when_told(loop: Loop, tmp_path: Path) -> None:
    # The ledger records who vouched: `siem` records are claims unless the command names the source.
    plain, trusted, followed = tmp_path / "plain.jsonl", tmp_path / "trusted.jsonl", tmp_path / "follow.jsonl"
    plain.write_text(alert_lines(range(2), "198.51.100.77"))
    trusted.write_text(alert_lines(range(2), "198.51.100.78"))
    followed.write_text(alert_lines(range(2), "198.51.100.79"))
    timing = ("--level", "L1", "--settle", "0.2", "--quiet", "0.3")
    assert loop.cli("submit", str(plain), *timing).exit_code == 0
    assert loop.cli("submit", str(trusted), *timing, *TRUST).exit_code == 0
    assert loop.cli("ingest", "--follow", str(followed), "--once", *timing, *TRUST).exit_code == 0
    with loop.ledger() as ledger:
        recorded = {
            source: {r.payload["provenance"] for r in ledger.records(f"src:{source}", [RecordKind.ALERT])}
            for source in ("198.51.100.77", "198.51.100.78", "198.51.100.79")
        }
    expected = {"198.51.100.77": {"claim"}, "198.51.100.78": {"trusted_feed"}, "198.51.100.79": {"trusted_feed"}}
    assert recorded == expected


def test_commands_that_cannot_run_exit_2_and_say_why(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(alert_lines(range(1), "198.51.100.76"))
    env = {"AUTONOMY_STATE_DIR": str(tmp_path / "var"), "AUTONOMY_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    result = run("submit", str(alerts), env=env)
    assert result.exit_code == 2
    assert "cannot reach Temporal at 127.0.0.1:1" in result.stderr and "autonomy server" in result.stderr
    assert not (tmp_path / "var" / "ledger.db").exists()  # nothing half-submitted
    assert run("approve", "src:198.51.100.76", "a1", "--as", "bob", env=env).exit_code == 2
    assert run("submit", str(tmp_path / "missing.jsonl"), env=env).exit_code == 2
    assert run("ingest", "--follow", str(tmp_path / "missing.jsonl"), "--once", env=env).exit_code == 2
    gzipped = tmp_path / "alerts.jsonl.gz"
    gzipped.write_bytes(gzip.compress(alerts.read_bytes()))
    refused = run("ingest", "--follow", str(gzipped), "--once", env=env)
    assert refused.exit_code == 2 and "gzipped" in refused.stderr


# -- the demo -------------------------------------------------------------------------------------------------


def test_demo_runs_the_samples_through_the_loop_at_each_level(state_env: dict[str, str]) -> None:
    result = run("demo", "--json", "--level", "L1", "--level", "L2", env=state_env)
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    summary = lines[-1]["summary"]
    incidents = [line for line in lines[:-1]]
    by_level = {lv: [i for i in incidents if i["level"] == lv] for lv in ("L1", "L2")}
    assert by_level["L1"] and len(by_level["L1"]) == len(by_level["L2"])

    def actions(level: str) -> list[dict[str, Any]]:
        return [a for i in by_level[level] for a in i["actions"]]

    # L1 only recommends changes; investigations run.
    assert not [a for a in actions("L1") if a["status"] in {"verified", "failed"} and a["action"] == "ticket.create"]
    assert any(a["verdict"] == "recommend" and a["status"] == "not_run" for a in actions("L1"))
    # L2 opens tickets, notifies the local webhook and waits for a person on every containment.
    tickets = [a for a in actions("L2") if a["action"] == "ticket.create" and a["status"] == "verified"]
    assert tickets
    assert any(a["action"] == "notify.webhook" and a["status"] == "verified" for a in actions("L2"))
    waiting = [a for a in actions("L2") if a["status"] == "awaiting_approval"]
    assert waiting and all(a["waiting_on"] for a in waiting)
    assert any(a["verdict"] == "deny" for a in actions("L2"))  # loopback sources are never blocked
    assert summary["levels"]["L2"]["awaiting_approval"] == len(waiting)
    assert summary["webhook"]["received"] >= 1
    assert not summary["levels"]["L1"]["unsettled"] and not summary["levels"]["L2"]["unsettled"]
    for incident in incidents:
        assert Path(incident["report"]["markdown"]).is_file()
        assert incident["report"]["snapshot"] == (incident["phase"] != "closed")
    tickets_dir = Path(summary["levels"]["L2"]["state_dir"]) / "tickets"
    assert len(list(tickets_dir.glob("*.json"))) == len(tickets)
    scorecards = Path(summary["scorecards_html"]).read_text()
    given = "level given at submit (--level)"  # the demo submits at a given level
    assert f"{given} @ L1" in scorecards and f"{given} @ L2" in scorecards


def test_the_console_script_keeps_exit_codes_after_using_temporal() -> None:
    """`main` leaves with os._exit once a Temporal client existed (temporalio/sdk-python#300): codes must survive."""
    script = Path(sys.executable).parent / "autonomy"
    result = subprocess.run(
        [str(script), "incidents", "show", "src:192.0.2.1", "--address", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "cannot reach Temporal at 127.0.0.1:1" in result.stderr
