"""The engine contract. Engines return the raw decision document or raise: the guard turns any raise into deny."""

from __future__ import annotations

from typing import Any, Protocol


class PolicyEngineError(RuntimeError):
    """The engine could not produce a decision (down, timed out, errored). Always a deny, never a pass."""


class PolicyUndefinedError(PolicyEngineError):
    """The policy produced no result for this input: OPA's 'no result key', regopy's 'undefined'."""


class UnsupportedBuiltinError(PolicyEngineError):
    """The policy calls a built-in this engine lacks; with it a rule would silently be undefined."""


class PolicyEngine(Protocol):
    name: str

    def evaluate(self, input_doc: dict[str, Any]) -> Any:
        """The value of the decision entrypoint for this input; raises PolicyEngineError when there is none."""
        ...

    def close(self) -> None: ...
