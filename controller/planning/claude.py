"""The Claude planner: the model proposes a Plan through tool use; the guard still judges every action.

Two modes (docs/architecture.md, "Contracts": Plan.mode):
- `select`: Claude picks playbooks from the catalog (tool `choose_playbooks`, names from an enum). Each chosen
  playbook renders exactly as the offline planner renders it: targets come only from the incident's facts,
  never from the model. Playbooks declare no fillable parameters today, so the model chooses names only.
  A playbook whose `match` does not fit the incident is dropped: the playbook author's conditions still hold.
- `design`: Claude composes actions from the registry (tool `propose_actions`, one schema per action built
  from its params model). Every action is validated with the registry's own `validate_params`.

Untrusted input (docs/architecture.md, "Untrusted input"): alert text is attacker-controlled. The model gets
the controller-derived facts as typed JSON, and the free text (signatures, URLs, evidence) only inside an
`<untrusted_evidence>` block whose boundary is a random token per request (stripped from the content, so an
attacker cannot close the block), each value sanitised, truncated and JSON-quoted. The prompt tells the model
it is data. None of that is the safety boundary: the guard is. Params are validated before the guard sees
them, rationales are flattened and cut, and the policy never reads free text.

Validation choice: an invalid action (unknown name, params that fail the schema, a bad envelope) or an
unusable playbook is dropped on its own, with the reason recorded in the result, the transcript and the
ticket body; the rest of the answer stands, because one hallucinated field should not discard a sound
containment the guard would judge anyway. A whole answer is rejected when it cannot be trusted as an
answer: a body that is not strict JSON or not a valid Messages API message (claude_answer.py: the SDK does not
validate), no tool call, several tool calls, another tool, a `stop_reason` other than `tool_use` around the
call, a content block of a type nobody asked for, input that is not the tool's JSON object, a key named twice
in one JSON object (the transcript then keeps the body as sent), a `max_tokens` (or context window) cut, a
refusal, or nothing valid left. Then the level's `planner_fallback` applies: the offline planner's plan, or an
empty plan held for a person, with the reason recorded.

What the model says only lowers: its triage only lowers the controller's (below), and a designed action's
confidence, which enters the risk score, is capped at what the playbooks matching the incident give that action
(UNVETTED_CONFIDENCE when none proposes it). Types are strict as the tool's schema states them (a number given
as a string drops the action).

Triage (issue 12): the request carries the controller's triage with the other trusted facts, and the tool asks
for the model's own, optional triage. It is parsed strictly into `Plan.planner_triage`: a wrong verdict, a
confidence outside 0..1, an over-long rationale or an unknown field drops it (with the reason, like a dropped
action) and the plan stands. It is untrusted: the guard only ever lowers the controller's triage with it
(TriageSummary.lowered_to), never raises it. An answer rejected as a whole takes its triage with it.

Audit and cost: the stable prefix (tools, system prompt, catalog) carries `cache_control`; usage and cost
go with the plan; the full transcript (request without the API key, raw response or error) is returned for
the ledger, never for workflow history; the plan carries the model id and a hash of the prompt. The request
side (system prompt, tools, evidence block) is controller/planning/claude_prompt.py.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any, Literal

import anthropic
from anthropic.types import Message, Usage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autonomy_controller.actions.registry import (
    FREE_TEXT_PARAMS,
    InvalidParamsError,
    UnknownActionError,
    get_spec,
    validate_params,
)
from autonomy_controller.controller.ledger.canonical import canonical_json
from autonomy_controller.controller.models import (
    ActionSpec,
    ControllerTriage,
    Incident,
    Plan,
    PlannerTriage,
    ProposedAction,
    TriageSummary,
    TriageVerdictName,
    verdict_of,
)
from autonomy_controller.controller.planning.claude_answer import AnswerError, billed_usage, read_message
from autonomy_controller.controller.planning.claude_config import MAX_RETRY_WAIT, ClaudeSettings
from autonomy_controller.controller.planning.claude_prompt import (
    DESIGN_TOOL,
    EPHEMERAL,
    MAX_ACTIONS,
    MAX_PLAYBOOKS,
    RATIONALE_LIMIT,
    SELECT_TOOL,
    TRIAGE_FIELD,
    catalog_text,
    design_tool,
    evidence_block,
    incident_facts,
    select_tool,
    system_prompt,
    user_message,
)
from autonomy_controller.controller.planning.offline import FALLBACK, OfflinePlanner, _attach_notes, _render
from autonomy_controller.controller.planning.playbooks import Playbook
from autonomy_controller.controller.planning.templating import (
    CONTROL_CHARS,
    INVISIBLE_CHARS,
    incident_context,
    sanitize_free_text,
    truncate,
)
from autonomy_controller.controller.triage import TriageFactor

log = logging.getLogger(__name__)

PLANNER_NAME = "claude"

Outcome = Literal["ok", "fallback_offline", "hold"]
PlannerFallback = Literal["offline", "hold"]

_CONTROL_ALL = re.compile(f"[{CONTROL_CHARS}]+")
_CONTROL_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{INVISIBLE_CHARS}]+")
_CUT_STOPS = {"max_tokens", "model_context_window_exceeded"}
_ANSWER_BLOCKS = {"text", "thinking", "redacted_thinking", "tool_use"}
"""Content block types an answer to our request may hold: no server tool, MCP or container was offered."""
UNVETTED_CONFIDENCE = 0.5
"""The most a designed action may claim when no playbook matching the incident proposes it (the built-in triage
playbook's own figure): the controller cannot tell, whatever the model says."""


class ClaudeResult(BaseModel):
    """What one planning call produced: the plan for the guard, and everything the ledger should keep.

    `plan` goes to the workflow (small); `transcript` goes to the ledger only (large, may hold attacker text
    and the model's raw answer); `outcome`/`reason`/`error` say what happened in words and as a code.
    """

    model_config = ConfigDict(frozen=True)

    plan: Plan
    outcome: Outcome
    reason: str | None = Field(default=None, description="why the plan is not Claude's, or what was dropped")
    error: str | None = Field(default=None, description="short code: rate_limited, max_tokens, no_tool_call...")
    dropped: list[dict[str, Any]] = Field(default_factory=list, description="proposals left out, with why")
    usage: dict[str, Any] | None = None
    transcript: dict[str, Any] = Field(default_factory=dict)


class PreparedRequest(BaseModel):
    """A Messages API request body and its hashes, built before anything is sent."""

    body: dict[str, Any]
    boundary: str
    prefix_hash: str
    prompt_hash: str


class _DesignItem(BaseModel):
    """The envelope of one proposed action in design mode; its params are checked by the registry (strictly).

    A stray extra key in the envelope is ignored rather than costing a sound action: it reaches nothing. Types
    are strict, as the tool's schema states them: a confidence of `"1"` or `true` is not a number.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    action: str
    params: dict[str, Any]
    rationale: str = Field(min_length=1, max_length=4 * RATIONALE_LIMIT)
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class _SelectItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    rationale: str = Field(default="", max_length=4 * RATIONALE_LIMIT)


class _TriageItem(BaseModel):
    """The model's own triage, strictly: unlike an action's envelope, an unknown field drops it, since a triage
    is these three fields and anything else means the model did not follow the schema. Strict types: a
    confidence of `true` or `"0.9"` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)

    verdict: TriageVerdictName
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    rationale: str = Field(min_length=1, max_length=RATIONALE_LIMIT)


class ClaudePlanner:
    """Plans an incident with Claude; falls back per call to the offline planner or to a hold.

    `offline` is the offline planner already loaded by the caller: it supplies the playbook catalog, the asset
    groups playbooks match on, and the fallback plan. `client` is for tests and custom transports; timeout and
    retries from `settings` are applied to it either way. The stable prompt prefix is built once, here, so
    that every request shares it byte for byte (the cache key) and its hash.
    """

    name = PLANNER_NAME

    def __init__(
        self, settings: ClaudeSettings, offline: OfflinePlanner, client: anthropic.Anthropic | None = None
    ) -> None:
        self.settings = settings
        self.offline = offline
        self.playbooks: dict[str, Playbook] = {pb.name: pb for pb in [*offline.playbooks, FALLBACK]}
        base = client or anthropic.Anthropic(api_key=settings.api_key.get_secret_value(), base_url=settings.base_url)
        self._client = base.with_options(timeout=settings.timeout_seconds, max_retries=settings.max_retries)
        _cap_retry_waits(self._client)
        self.tool_name = SELECT_TOOL if settings.mode == "select" else DESIGN_TOOL
        self.tool = select_tool(list(self.playbooks)) if settings.mode == "select" else design_tool()
        self.system = [
            {"type": "text", "text": system_prompt(settings.mode)},
            {"type": "text", "text": catalog_text(list(self.playbooks.values())), "cache_control": EPHEMERAL},
        ]
        self.prefix_hash = _sha256({"tools": [self.tool], "system": self.system})

    # -- request ----------------------------------------------------------------------------------------

    def build_request(
        self,
        incident: Incident,
        boundary: str | None = None,
        triage: ControllerTriage | None = None,
        factors: Sequence[TriageFactor] = (),
    ) -> PreparedRequest:
        """The request body for `incident`: stable prefix + this incident's facts (with the controller's triage:
        per incident, so never in the cached prefix) and fenced evidence."""
        boundary = boundary or secrets.token_hex(12)
        matching = self._matching(incident, verdict_of(triage)) if self.settings.mode == "select" else None
        summary = triage if isinstance(triage, TriageSummary) else None
        group = self.offline.asset_groups.get(incident.asset or "")
        facts = incident_facts(incident, group, matching, summary, factors)
        evidence = evidence_block(incident, boundary, self.settings.evidence_chars)
        text = user_message(facts, evidence, boundary, self.tool_name)
        body: dict[str, Any] = {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "system": self.system,
            "tools": [self.tool],
            "tool_choice": (
                {"type": "tool", "name": self.tool_name, "disable_parallel_tool_use": True}
                if self.settings.tool_choice == "tool"
                else {"type": "auto", "disable_parallel_tool_use": True}
            ),
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        }
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.effort is not None:
            body["output_config"] = {"effort": self.settings.effort}
        prompt_hash = _sha256({k: body[k] for k in ("tools", "tool_choice", "system", "messages")})
        return PreparedRequest(body=body, boundary=boundary, prefix_hash=self.prefix_hash, prompt_hash=prompt_hash)

    # -- plan -------------------------------------------------------------------------------------------

    def plan(
        self,
        incident: Incident,
        fallback: PlannerFallback = "offline",
        triage: ControllerTriage | None = None,
        factors: Sequence[TriageFactor] = (),
    ) -> ClaudeResult:
        """Ask Claude for a plan; never raises for model trouble: `outcome` says what the plan is.

        `fallback` is the incident's level's `planner_fallback`: `offline` returns the offline planner's plan,
        `hold` an empty Claude plan for the workflow to hold for a person. Either way `reason` says why.
        `triage` is the controller's (the summary the guard will use) and `factors` the triage's factors: the
        model is told both; playbooks match on the verdict (select mode and the offline fallback).
        """
        verdict = verdict_of(triage)
        request = self.build_request(incident, triage=triage, factors=factors)
        transcript: dict[str, Any] = {
            "planner": PLANNER_NAME,
            "settings": self.settings.public(),
            "prefix_hash": request.prefix_hash,
            "prompt_hash": request.prompt_hash,
            "request": copy.deepcopy(request.body),
            "response": None,
            "error": None,
        }
        try:
            raw = self._client.messages.with_raw_response.create(**_sdk_arguments(request.body))
        except anthropic.AnthropicError as exc:
            code, why = self._api_failure(exc)
            transcript["error"] = _error_record(exc)
            return self._fail(incident, request, transcript, (fallback, verdict), code, why, usage=None)
        attempts = raw.retries_taken + 1
        text = raw.http_response.text
        try:
            message, body = read_message(text)
        except AnswerError as exc:
            # As sent: the decoded body when it was strict JSON, else the text (a NaN cannot enter the ledger).
            transcript["response"] = exc.body if exc.body is not None else {"unparsed_body": truncate(text, 20_000)}
            if exc.code == "malformed_input":  # the decoded body shows one value of a repeated key only
                transcript["response_text"] = truncate(text, 100_000)
            billed = billed_usage(exc.body)
            usage = self._usage(billed, self.settings.model, attempts, None) if billed is not None else None
            return self._fail(incident, request, transcript, (fallback, verdict), exc.code, exc.reason, usage)
        transcript["response"] = body
        usage = self._usage(message.usage, message.model, attempts, message.id)
        try:
            actions, playbook, dropped, planner_triage = self._interpret(message, incident, verdict)
        except AnswerError as exc:
            return self._fail(incident, request, transcript, (fallback, verdict), exc.code, exc.reason, usage=usage)
        except Exception as exc:  # defensive: an answer shape nobody foresaw must not crash the activity
            log.exception("incident %s: could not interpret Claude's answer", incident.key)
            transcript["error"] = _error_record(exc)
            return self._fail(
                incident,
                request,
                transcript,
                (fallback, verdict),
                "answer_invalid",
                f"answer not interpretable: {exc}",
                usage,
            )
        plan = Plan(
            incident_key=incident.key,
            planner=PLANNER_NAME,
            mode=self.settings.mode,
            playbook=playbook,
            actions=actions,
            model=message.model,
            usage=usage,
            prompt_hash=request.prompt_hash,
            planner_triage=planner_triage,
        )
        result_reason = (
            truncate(f"claude: {len(dropped)} proposal(s) dropped: {_reasons(dropped)}", 2000) if dropped else None
        )
        transcript.update(
            outcome="ok",
            reason=result_reason,
            error_code=None,
            dropped=dropped,
            usage=usage,
            planner_triage=planner_triage.model_dump(mode="json") if planner_triage else None,
        )
        return ClaudeResult(
            plan=plan, outcome="ok", reason=result_reason, dropped=dropped, usage=usage, transcript=transcript
        )

    def _fail(
        self,
        incident: Incident,
        request: PreparedRequest,
        transcript: dict[str, Any],
        fallback_and_verdict: tuple[PlannerFallback, TriageVerdictName | None],
        code: str,
        why: str,
        usage: dict[str, Any] | None = None,
    ) -> ClaudeResult:
        fallback, verdict = fallback_and_verdict
        why = sanitize_free_text(why, 500)
        if fallback == "hold":
            outcome: Outcome = "hold"
            reason = f"claude: {why}; held for a person (planner_fallback: hold)"
            plan = Plan(
                incident_key=incident.key,
                planner=PLANNER_NAME,
                mode=self.settings.mode,
                actions=[],
                model=self.settings.model,
                usage=usage,
                prompt_hash=request.prompt_hash,
            )
        else:
            outcome = "fallback_offline"
            reason = f"claude: {why}; fell back to the offline playbooks"
            # The tokens were spent (and billed) for this plan even though the offline planner made it.
            plan = self.offline.plan(incident, verdict).model_copy(update={"usage": usage})
        log.warning("incident %s: %s", incident.key, reason)
        transcript.update(outcome=outcome, reason=reason, error_code=code, dropped=[], usage=usage)
        return ClaudeResult(plan=plan, outcome=outcome, reason=reason, error=code, usage=usage, transcript=transcript)

    def _api_failure(self, exc: anthropic.AnthropicError) -> tuple[str, str]:
        """A short code and a sentence for each way the API can fail (after the SDK's own retries)."""
        tries = f"after {self.settings.max_retries + 1} attempt(s)"
        if isinstance(exc, anthropic.APITimeoutError):
            return "timeout", f"no answer within {self.settings.timeout_seconds:g}s {tries}"
        if isinstance(exc, anthropic.APIConnectionError):
            # The SDK's own wording changes between releases; the transport error's class says what failed
            # (refused, DNS, TLS...) and the transcript keeps the full message.
            cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
            return "unreachable", f"API unreachable {tries}{cause}"
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            if status == 429:
                return "rate_limited", f"rate limited (429) {tries}"
            if status == 529:
                return "overloaded", f"API overloaded (529) {tries}"
            if status >= 500:
                return "server_error", f"API server error ({status}) {tries}"
            if status in (401, 403):
                return "auth", f"API key refused ({status})"
            if status == 400:
                return "bad_request", f"request refused (400): {_api_message(exc)}"
            return "api_error", f"API error ({status}): {_api_message(exc)}"
        if isinstance(exc, anthropic.APIError):
            return "response_invalid", f"invalid API response: {exc}"
        return "client_error", f"SDK error ({type(exc).__name__}): {exc}"

    # -- answer -----------------------------------------------------------------------------------------

    def _interpret(
        self, message: Message, incident: Incident, verdict: TriageVerdictName | None
    ) -> tuple[list[ProposedAction], str | None, list[dict[str, Any]], PlannerTriage | None]:
        if message.stop_reason in _CUT_STOPS:
            raise AnswerError(
                "max_tokens",
                f"{message.stop_reason} stop: the answer was cut (max_tokens {self.settings.max_tokens}) "
                "and a partial plan is not used",
            )
        if message.stop_reason == "refusal":
            raise AnswerError("refusal", "the model declined to answer")
        unexpected = sorted({block.type for block in message.content} - _ANSWER_BLOCKS)
        if unexpected:
            raise AnswerError(
                "unexpected_content", f"content block(s) of type {', '.join(unexpected)}: none was asked for"
            )
        calls = [block for block in message.content if block.type == "tool_use"]
        if not calls:
            raise AnswerError(
                "no_tool_call", f"no tool call (stop_reason {message.stop_reason}); expected one {self.tool_name}"
            )
        if len(calls) > 1:
            raise AnswerError("several_tool_calls", f"{len(calls)} tool calls; expected exactly one {self.tool_name}")
        if message.stop_reason != "tool_use":
            # A finished tool call stops with tool_use. end_turn, stop_sequence (we send none) or pause_turn (a turn
            # to be continued) around a call mean the call is not the model's finished answer.
            raise AnswerError(
                "unexpected_stop",
                f"stop_reason {message.stop_reason} with a tool call; a finished call stops with tool_use",
            )
        call = calls[0]
        if call.name != self.tool_name:
            raise AnswerError("wrong_tool", f"called {sanitize_free_text(call.name, 64)!r}, not {self.tool_name}")
        payload: Any = call.input  # a JSON object: claude_answer decoded one sent as a string
        key = "playbooks" if self.settings.mode == "select" else "actions"
        if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
            raise AnswerError("malformed_input", f"tool input is not an object with a {key!r} list")
        planner_triage, dropped = _planner_triage(payload.get(TRIAGE_FIELD))
        if self.settings.mode == "select":
            actions, playbook = self._selected(payload["playbooks"], incident, verdict, dropped)
            return actions, playbook, dropped, planner_triage
        caps = self._confidence_caps(incident, verdict)
        return self._designed(payload["actions"], caps, dropped), None, dropped, planner_triage

    def _confidence_caps(self, incident: Incident, verdict: TriageVerdictName | None) -> dict[str, float]:
        """Per action, the highest confidence a playbook matching this incident gives it: the most a designed
        action may carry. The proposal's confidence enters the risk score, so the model's own figure may lower
        the controller's, never raise it; an action no matching playbook vouches for gets UNVETTED_CONFIDENCE."""
        caps: dict[str, float] = {}
        for name in self._matching(incident, verdict):
            for template in self.playbooks[name].actions:
                caps[template.action] = max(caps.get(template.action, 0.0), template.confidence)
        return caps

    def _matching(self, incident: Incident, verdict: TriageVerdictName | None) -> list[str]:
        context = incident_context(incident)
        group = self.offline.asset_groups.get(incident.asset) if incident.asset else None
        return [name for name, pb in self.playbooks.items() if pb.match.matches(incident, context, group, verdict)]

    def _selected(
        self, items: list[Any], incident: Incident, verdict: TriageVerdictName | None, dropped: list[dict[str, Any]]
    ) -> tuple[list[ProposedAction], str | None]:
        """The chosen playbooks, rendered; `dropped` (in: the answer's other drops) gets what was left out."""
        matching = set(self._matching(incident, verdict))
        chosen: list[Playbook] = []
        for index, item in enumerate(items):
            try:
                entry = _SelectItem.model_validate(item)
            except ValidationError as exc:
                dropped.append(_drop(index, None, f"not a playbook choice: {_errors(exc)}"))
                continue
            if index >= MAX_PLAYBOOKS:
                dropped.append(_drop(index, entry.name, f"more than {MAX_PLAYBOOKS} playbooks"))
            elif entry.name not in self.playbooks:
                dropped.append(_drop(index, entry.name, "unknown playbook: not in the catalog"))
            elif entry.name not in matching:
                dropped.append(_drop(index, entry.name, "playbook does not match this incident"))
            elif any(pb.name == entry.name for pb in chosen):
                dropped.append(_drop(index, entry.name, "chosen twice"))
            else:
                chosen.append(self.playbooks[entry.name])
        if not chosen:
            raise AnswerError("no_valid_playbook", "no usable playbook: " + _reasons(dropped))
        context = incident_context(incident)
        actions: list[ProposedAction] = []
        notes: list[str] = []
        for playbook in chosen:
            rendered, more = _render(playbook.actions, context, incident.key)
            actions.extend(rendered)
            notes.extend(more)
        if not actions and any(pb.actions for pb in chosen):  # a playbook of no actions (noise) means record only
            notes.append(f"playbook(s) {', '.join(pb.name for pb in chosen)} produced no action; used {FALLBACK.name}")
            chosen = [FALLBACK]
            actions, more = _render(FALLBACK.actions, context, incident.key)
            notes.extend(more)
        actions = _deduplicated(actions, notes)
        notes.extend(f"not proposed: {d['reason']}" for d in dropped)
        _attach_notes(actions, notes)
        return actions, ",".join(pb.name for pb in chosen)

    def _designed(
        self, items: list[Any], caps: dict[str, float], dropped: list[dict[str, Any]]
    ) -> list[ProposedAction]:
        """The valid proposals, each confidence within `caps`; `dropped` (in: the answer's other drops) gets the
        invalid ones with why."""
        actions: list[ProposedAction] = []
        if len(items) > MAX_ACTIONS:  # one drop for the overflow: a flood must not flood the ticket or the ledger
            dropped.append(_drop(None, None, f"{len(items) - MAX_ACTIONS} action(s) beyond the first {MAX_ACTIONS}"))
        for index, item in enumerate(items[:MAX_ACTIONS]):
            name = item.get("action") if isinstance(item, dict) else None
            try:
                entry = _DesignItem.model_validate(item)
                spec = get_spec(entry.action)
                params = validate_params(spec, _strictly_typed(spec, _cleaned(entry.action, entry.params)))
            except ValidationError as exc:
                dropped.append(_drop(index, name, f"not an action proposal: {_errors(exc)}"))
                continue
            except (UnknownActionError, InvalidParamsError) as exc:
                dropped.append(_drop(index, name, str(exc)))
                continue
            actions.append(
                ProposedAction(
                    id="",
                    action=spec.name,
                    params=params.model_dump(mode="json", exclude_none=True),
                    rationale=sanitize_free_text(entry.rationale, RATIONALE_LIMIT),
                    confidence=min(entry.confidence, caps.get(spec.name, UNVETTED_CONFIDENCE)),
                )
            )
        notes: list[str] = []
        actions = _deduplicated(actions, notes)
        dropped.extend(_drop(None, None, note) for note in notes)
        if not actions:
            raise AnswerError("no_valid_actions", "no proposed action passed validation: " + _reasons(dropped))
        _attach_notes(actions, [f"not proposed: {d['reason']}" for d in dropped])
        return actions

    def _usage(self, usage: Usage, model: str, attempts: int, message_id: str | None) -> dict[str, Any]:
        """Token counts as billed, and their cost in USD at the configured (or the model's list) prices.

        `model` is the one that answered (a gateway may map the requested id), since the cost is that model's.
        """
        counts = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens or 0,
            "cache_read_input_tokens": usage.cache_read_input_tokens or 0,
        }
        prices = self.settings.prices_for(model)
        cost = None
        if prices is not None:
            cost = round(
                (
                    counts["input_tokens"] * prices.input
                    + counts["output_tokens"] * prices.output
                    + counts["cache_creation_input_tokens"] * prices.cache_write
                    + counts["cache_read_input_tokens"] * prices.cache_read
                )
                / 1_000_000,
                6,
            )
        return {**counts, "cost_usd": cost, "model": model, "attempts": attempts, "message_id": message_id}


# -- helpers ----------------------------------------------------------------------------------------------


def _cap_retry_waits(client: anthropic.Anthropic) -> None:
    """Cap this client's wait before a retry at MAX_RETRY_WAIT (its own backoff stays below it, a `retry-after`
    may not). The SDK has no option for it, so its retry-timing method is wrapped on this one client."""
    computed = client._calculate_retry_timeout

    def capped(*args: Any, **kwargs: Any) -> float:
        return min(computed(*args, **kwargs), MAX_RETRY_WAIT)

    client._calculate_retry_timeout = capped  # type: ignore[method-assign]


def _planner_triage(raw: Any) -> tuple[PlannerTriage | None, list[dict[str, Any]]]:
    """The model's own triage, or None with the reason it was dropped (absent or null: None, nothing dropped).
    Never an answer error: a bad triage costs the triage, not the plan."""
    if raw is None:
        return None, []
    try:
        item = _TriageItem.model_validate(raw)
    except ValidationError as exc:
        return None, [_drop(None, TRIAGE_FIELD, f"not a valid triage, not used: {_errors(exc)}")]
    rationale = sanitize_free_text(item.rationale, RATIONALE_LIMIT)
    return PlannerTriage(verdict=item.verdict, confidence=item.confidence, rationale=rationale), []


def _strictly_typed(spec: ActionSpec, params: dict[str, Any]) -> dict[str, Any]:
    """`params` when every value has the JSON type the schema gives it (a TTL of `"3600"` or `3600.0` is not an
    integer, `"true"` is not a boolean); the registry's own validation then normalises them."""
    try:
        spec.params_model.model_validate_json(json.dumps(params), strict=True)
    except ValidationError as exc:
        raise InvalidParamsError(spec.name, [f"{_errors(exc)} (JSON types are strict)"]) from None
    return params


def _cleaned(action: str, params: dict[str, Any]) -> dict[str, Any]:
    """Human-facing text params without control characters (the body keeps its line breaks)."""
    free = FREE_TEXT_PARAMS.get(action, frozenset())
    cleaned = dict(params)
    for name in free:
        value = cleaned.get(name)
        if isinstance(value, str):
            pattern = _CONTROL_KEEP_LINES if name == "body" else _CONTROL_ALL
            cleaned[name] = pattern.sub(" ", value).strip()
    return cleaned


def _deduplicated(actions: list[ProposedAction], notes: list[str]) -> list[ProposedAction]:
    """One action per (action, target), one ticket per incident; ids renumbered a1..aN."""
    kept: list[ProposedAction] = []
    seen: dict[tuple[str, Any], str] = {}
    for action in actions:
        spec = get_spec(action.action)
        target = action.params.get(spec.target_param) if spec.target_param else action.params.get("channel")
        key = (action.action, target)
        if key in seen:
            notes.append(f"duplicate {action.action} {target or ''}".rstrip() + " left out")
            continue
        seen[key] = action.action
        kept.append(action.model_copy(update={"id": f"a{len(kept) + 1}"}))
    return kept


def _drop(index: int | None, name: Any, reason: str) -> dict[str, Any]:
    label = sanitize_free_text(name, 80) if isinstance(name, str) else None
    text = f"{label}: {reason}" if label else reason
    return {"index": index, "name": label, "reason": sanitize_free_text(text, 300)}


def _reasons(dropped: list[dict[str, Any]]) -> str:
    return "; ".join(d["reason"] for d in dropped) or "empty answer"


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(item)'}: {e['msg']}" for e in exc.errors())


def _sdk_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """The body as SDK arguments. This SDK no longer has a `temperature` argument (the current models refuse
    sampling parameters), so a configured temperature for an older model goes through `extra_body`."""
    arguments = {k: v for k, v in body.items() if k != "temperature"}
    if "temperature" in body:
        arguments["extra_body"] = {"temperature": body["temperature"]}
    return arguments


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:300]
    return str(exc)[:300]


def _error_record(exc: BaseException) -> dict[str, Any]:
    """The error as kept in the transcript: type, status, request id and the API's own error body."""
    record: dict[str, Any] = {"type": type(exc).__name__, "message": truncate(str(exc), 2000)}
    if isinstance(exc, anthropic.APIStatusError):
        record.update(status_code=exc.status_code, request_id=exc.request_id, body=exc.body)
    return record
