"""`autonomy policy check`: load the policies as each engine will, and say which engines run them and why not.

A platform team's idiomatic policy may run on the default wasm engine and on OPA and be refused by the embedded
one (`net.*`, or a built-in regopy answers differently); a policy that misreads the input is refused by all
three. This command loads the bundle on each engine, exactly as the controller does at start-up (data compiled,
input type-checked, built-ins checked, package autonomy.config's data checks run), without deciding anything, and
prints one row per engine with the reason, naming file and line, when it refuses. Exit 1 when the engine the
controller is configured with (AUTONOMY_POLICY_ENGINE) refuses them, or when they do not load at all.
"""

from __future__ import annotations

from contextlib import ExitStack

from rich.markup import escape
from rich.table import Table

from autonomy_controller.controller.cli.common import JsonFlag, console, emit_json, fail
from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngineError
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.levels import LevelConfigError
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle, PolicyBundleError
from autonomy_controller.controller.decision.runtime import EngineName, load_policy_bundle


def engine_refusal(bundle: PolicyBundle, engine: EngineName, settings: Settings) -> str | None:
    """Why `engine` refuses the bundle at load, or None when it would decide with it."""
    try:
        with ExitStack() as stack:
            if engine is EngineName.EMBEDDED:
                EmbeddedEngine(bundle, settings.opa_bin)
            elif engine is EngineName.WASM:
                WasmEngine(bundle, settings.opa_bin)
            else:
                from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine

                server = stack.enter_context(OpaServer(settings.opa_bin, bundle))
                client = OpaServerEngine(server.url)
                stack.callback(client.close)
                client.check_config()
    except PolicyEngineError as exc:
        return str(exc)
    return None


def policy_check(as_json: JsonFlag = False) -> None:
    """Load the policies on each engine (wasm, embedded, opa) as the controller would, and say which refuse them.

    Nothing is decided. Each refusal names the reason: a built-in the engine lacks or answers differently from
    OPA, a rule that misreads the input (file:line), a policy that does not compile, data that fails package
    autonomy.config. Exit 1 when the configured engine (AUTONOMY_POLICY_ENGINE, default wasm) refuses them or
    they do not load at all (data, levels); run `autonomy policy test` for the tests themselves.
    """
    settings = Settings()
    try:
        bundle = load_policy_bundle(settings)
    except (PolicyBundleError, LevelConfigError) as exc:
        fail(f"the policies do not load: {exc}")
    refusals = {engine: engine_refusal(bundle, engine, settings) for engine in EngineName}
    configured = settings.policy_engine
    if as_json:
        emit_json(
            {
                "revision": bundle.revision,
                "configured_engine": configured,
                "engines": {engine.value: {"runs": why is None, "refusal": why} for engine, why in refusals.items()},
            }
        )
    else:
        table = Table(title=f"Policies {bundle.source_dir} (revision {bundle.revision[:19]}...)", title_justify="left")
        for column in ("engine", "runs them", "why not"):
            table.add_column(column)
        for engine, why in refusals.items():
            name = f"{engine.value} (configured)" if engine.value == configured else engine.value
            table.add_row(name, "[green]yes[/]" if why is None else "[bold red]no[/]", escape(why or "-"))
        console.print(table)
    try:
        chosen = EngineName(configured)
    except ValueError:
        fail(f"AUTONOMY_POLICY_ENGINE={configured!r} is not one of {', '.join(e.value for e in EngineName)}")
    if refusals[chosen] is not None:
        fail(f"the configured engine ({configured}) would deny every action with these policies")
