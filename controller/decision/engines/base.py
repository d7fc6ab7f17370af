"""The engine contract. Engines return the raw decision document or raise: the guard turns any raise into deny."""

from __future__ import annotations

import json
from typing import Any, Protocol

# How long one decision may take on any engine (the OPA server's HTTP timeout, the wasm engine's epoch deadline):
# a policy that loops over a large data document or a huge range is a deny, not a worker that hangs.
EVALUATION_TIMEOUT_S = 2.0
# How long loading a bundle may take (the wasm engine parsing the data onto its heap and checking it, the embedded
# engine's child process compiling it): its time grows with the data (~12 s at 10,000 assets on regopy), so no
# deadline short of a runaway.
LOAD_TIMEOUT_S = 600.0


class PolicyEngineError(RuntimeError):
    """The engine could not produce a decision (down, timed out, errored). Always a deny, never a pass."""


class PolicyUndefinedError(PolicyEngineError):
    """The policy produced no result for this input: OPA's 'no result key', regopy's 'undefined'."""


class UnsupportedBuiltinError(PolicyEngineError):
    """The policy calls a built-in this engine lacks; with it a rule would silently be undefined."""


def input_json(input_doc: Any) -> bytes:
    """The input as compact JSON text; one that is not JSON (NaN, a non-JSON type, nesting deeper than Python
    encodes) is a PolicyEngineError, like every other reason an engine gives no decision."""
    try:
        return json.dumps(input_doc, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        raise PolicyEngineError(f"the input is not a JSON document the policy can read: {exc}") from exc


class PolicyEngine(Protocol):
    name: str

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        """The value of the decision entrypoint for this input; raises PolicyEngineError when there is none."""
        ...

    def close(self) -> None: ...
