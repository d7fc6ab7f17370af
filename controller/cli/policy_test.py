"""`autonomy policy test`: OPA's tests of the Rego policies, as a short PASS/FAIL summary with real paths.

`opa test` runs on a temporary copy (the bundle's modules, the compiled data.json, every *_test.rego), so its
own report names temporary files; this command maps them back to the files under policies/ a person edits.
People get one row per test file (passed, failed) and, when every test passed, one row per policy file with its
line coverage and the lines no test reaches; `--verbose` adds every test, `--json` prints OPA's own JSON (with
the real paths). A run whose report cannot be read (a parse error, a crashed opa) exits 2 with opa's words:
a broken policy must never read as a pass.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.engines.input_types import check_input_types
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.decision.policy_bundle import PolicyBundleError, is_test_module
from autonomy_controller.controller.decision.rule_references import UndefinedRule, undefined_rules
from autonomy_controller.controller.decision.runtime import load_policy_bundle


@dataclass(frozen=True)
class OpaReport:
    results: list[dict[str, Any]]
    coverage: dict[str, Any] | None
    cannot_fail: list[UndefinedRule]  # tests that read a rule no module defines (rule_references.py)


class OpaTestError(RuntimeError):
    """opa gave no readable report: what it said is the message."""


def _run_opa(opa: Path, directory: Path, *extra: str) -> tuple[int, Any]:
    command = [str(opa), "test", str(directory), "--format", "json", *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        said = (done.stderr or done.stdout).strip() or f"exit {done.returncode} and no output"
        raise OpaTestError(said) from None


def run_policy_tests(settings: Settings, with_coverage: bool) -> OpaReport:
    """Run opa's tests on a copy of the policies; every path in the report names the real file."""
    bundle = load_policy_bundle(settings)
    with tempfile.TemporaryDirectory(prefix="autonomy-policy-test-") as workdir:
        directory = Path(workdir)
        bundle.write_to(directory)
        for path in settings.policies_dir.rglob("*.rego"):
            if is_test_module(path):
                target = directory / path.relative_to(settings.policies_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(path.read_text())
        try:  # what every engine checks at load: a rule that misreads the input would never fire
            check_input_types(settings.opa_bin, directory, bundle.input_schema)
        except PolicyEngineError as exc:
            raise PolicyBundleError(bundle.as_authored(str(exc), directory)) from None
        try:
            _, results = _run_opa(settings.opa_bin, directory)
        except OpaTestError as exc:
            raise OpaTestError(bundle.as_authored(str(exc), directory)) from None
        if not isinstance(results, list):
            raise OpaTestError(f"opa test printed {type(results).__name__}, not a list of results")
        passed = not any(r.get("fail") or r.get("error") for r in results)
        # opa prints coverage only when every test passes (a failing run prints text): only then is it asked.
        coverage = _run_opa(settings.opa_bin, directory, "--coverage")[1] if with_coverage and passed else None

        def real(file: str) -> str:
            try:
                return shown(settings.policies_dir / Path(file).relative_to(directory))
            except ValueError:
                return file

        for result in results:
            location = result.get("location") or {}
            if "file" in location:
                location["file"] = real(location["file"])
        if coverage is not None:
            coverage["files"] = {real(name): report for name, report in coverage.get("files", {}).items()}
    return OpaReport(results, coverage, undefined_rules(settings.opa_bin, settings.policies_dir))


def shown(path: Path) -> str:
    """A path as a person would type it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def failed(result: dict[str, Any]) -> bool:
    return bool(result.get("fail") or result.get("error"))


def line_ranges(lines: list[dict[str, Any]]) -> str:
    """OPA's not_covered ranges ({start: {row}, end: {row}}) as "12, 40-42"."""
    spans: dict[str, None] = {}  # ordered and without repeats (OPA reports a line once per expression)
    for span in lines:
        start, end = span.get("start", {}).get("row"), span.get("end", {}).get("row")
        spans[f"{start}" if start == end else f"{start}-{end}"] = None
    return ", ".join(spans)


def print_report(report: OpaReport, verbose: bool) -> None:
    per_file: dict[str, Counter[str]] = {}
    for result in report.results:
        file = result.get("location", {}).get("file", "?")
        per_file.setdefault(file, Counter())["failed" if failed(result) else "passed"] += 1
    tests = Table(title="Tests per file", title_justify="left")
    for column in ("file", "passed", "failed"):
        tests.add_column(column, justify="left" if column == "file" else "right")
    for file, counts in sorted(per_file.items()):
        failures = f"[bold red]{counts['failed']}[/]" if counts["failed"] else "0"
        tests.add_row(escape(file), str(counts["passed"]), failures)
    console.print(tests)
    for result in report.results:
        if failed(result) or verbose:
            location = result.get("location", {})
            mark = "[bold red]FAIL[/]" if failed(result) else "[green]PASS[/]"
            where = f"{location.get('file', '?')}:{location.get('row', '?')}"
            detail = f" ({result['error']})" if result.get("error") else ""
            name = f"{result.get('package', '?')}.{result.get('name', '?')}"
            console.print(f"{mark} {escape(where)} {escape(name)}{escape(str(detail))}")
    if report.coverage is not None:
        table = Table(title="Coverage per policy file (lines run by some test)", title_justify="left")
        for column in ("file", "coverage", "lines no test reaches"):
            table.add_column(column, justify="right" if column == "coverage" else "left")
        for file, entry in sorted(report.coverage.get("files", {}).items()):
            if not file.endswith("_test.rego"):
                missed = line_ranges(entry.get("not_covered", []))
                table.add_row(escape(file), f"{entry.get('coverage', 0):.1f}%", escape(missed) or "-")
        console.print(table)
        console.print(f"overall coverage {report.coverage.get('coverage', 0):.1f}%")
    for vacuous in report.cannot_fail:
        console.print(f"[bold red]CANNOT FAIL[/] {escape(str(vacuous))}", soft_wrap=True)
    bad = sum(map(failed, report.results))
    total = len(report.results)
    console.print(f"[bold red]FAIL[/] {bad} of {total} tests" if bad else f"[bold green]PASS[/] {total}/{total} tests")
    if report.cannot_fail:
        console.print(f"[bold red]FAIL[/] {len(report.cannot_fail)} test reference(s) to rules no policy defines")


def policy_test(
    coverage: Annotated[
        bool, typer.Option("--coverage/--no-coverage", help="Also measure each policy file's line coverage.")
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every test, passed ones too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run OPA's tests of the policies (policies/**/*_test.rego) with the compiled data document loaded.

    Prints how many tests passed and failed per file (real paths under policies/), each failure with its file
    and line, each policy file's line coverage, and each test that cannot fail because it reads a rule no
    module defines (`not guardrails.denny`). Exit 0 when every test passes, 1 when one fails or cannot fail,
    2 when opa is missing, the policies or their data do not load, or opa's report is unreadable (a policy that
    does not parse). --json prints OPA's own JSON, with `cannot_fail`.
    """
    settings = Settings()
    if not settings.opa_bin.exists():
        fail(f"opa not found at {settings.opa_bin}: run `make setup` or set AUTONOMY_OPA_BIN", code=2)
    try:
        report = run_policy_tests(settings, with_coverage=coverage)
    except OpaTestError as exc:
        fail(f"opa test gave no report: {exc}", code=2)
    except (PolicyBundleError, LevelConfigError) as exc:  # the data or the levels the tests run with
        fail(f"the policies do not load: {exc}", code=2)
    if not report.results:
        fail(f"opa found no tests under {settings.policies_dir} (*_test.rego): nothing was checked")
    if as_json:
        cannot_fail = [{**asdict(vacuous), "file": shown(vacuous.file)} for vacuous in report.cannot_fail]
        emit_json({"results": report.results, "coverage": report.coverage, "cannot_fail": cannot_fail})
    else:
        print_report(report, verbose)
    if any(map(failed, report.results)) or report.cannot_fail:
        raise typer.Exit(1)
