"""Policy engines: the embedded one (regopy, zero setup) and the OPA server (production). Same bundle, same answers."""

from autonomy_controller.controller.engines.base import (
    PolicyEngine,
    PolicyEngineError,
    PolicyUndefinedError,
    UnsupportedBuiltinError,
)

__all__ = ["PolicyEngine", "PolicyEngineError", "PolicyUndefinedError", "UnsupportedBuiltinError"]
