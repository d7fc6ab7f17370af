"""The CLI starts without the heavy SDKs, and its lazy command map still lists and runs every command.

Start-up time itself is measured in bench/cli_startup.py (against `python -c pass`), not here.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from autonomy_controller.controller.cli import COMMANDS, GROUPS, app
from autonomy_controller.controller.cli.lazy import LazyCommand
from tests.conftest import SHARED

HEAVY = ("anthropic", "temporalio", "sqlmodel", "sqlalchemy")
runner = CliRunner()


def imported_modules(code: str) -> set[str]:
    """Every module a fresh interpreter imports while running `code` (python -X importtime's report)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_importing_the_cli_loads_no_heavy_sdk() -> None:
    modules = imported_modules("import autonomy_controller.controller.cli")
    assert (
        "autonomy_controller.controller.cli" in modules
    )  # the report is read right: a parse that found nothing would pass
    assert heavy(modules) == set()


def test_help_lists_every_command_without_importing_one() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom autonomy_controller.controller.cli import app\n"
        "result = CliRunner().invoke(app, ['--help'], terminal_width=200)\n"
        "assert result.exit_code == 0, result.output\nprint(result.output)\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith('autonomy_controller.controller.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = done.stdout.rsplit("LOADED", 1)[1]
    assert (
        "autonomy_controller.controller.cli.lazy" in loaded and "autonomy_controller.controller.cli.judge" not in loaded
    )
    for name, entry in COMMANDS.items():
        assert re.search(rf"{re.escape(name)}\s+{re.escape(entry.summary[:40])}", done.stdout), name
    for name, (_, summary, _) in GROUPS.items():
        assert re.search(rf"{re.escape(name)}\s+{re.escape(summary[:40])}", done.stdout), name


def every_command() -> list[tuple[list[str], LazyCommand]]:
    top = [([name], entry) for name, entry in COMMANDS.items()]
    nested = [([group, name], entry) for group, (_, _, cmds) in GROUPS.items() for name, entry in cmds.items()]
    return [(path, LazyCommand(path[-1], entry, "rich")) for path, entry in top + nested]


@pytest.mark.parametrize("path,command", every_command(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_loads_and_explains_itself(path: list[str], command: LazyCommand) -> None:
    real = command.load()  # the target names a real function whose signature Typer can read
    assert real.callback is not None and real.help, path
    result = runner.invoke(app, [*path, "--help"], prog_name="autonomy")
    assert result.exit_code == 0, result.output
    assert f"autonomy {' '.join(path)}" in result.output
    assert real.help.split("\n")[0].strip()[:30] in result.output


def test_a_lazy_command_runs_with_its_arguments() -> None:
    result = runner.invoke(app, ["evaluate", str(SHARED / "samples" / "suricata-eve.jsonl"), "--json"])
    assert result.exit_code == 0, result.output
    assert '"decisions"' in result.stdout


def test_an_unknown_command_is_refused_by_name() -> None:
    result = runner.invoke(app, ["evaluat"])
    assert result.exit_code == 2
