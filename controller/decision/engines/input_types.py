"""The policy type-checked against the input document's JSON Schema by OPA's own checker (`opa check --schema`).

Why: a rule that reads an input field that does not exist (`input.action.clas`) or gives a built-in a value of
the wrong type (`startswith(input.risk.score, "1")`) is *undefined* on every engine, so a deny rule written that
way never fires and the action runs, silently. OPA's checker refuses both, naming file and line. It runs wherever
the controller has an opa binary: compiling for the wasm engine, loading the embedded engine, starting its own OPA
server, and `autonomy policy test`. (`make lint` runs the same check, with --strict, on the shipped policies.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.policy_bundle import INPUT_SCHEMA, PolicyBundle, PolicyBundleError
from autonomy_controller.controller.decision.rule_references import undefined_rules


class PolicyTypeError(PolicyEngineError):
    """The policy reads the input in a way its schema says can never hold."""


def find_opa(configured: Path | None) -> Path | None:
    """The opa to compile with: the configured one (AUTONOMY_OPA_BIN, default .tools/opa), else opa on PATH."""
    if configured is not None and configured.is_file() and os.access(configured, os.X_OK):
        return configured
    found = shutil.which("opa")
    return Path(found) if found else None


def check_input_types(opa: Path, directory: Path, schema: Path | None = INPUT_SCHEMA) -> None:
    """Type-check the modules under `directory` (tests aside) against `schema` (None: nothing to check), then
    refuse a reference to a rule no module defines (rule_references.py: OPA's checker lets it through); messages
    name files relative to `directory` (PolicyBundle.as_authored maps them to the author's)."""
    if schema is None:
        return
    command = [str(opa), "check", "--schema", str(schema), "--ignore", "*_test.rego", "."]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=directory)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PolicyEngineError(f"could not run {opa} check: {exc}") from exc
    if done.returncode == 0:
        try:
            undefined = undefined_rules(opa, directory, tests=False)
        except PolicyBundleError as exc:
            raise PolicyEngineError(str(exc)) from None
        if undefined:  # named relative to the folder, as opa's own messages are
            raise PolicyTypeError("; ".join(str(u).replace(f"{directory}{os.sep}", "") for u in undefined))
    else:
        said = (done.stderr.strip() or done.stdout.strip())[:1500]
        raise PolicyTypeError(
            f"opa check refused the policy (its reads of input checked against {schema.name}): {said}"
        )


def check_bundle_types(bundle: PolicyBundle, opa: Path) -> None:
    """check_input_types on a copy of the bundle's modules, the messages naming the author's files."""
    with tempfile.TemporaryDirectory(prefix="autonomy-type-check-") as copy:
        bundle.write_to(Path(copy))
        try:
            check_input_types(opa, Path(copy), bundle.input_schema)
        except PolicyEngineError as exc:
            raise type(exc)(bundle.as_authored(str(exc), Path(copy))) from None


def schema_text(schema: Path | None) -> bytes:
    """The schema the check reads (part of what a compiled module was checked against)."""
    return schema.read_bytes() if schema is not None else b"no input schema"
