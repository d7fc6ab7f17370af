"""`autonomy policy bundle`: a standard OPA bundle that a plain `opa run --server --bundle` serves with the
controller's own decisions (the conformance table), its manifest, and its bytes the same for the same revision."""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from autonomy_controller.controller.cli import app
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.opa_server import OpaServerEngine
from autonomy_controller.controller.decision.guard import Guard
from autonomy_controller.controller.decision.levels import LevelConfig
from autonomy_controller.controller.decision.policy_bundle import (
    COMPILED_DOCUMENTS,
    SCHEMA_DIR,
    SCHEMA_FILES,
    PolicyBundle,
    PolicyBundleError,
    load_bundle,
)
from autonomy_controller.controller.processes import free_port, stop_process
from tests.test_conformance import CASES, Case, _comparable, _decide

runner = CliRunner()


def serve_bundle(opa_bin: Path, archive: Path) -> Iterator[str]:
    """A plain `opa run --server --bundle ARCHIVE` on loopback: nothing of ours but the file. Yields its URL."""
    port = free_port()
    command = [str(opa_bin), "run", "--server", "--addr", f"127.0.0.1:{port}", "--disable-telemetry"]
    process = subprocess.Popen(
        [*command, "--log-level", "error", "--bundle", str(archive)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:  # ?bundles: healthy only once the bundle is activated
                if requests.get(f"{url}/health?bundles", timeout=0.5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("opa did not activate the exported bundle within 15 s")
        yield url
    finally:
        stop_process(process, timeout=5)


@pytest.fixture(scope="module")
def archive(bundle: PolicyBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "bundle.tar.gz"
    bundle.write_opa_bundle(out)
    return out


@pytest.fixture(scope="module")
def exported_guard(bundle: PolicyBundle, opa_bin: Path, archive: Path) -> Iterator[Guard]:
    for url in serve_bundle(opa_bin, archive):
        yield Guard(bundle, OpaServerEngine(url))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_bundle_holds_manifest_modules_data_and_schemas(bundle: PolicyBundle, archive: Path) -> None:
    members = _members(archive)
    manifest = json.loads(members[".manifest"])
    assert manifest["revision"] == bundle.revision
    assert manifest["roots"] == sorted(manifest["roots"])
    assert {"autonomy", "levels", "inventory", "identities", "meta"} <= set(manifest["roots"])
    assert {name for name in members if name.endswith(".rego")} == set(bundle.modules)
    assert not any(name.endswith("_test.rego") for name in members)
    assert json.loads(members["data.json"]) == bundle.data
    for name in SCHEMA_FILES:
        json.loads(members[f"schema/{name}"])  # published, and JSON


def test_the_same_revision_gives_the_same_bytes(bundle: PolicyBundle, archive: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.tar.gz"
    bundle.write_opa_bundle(again)
    assert again.read_bytes() == archive.read_bytes()


def test_plain_opa_reports_the_revision_and_no_config_errors(exported_guard: Guard, bundle: PolicyBundle) -> None:
    engine = exported_guard.engine
    assert isinstance(engine, OpaServerEngine)
    engine.check_config()  # raises on a non-empty data.autonomy.config.errors
    revision = requests.get(f"{engine.url}/v1/data/meta/revision", timeout=5).json()["result"]
    assert revision == bundle.revision


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plain_opa_serving_the_bundle_decides_as_the_embedded_engine(
    case: Case, embedded_guard: Guard, exported_guard: Guard
) -> None:
    embedded, exported = _decide(embedded_guard, case), _decide(exported_guard, case)
    assert _comparable(exported) == _comparable(embedded)
    assert exported.verdict is case.expected, exported.reasons
    if exported.policy is not None:
        assert exported.policy.engine == "opa"


def test_cli_writes_the_bundle_and_says_how_to_serve_it(tmp_path: Path, bundle: PolicyBundle) -> None:
    out = tmp_path / "out" / "policy.tar.gz"
    result = runner.invoke(app, ["policy", "bundle", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["revision"] == bundle.revision and summary["path"] == str(out)
    assert set(summary["files"]) == set(_members(out))
    shown = runner.invoke(app, ["policy", "bundle", "--out", str(out)])
    assert shown.exit_code == 0 and f"opa run --server --bundle {out}" in shown.output
    assert "--out" in runner.invoke(app, ["policy", "bundle", "--help"]).output


def test_cli_writes_nothing_when_the_policies_do_not_load(tmp_path: Path, config_copy: Settings) -> None:
    policies = config_copy.policies_dir
    (policies / "inventory" / "data.yaml").write_text("assets: {web-01: {tags: [Not A Tag]}}\n")
    out = tmp_path / "bundle.tar.gz"
    env = {"AUTONOMY_POLICIES_DIR": str(policies), "AUTONOMY_LEVELS_DIR": str(config_copy.levels_dir)}
    result = runner.invoke(app, ["policy", "bundle", "--out", str(out)], env=env)
    assert result.exit_code == 1, result.output
    assert "inventory/data.yaml: assets.web-01: tags" in result.output
    assert not out.exists()


def test_a_tarball_of_the_bundle_is_what_opa_build_would_accept(archive: Path, opa_bin: Path, tmp_path: Path) -> None:
    """`opa build` re-reads the bundle (manifest, roots, modules, data) and refuses anything malformed."""
    done = subprocess.run(
        [str(opa_bin), "build", "--bundle", str(archive), "-o", str(tmp_path / "rebuilt.tar.gz")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rebuilt = {name.lstrip("/"): content for name, content in _members(tmp_path / "rebuilt.tar.gz").items()}
    assert json.loads(rebuilt[".manifest"])["revision"] == json.loads(_members(archive)[".manifest"])["revision"]
    assert json.loads(rebuilt["data.json"]) == json.loads(_members(archive)["data.json"])


# -- plain OPA on the sources: policies/<name>/data.yaml is data.<name>, nothing else is data ----------------------


def _opa_eval_data(opa_bin: Path, policies: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(opa_bin), "eval", "--format", "json", "-d", str(policies), "data"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    value: dict[str, Any] = json.loads(done.stdout)["result"][0]["expressions"][0]["value"]
    return value


def _within(source: Any, compiled: Any, where: str) -> list[str]:
    """Where `source` (what OPA loaded) differs from `compiled` (the bundle's), beyond keys the bundle adds."""
    if isinstance(source, dict) and isinstance(compiled, dict):
        return [
            problem
            for key, value in source.items()
            for problem in (
                _within(value, compiled[key], f"{where}.{key}")
                if key in compiled
                else [f"{where}.{key}: not in the bundle"]
            )
        ]
    return [] if source == compiled else [f"{where}: {source!r} in OPA, {compiled!r} in the bundle"]


def test_plain_opa_on_policies_loads_the_data_where_the_bundle_has_it_and_nothing_else(
    opa_bin: Path, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "bundle.tar.gz"
    assert runner.invoke(app, ["policy", "bundle", "--out", str(out)]).exit_code == 0
    members = _members(out)
    exported, roots = json.loads(members["data.json"]), json.loads(members[".manifest"])["roots"]
    packages = set(roots) - set(exported)
    assert packages == {"autonomy"}
    loaded = _opa_eval_data(opa_bin, settings.policies_dir)
    documents = {name: value for name, value in loaded.items() if name not in packages}
    # every document of the bundle that comes from policies/ is there, at the same path; no stray key beside them
    assert set(documents) == set(exported) - set(COMPILED_DOCUMENTS)
    assert {"inventory", "identities", "allowlists", "special_purpose", "guardrails"} <= set(documents)
    schema = json.loads((SCHEMA_DIR / "data.schema.json").read_text())["properties"]
    for name, document in documents.items():
        assert _within(document, exported[name], f"data.{name}") == []
        # what the bundle has beyond the source is what the schema documents as compiled
        added = set(exported[name]) - set(document)
        described = schema.get(name, {}).get("properties", {})
        assert {
            key for key in added if not described.get(key, {}).get("description", "").startswith("compiled")
        } == set()


@pytest.mark.parametrize(
    ("stray", "message"),
    [
        ("approver_keys.yaml", r"approver_keys\.yaml: OPA would load it as data"),
        ("inventory/data.json", r"inventory/data\.json: OPA would load it as data"),
        ("inventory/extra.yml", r"inventory/extra\.yml: OPA would load it as data"),
        ("teams/oncall/data.yaml", r"teams/oncall/data\.yaml: OPA would load it as data"),
        ("guardrails/Notes.YAML", r"guardrails/Notes\.YAML: OPA would load it as data"),
        ("levels/data.yaml", r"levels/data\.yaml: data\.levels is compiled by the controller"),
        ("autonomy/data.yaml", r"autonomy/data\.yaml: data\.autonomy is a package root"),
    ],
)
def test_a_file_plain_opa_would_load_elsewhere_is_refused(
    config_copy: Settings, level_config: LevelConfig, stray: str, message: str
) -> None:
    path = config_copy.policies_dir / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x: 1\n")
    with pytest.raises(PolicyBundleError, match=message):
        load_bundle(config_copy.policies_dir, level_config)


def test_a_data_document_of_your_own_is_data_of_its_folder_name(
    config_copy: Settings, level_config: LevelConfig, opa_bin: Path
) -> None:
    (config_copy.policies_dir / "teams").mkdir()
    (config_copy.policies_dir / "teams" / "data.yaml").write_text("oncall: [bob]\n")
    assert load_bundle(config_copy.policies_dir, level_config).data["teams"] == {"oncall": ["bob"]}
    assert _opa_eval_data(opa_bin, config_copy.policies_dir)["teams"] == {"oncall": ["bob"]}
