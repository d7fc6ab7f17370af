"""`autonomy policy bundle`: the policies as a standard OPA bundle, for an OPA the platform team runs itself.

The bundle is what the controller's own engines load (controller/decision/policy_bundle.py): the Rego modules, the
compiled data document as data.json, a .manifest naming the revision and the roots, and the JSON Schemas of
the input and data documents under schema/. A plain `opa run --server --bundle` serves it with the decisions
the controller makes (tests/test_policy_bundle_export.py checks the conformance table against one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.engines.input_types import check_bundle_types, find_opa
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.decision.policy_bundle import (
    CONFIG_ENTRYPOINT,
    ENTRYPOINT,
    PolicyBundle,
    PolicyBundleError,
)
from autonomy_controller.controller.decision.runtime import load_policy_bundle


def type_check(bundle: PolicyBundle, opa_bin: Path) -> None:
    """What the controller's engines check at load (engines/input_types.py), before the bundle leaves for an OPA
    that checks nothing: a rule that misreads the input would silently never fire there. No opa: not written."""
    opa = find_opa(opa_bin)
    if opa is None:
        raise PolicyEngineError(
            f"no opa binary (looked at {opa_bin} and on PATH) to type-check the policies against the input's schema: "
            "build it (`make setup`) or set AUTONOMY_OPA_BIN"
        )
    check_bundle_types(bundle, opa)


def policy_bundle(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the bundle (.tar.gz); parent folders are made.")
    ] = Path("bundle.tar.gz"),
    as_json: JsonFlag = False,
) -> None:
    """Write the policies as an OPA bundle: .manifest (revision, roots), Rego modules, data.json, schema/.

    The data is compiled from policies/<name>/data.yaml and levels/ exactly as the controller compiles it, so the
    revision is the one every decision record names. Serve it with

      opa run --server --bundle bundle.tar.gz

    then query POST /v1/data/autonomy/decision/result?strict-builtin-errors=true with {"input": ...}
    (schema/input.schema.json in the bundle), and refuse the bundle while data.autonomy.config.errors is not
    empty. Exit 1 when the policies, their data or the levels do not load, or the policies misread the input
    (`opa check --schema schema/input.schema.json`, as every engine of the controller checks at load): nothing is
    written.
    """
    settings = Settings()
    try:
        bundle = load_policy_bundle(settings)
        type_check(bundle, settings.opa_bin)
    except (PolicyBundleError, LevelConfigError, PolicyEngineError) as exc:
        fail(f"policy bundle not written: {exc}")
    files = bundle.write_opa_bundle(out)
    modules = sorted(name for name in files if name.endswith(".rego"))
    summary = {
        "path": str(out),
        "revision": bundle.revision,
        "roots": bundle.opa_manifest()["roots"],
        "modules": modules,
        "files": sorted(files),
        "entrypoint": ENTRYPOINT,
        "config_check": CONFIG_ENTRYPOINT,
    }
    if as_json:
        emit_json(summary)
        return
    console.print(f"wrote {escape(str(out))}: {len(modules)} modules, data.json, schema/, .manifest")
    console.print(f"revision {bundle.revision}")
    console.print(f"roots    {', '.join(summary['roots'])}")
    console.print(f"serve:   opa run --server --bundle {escape(str(out))}")
    console.print(f"decide:  POST /v1/data/{ENTRYPOINT}?strict-builtin-errors=true")
    console.print(f"check:   GET /v1/data/{CONFIG_ENTRYPOINT} must be [] before the first decision")
