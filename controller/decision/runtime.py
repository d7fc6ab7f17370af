"""Assembling a guard from configuration: levels -> bundle -> engine. Never raises for bad config.

A level file that fails validation, a policy that will not compile or calls an unsupported built-in, or an OPA
that will not start all yield an `UnavailableGuard`, whose every decision is `deny` with that reason: the
controller keeps recording why nothing runs instead of crashing or acting unguarded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum

from autonomy_controller.controller.config import Settings
from autonomy_controller.controller.decision.engines.base import PolicyEngine, PolicyEngineError
from autonomy_controller.controller.decision.engines.embedded import EmbeddedEngine
from autonomy_controller.controller.decision.engines.wasm import WasmEngine
from autonomy_controller.controller.decision.guard import Guard, UnavailableGuard
from autonomy_controller.controller.decision.levels import LevelConfigError, load_level_config
from autonomy_controller.controller.decision.policy_bundle import PolicyBundle, PolicyBundleError, load_bundle


class EngineName(StrEnum):
    EMBEDDED = "embedded"
    OPA = "opa"
    WASM = "wasm"


ENGINE_HELP = (
    "wasm (the policy compiled by OPA, run in-process), embedded (regopy, in-process, no opa binary needed) or "
    "opa (a server); default: AUTONOMY_POLICY_ENGINE, else wasm."
)


def load_policy_bundle(settings: Settings) -> PolicyBundle:
    return load_bundle(settings.policies_dir, load_level_config(settings.levels_dir))


@contextmanager
def open_guard(settings: Settings, engine: EngineName | None = None) -> Iterator[Guard | UnavailableGuard]:
    """A ready guard for the chosen engine (default: settings.policy_engine, AUTONOMY_POLICY_ENGINE); with `opa`
    and no AUTONOMY_OPA_URL a local OPA is started and stopped."""
    with ExitStack() as stack:
        guard: Guard | UnavailableGuard
        try:
            if engine is None:
                try:
                    engine = EngineName(settings.policy_engine)
                except ValueError:
                    raise PolicyEngineError(
                        f"AUTONOMY_POLICY_ENGINE={settings.policy_engine!r} is not one of "
                        f"{', '.join(e.value for e in EngineName)}"
                    ) from None
            bundle = load_policy_bundle(settings)
            policy_engine: PolicyEngine
            if engine is EngineName.EMBEDDED:
                policy_engine = EmbeddedEngine(bundle, settings.opa_bin)
            elif engine is EngineName.WASM:
                policy_engine = WasmEngine(bundle, settings.opa_bin)
            else:
                # Imported here: the OPA client pulls in aiohttp (~0.1 s), which the in-process engines never need.
                from autonomy_controller.controller.decision.engines.opa_server import OpaServer, OpaServerEngine

                url = settings.opa_url or stack.enter_context(OpaServer(settings.opa_bin, bundle)).url
                policy_engine = OpaServerEngine(url)
                stack.callback(policy_engine.close)
                policy_engine.check_config()  # bad policy data: refuse now, not at the first decision
            guard = Guard(bundle, policy_engine)
        except (LevelConfigError, PolicyBundleError, PolicyEngineError) as exc:
            guard = UnavailableGuard(str(exc))
        yield guard
