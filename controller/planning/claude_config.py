"""Configuration of the Claude planner, from the environment (docs/architecture.md, "Configuration").

The planner is off unless ANTHROPIC_API_KEY is set: the offline playbooks stay the default, and a machine
without a key never tries the network. The key is held as a SecretStr so that it cannot leak through a repr,
a log line, a transcript or a plan; it is only ever handed to the SDK client.

Two model-dependent defaults deserve a note, because the current Claude models changed the request contract:
sampling parameters (temperature) and a forced tool choice are answered with HTTP 400 by the current Sonnet
(claude-sonnet-5-5), so temperature is only sent when configured and tool_choice defaults to `auto` (the
system prompt still demands exactly one call, and an answer without one is handled). Older models accept both;
set AUTONOMY_CLAUDE_TOOL_CHOICE=tool and AUTONOMY_CLAUDE_TEMPERATURE=0 for them if you want.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

DEFAULT_MODEL = "claude-sonnet-5-5"
"""The current Sonnet (the SDK's ModelParam lists it; claude-sonnet-4-5 is on the SDK's deprecation list)."""

MAX_RETRY_WAIT = 10.0
"""The longest the SDK may sleep before a retry. It honours any `retry-after` (up to 49 days), which would hold the
plan activity's thread past the activity's timeout; a longer wait ends in the level's fallback instead."""
CALL_BUDGET_SECONDS = 160.0
"""The longest one plan step's Claude call may take, every attempt's timeout and the waits between them included:
the plan activity gets 20 s more for the rest of its work (workflows/retries.py PLAN_TIMEOUT). A slower
configuration would have the activity time out before the level's fallback applies, so it is refused."""

ENV_PREFIX = "AUTONOMY_CLAUDE_"
ENV_FIELDS = (
    "model",
    "mode",
    "max_tokens",
    "temperature",
    "tool_choice",
    "effort",
    "timeout_seconds",
    "max_retries",
    "evidence_chars",
)
"""Settings read from AUTONOMY_CLAUDE_<NAME> (upper case), e.g. AUTONOMY_CLAUDE_MAX_TOKENS."""


class Prices(BaseModel):
    """USD per million tokens. Anthropic bills uncached input, output, cache writes and cache reads apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float = Field(ge=0, description="5-minute cache write (the planner's cache_control TTL)")
    cache_read: float = Field(ge=0)


# List prices (platform.claude.com model pages, Nov 2026) of the models this planner is expected to run on,
# so that changing only AUTONOMY_CLAUDE_MODEL does not silently price a run with another model's rates. Any
# AUTONOMY_CLAUDE_PRICE_* variable overrides these; an unknown model without prices records no cost figure.
KNOWN_PRICES: dict[str, Prices] = {
    "claude-sonnet-5-5": Prices(input=2.0, output=10.0, cache_write=2.5, cache_read=0.10),
    "claude-sonnet-5": Prices(input=2.0, output=10.0, cache_write=2.5, cache_read=0.20),
    "claude-sonnet-4-6": Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
    "claude-sonnet-4-5": Prices(input=3.0, output=15.0, cache_write=3.75, cache_read=0.30),
    "claude-haiku-4-5": Prices(input=1.0, output=5.0, cache_write=1.25, cache_read=0.10),
}


class ClaudeConfigError(ValueError):
    """Invalid AUTONOMY_CLAUDE_* settings, each named by its variable (never with the API key's value)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid Claude planner settings: " + "; ".join(errors))
        self.errors = errors


class ClaudeSettings(BaseModel):
    """Everything the Claude planner needs; `from_env` builds it, tests build it directly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = Field(repr=False)
    base_url: str | None = Field(
        default=None, repr=False, description="an Anthropic-compatible gateway (may hold credentials); None: the SDK's"
    )
    model: str = Field(default=DEFAULT_MODEL, min_length=1)
    mode: Literal["select", "design"] = "select"
    max_tokens: int = Field(default=4096, ge=256, le=64_000, description="adaptive thinking counts toward it")
    temperature: float | None = Field(default=None, ge=0.0, le=1.0, description="None: not sent")
    tool_choice: Literal["auto", "tool"] = Field(default="auto", description="`tool` forces the tool (older models)")
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = Field(
        default=None, description="output_config.effort; None: not sent (the model's default)"
    )
    timeout_seconds: float = Field(default=45.0, gt=0, le=CALL_BUDGET_SECONDS, description="per attempt")
    max_retries: int = Field(
        default=2, ge=0, le=10, validate_default=True, description="the SDK's retries of 408/409/429/5xx/timeouts"
    )
    evidence_chars: int = Field(default=4000, ge=1000, le=50_000, description="cap on the untrusted evidence block")
    prices: Prices | None = Field(default=None, description="None: KNOWN_PRICES[model], else no cost figure")

    @field_validator("max_retries")
    @classmethod
    def _fits_the_plan_step(cls, retries: int, info: ValidationInfo) -> int:
        timeout = info.data.get("timeout_seconds")
        if timeout is not None and slowest_call(timeout, retries) > CALL_BUDGET_SECONDS:
            raise ValueError(
                f"{retries + 1} attempt(s) of up to {timeout:g} s (AUTONOMY_CLAUDE_TIMEOUT_SECONDS) and the waits "
                f"between them may take {slowest_call(timeout, retries):g} s, more than the plan step's "
                f"{CALL_BUDGET_SECONDS:g} s: fewer retries or a shorter timeout"
            )
        return retries

    @property
    def effective_prices(self) -> Prices | None:
        return self.prices_for(self.model)

    def prices_for(self, answered_by: str) -> Prices | None:
        """Configured prices, else the list prices of the model that answered, else of the configured model."""
        return self.prices or KNOWN_PRICES.get(answered_by) or KNOWN_PRICES.get(self.model)

    @property
    def redacted_base_url(self) -> str | None:
        """The gateway URL without any user:password part, fit for transcripts and logs."""
        if self.base_url is None:
            return None
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def public(self) -> dict[str, Any]:
        """The settings as recorded in a transcript: everything except the key."""
        data = self.model_dump(mode="json", exclude={"api_key", "base_url"})
        data["base_url"] = self.redacted_base_url
        return data

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClaudeSettings | None:
        """Settings from the environment, or None when ANTHROPIC_API_KEY is unset or empty (planner off).

        Raises ClaudeConfigError listing every bad AUTONOMY_CLAUDE_* variable: a typo in the model's
        configuration must stop start-up, not silently run the offline planner or a wrong model.
        """
        env = os.environ if environ is None else environ
        key = (env.get("ANTHROPIC_API_KEY") or "").strip()
        if not key:
            return None
        fields: dict[str, Any] = {"api_key": key}
        if env.get("ANTHROPIC_BASE_URL"):
            fields["base_url"] = env["ANTHROPIC_BASE_URL"].strip()
        for name in ENV_FIELDS:
            value = env.get(ENV_PREFIX + name.upper(), "").strip()
            if value:
                fields[name] = value
        errors: list[str] = []
        prices = _prices_from_env(env, fields.get("model", DEFAULT_MODEL), errors)
        if prices is not None:
            fields["prices"] = prices
        try:
            settings = cls.model_validate(fields)
        except ValidationError as exc:
            for err in exc.errors():
                errors.append(f"{_variable(err['loc'])}: {err['msg']}")  # not err['input']: it could be the key
        if errors:
            raise ClaudeConfigError(errors)
        return settings


def slowest_call(timeout_seconds: float, max_retries: int) -> float:
    """The longest a Claude call may take: every attempt times out, each retry after the longest wait."""
    return (max_retries + 1) * timeout_seconds + max_retries * MAX_RETRY_WAIT


PRICE_VARS = {
    "input": "PRICE_INPUT",
    "output": "PRICE_OUTPUT",
    "cache_write": "PRICE_CACHE_WRITE",
    "cache_read": "PRICE_CACHE_READ",
}


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error is about, e.g. ('prices', 'input') -> ..._PRICE_INPUT."""
    name = str(loc[0]) if loc else "?"
    if name == "base_url":
        return "ANTHROPIC_BASE_URL"
    if name == "prices" and len(loc) > 1 and str(loc[1]) in PRICE_VARS:
        return ENV_PREFIX + PRICE_VARS[str(loc[1])]
    return ENV_PREFIX + name.upper()


def _prices_from_env(env: Mapping[str, str], model: str, errors: list[str]) -> dict[str, Any] | None:
    """AUTONOMY_CLAUDE_PRICE_* (USD per million tokens), each defaulting to the model's list price if known."""
    given = {
        field: env[ENV_PREFIX + var].strip()
        for field, var in PRICE_VARS.items()
        if env.get(ENV_PREFIX + var, "").strip()
    }
    if not given:
        return None
    known = KNOWN_PRICES.get(model)
    missing = [ENV_PREFIX + PRICE_VARS[f] for f in PRICE_VARS if f not in given]
    if known is None and missing:
        errors.append(f"{', '.join(missing)}: required when some prices are set and {model!r} has no known prices")
        return None
    prices: dict[str, Any] = known.model_dump() if known is not None else {}
    prices.update(given)
    return prices
