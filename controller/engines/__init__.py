"""Policy engines: wasm (the default: OPA-compiled, in-process), embedded (regopy, no opa binary) and the OPA
server. Same bundle, same answers (docs/engines.md)."""

from autonomy_controller.controller.decision.engines.base import (
    PolicyEngine,
    PolicyEngineError,
    PolicyUndefinedError,
    UnsupportedBuiltinError,
)

__all__ = ["PolicyEngine", "PolicyEngineError", "PolicyUndefinedError", "UnsupportedBuiltinError"]
