"""The Claude generator: insights from the Messages API through the `anthropic`
SDK, with the rules generator as its fallback.

- The messages and the tool are `server.engines.insight.prompt`'s: the context
  goes in as data, in a delimited block the system prompt says is never
  instructions.
- The answer comes back as structured output: one forced tool call
  (``tool_choice`` = the `record_insights` tool, ``strict`` schema). Strict
  decoding guarantees the shape, not the meaning, so the tool input is
  validated here: types and lengths, confidence in [0, 1], the win probability
  within the calibrated score +- `MAX_ADJUSTMENT`, and evidence that exists in
  the context (factor and statistic names from its `evidence_names`, similar
  deal ids from its similar deals). Hallucinated evidence is an error, not
  silently dropped: an insight resting on a deal that does not exist is wrong.
- An invalid answer is repaired once: the validation errors go back as the
  tool result (``is_error``) and the tool is forced again. A second invalid
  answer, a timeout, a rate limit (429), a server error (5xx, 529) or a
  refused connection falls back to the rules, with `fallback_reason` saying
  which and why. After a 429 with ``retry-after`` the generator does not call
  the API until that time has passed (each request falls back at once).
- Tokens (summed over the attempts, failed ones included: they are billed) and
  latency are returned in `Usage` and stored with the set.

Retries: the client is built with ``max_retries=0``. The SDK would otherwise
retry 429s and 5xx with backoff (honouring ``retry-after``), holding an
interactive request for seconds to minutes, when a useful answer (the rules')
is available at once. One attempt, then the fallback, bounds a request at
`timeout` seconds per attempt.

The SDK is imported only when this generator is built: importing it takes
seconds, and the rules-only server never needs it.
"""

from __future__ import annotations

import logging
import math
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from server.engines.insight.context import InsightContext
from server.engines.insight.prompt import (
    MAX_ACTION,
    MAX_ACTIONS,
    MAX_DESCRIPTION,
    MAX_INSIGHTS,
    MAX_REASONING,
    MAX_TITLE,
    SYSTEM_PROMPT,
    TOOL,
    TOOL_NAME,
    user_prompt,
)
from server.engines.insight.rules import RulesGenerator
from server.engines.insight.types import Evidence, GeneratedInsights, Insight, InsightType, Usage

log = logging.getLogger("vectoros.insight.claude")

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_TOKENS = 2048


# --- validation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    insights: tuple[Insight, ...]
    win_probability: float
    reasoning: str


def _text(value: object, path: str, limit: int, errors: list[str]) -> str:
    if not isinstance(value, str):
        errors.append(f"{path}: must be a string")
        return ""
    if not value.strip():
        errors.append(f"{path}: must not be empty")
    elif len(value) > limit:
        errors.append(f"{path}: at most {limit} characters, got {len(value)}")
    return value.strip()


def _number(value: object, path: str, low: float, high: float, errors: list[str]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        errors.append(f"{path}: must be a finite number")
        return math.nan
    if not low - 1e-9 <= value <= high + 1e-9:
        errors.append(f"{path}: must be in [{low:.4g}, {high:.4g}], got {value}")
    return float(value)


def _strings(value: object, path: str, errors: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors.append(f"{path}: must be a list of strings")
        return []
    return value


def _keys(value: Mapping, path: str, allowed: Sequence[str], errors: list[str]) -> None:
    for key in value:
        if key not in allowed:
            errors.append(f"{path}.{key}: unknown field" if path else f"{key}: unknown field")
    for key in allowed:
        if key not in value:
            errors.append(f"{path}.{key}: required" if path else f"{key}: required")


def validate_answer(data: object, context: InsightContext) -> tuple[Answer | None, list[str]]:
    """Check a tool input against the schema and the context. Returns the answer
    and no errors, or None and every error found ("path: rule")."""
    errors: list[str] = []
    if not isinstance(data, dict):
        return None, ["input: must be a JSON object"]
    _keys(data, "", ("insights", "win_probability", "win_probability_reasoning"), errors)
    names, ids = context.evidence_names(), context.similar_ids
    insights: list[Insight] = []
    raw = data.get("insights")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_INSIGHTS:
        errors.append(f"insights: must be a list of 1 to {MAX_INSIGHTS} insights")
        raw = raw if isinstance(raw, list) else []
    for index, item in enumerate(raw[:MAX_INSIGHTS]):
        path = f"insights[{index}]"
        if not isinstance(item, dict):
            errors.append(f"{path}: must be an object")
            continue
        _keys(item, path, ("type", "title", "description", "confidence", "actions", "evidence"), errors)
        kind = item.get("type")
        if kind not in {t.value for t in InsightType}:
            errors.append(f"{path}.type: must be one of {', '.join(t.value for t in InsightType)}")
        title = _text(item.get("title"), f"{path}.title", MAX_TITLE, errors)
        description = _text(item.get("description"), f"{path}.description", MAX_DESCRIPTION, errors)
        confidence = _number(item.get("confidence"), f"{path}.confidence", 0.0, 1.0, errors)
        actions = _strings(item.get("actions"), f"{path}.actions", errors)
        if len(actions) > MAX_ACTIONS:
            errors.append(f"{path}.actions: at most {MAX_ACTIONS}, got {len(actions)}")
        actions = [_text(a, f"{path}.actions[{i}]", MAX_ACTION, errors) for i, a in enumerate(actions)]
        evidence = item.get("evidence")
        factor_names: list[str] = []
        deal_ids: list[str] = []
        if not isinstance(evidence, dict):
            errors.append(f"{path}.evidence: must be an object")
        else:
            _keys(evidence, f"{path}.evidence", ("factor_names", "similar_deal_ids"), errors)
            factor_names = _strings(evidence.get("factor_names", []), f"{path}.evidence.factor_names", errors)
            deal_ids = _strings(evidence.get("similar_deal_ids", []), f"{path}.evidence.similar_deal_ids", errors)
            for i, name in enumerate(factor_names):
                if name not in names:
                    errors.append(f"{path}.evidence.factor_names[{i}]: {name!r} is not in evidence_names")
            for i, deal_id in enumerate(deal_ids):
                if deal_id not in ids:
                    errors.append(f"{path}.evidence.similar_deal_ids[{i}]: {deal_id!r} is not a similar deal")
            if not factor_names and not deal_ids:
                errors.append(f"{path}.evidence: must cite at least one factor name or similar deal id")
        if kind in {t.value for t in InsightType}:
            insights.append(
                Insight(
                    id=f"i{index + 1}",
                    type=InsightType(kind),
                    title=title,
                    description=description,
                    confidence=confidence,
                    actions=tuple(actions),
                    evidence=Evidence(tuple(dict.fromkeys(factor_names)), tuple(dict.fromkeys(deal_ids))),
                )
            )
    low, high = context.allowed_win_probability()
    probability = _number(data.get("win_probability"), "win_probability", low, high, errors)
    reasoning = _text(data.get("win_probability_reasoning"), "win_probability_reasoning", MAX_REASONING, errors)
    if errors:
        return None, errors
    return Answer(tuple(insights), probability, reasoning), []


# --- the generator -------------------------------------------------------------------------


def sdk_models() -> tuple[frozenset[str], dict[str, str]]:
    """The installed anthropic SDK's model ids and its deprecated ids (id -> end of
    life). Both move with the SDK version, which the lock file pins."""
    import anthropic.types

    try:
        from anthropic.resources.messages.messages import DEPRECATED_MODELS
    except ImportError:  # moved in some SDK version: skip that half of the check
        DEPRECATED_MODELS = {}
    known = {arg for arg in typing.get_args(anthropic.types.Model) if isinstance(arg, str)}
    for arg in typing.get_args(anthropic.types.Model):
        known.update(a for a in typing.get_args(arg) if isinstance(a, str))
    return frozenset(known), dict(DEPRECATED_MODELS)


def check_model(
    model: str, known: frozenset[str] | None = None, deprecated: dict[str, str] | None = None
) -> str | None:
    """A warning when `model` is not a current model id (not in `known`, or in
    `deprecated`), else None. Both default to the installed SDK's lists."""
    if known is None or deprecated is None:
        sdk_known, sdk_deprecated = sdk_models()
        known = sdk_known if known is None else known
        deprecated = sdk_deprecated if deprecated is None else deprecated
    if model in deprecated:
        return f"model {model!r} is deprecated (end of life {deprecated[model]})"
    if model not in known:
        return f"model {model!r} is not in the anthropic SDK's model list"
    return None


class ClaudeGenerator:
    """Insights from Claude; `fallback` (the rules) when Claude cannot answer.

    `base_url` None lets the SDK read ``ANTHROPIC_BASE_URL`` (else the public API).
    `timeout` is per attempt, in seconds."""

    def __init__(
        self,
        api_key: str,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        fallback: RulesGenerator | None = None,
    ) -> None:
        import anthropic

        self.model = model
        self.id = f"claude:{model}"
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.fallback = fallback or RulesGenerator()
        self._anthropic = anthropic
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=anthropic.Timeout(timeout, connect=min(5.0, timeout)),
            max_retries=0,  # see the module docstring
        )
        self._cooldown_until = 0.0
        warning = check_model(model)
        if warning:
            log.warning("%s; set --anthropic-model to a current id", warning)

    async def close(self) -> None:
        await self._client.close()

    async def generate(self, context: InsightContext) -> GeneratedInsights:
        started = time.perf_counter()
        wait = self._cooldown_until - time.monotonic()
        if wait > 0:
            return self._fallback(context, f"rate limited by the Anthropic API; not calling it for {wait:.1f} s",
                                  Usage(0, 0, 0.0), started)
        messages: list[dict[str, Any]] = [{"role": "user", "content": user_prompt(context.document())}]
        tokens_in = tokens_out = 0
        errors: list[str] = []
        for attempt in (1, 2):
            try:
                response = await self._client.messages.create(
                    model=self.model,
                    max_tokens=self.max_tokens,
                    system=SYSTEM_PROMPT,
                    messages=messages,
                    tools=[TOOL],
                    tool_choice={"type": "tool", "name": TOOL_NAME},
                )
            except Exception as exc:  # the SDK's errors, mapped below; anything else is a bug
                reason = self._reason(exc)
                if reason is None:
                    raise
                return self._fallback(context, reason, Usage(tokens_in, tokens_out), started)
            usage = getattr(response, "usage", None)
            tokens_in += int(getattr(usage, "input_tokens", 0) or 0)
            tokens_out += int(getattr(usage, "output_tokens", 0) or 0)
            block = next(
                (b for b in response.content if getattr(b, "type", "") == "tool_use" and b.name == TOOL_NAME), None
            )
            if block is None:
                errors = [f"no {TOOL_NAME} tool call in the answer (stop reason {response.stop_reason})"]
            else:
                answer, errors = validate_answer(block.input, context)
                if response.stop_reason == "max_tokens":
                    errors = [*errors, "the answer was cut off at max_tokens: be more concise"]
                elif answer is not None:
                    return GeneratedInsights(
                        insights=answer.insights,
                        win_probability=answer.win_probability,
                        win_probability_reasoning=answer.reasoning,
                        generator=self.id,
                        usage=Usage(tokens_in, tokens_out, _elapsed_ms(started)),
                    )
            log.info("invalid answer from Claude", extra={"attempt": attempt, "errors": "; ".join(errors[:5])})
            if attempt == 1 and block is not None:
                # The repair round: the answer back with its errors as the tool's result.
                messages.append({"role": "assistant", "content": _as_params(response.content)})
                messages.append({"role": "user", "content": [{
                    "type": "tool_result",
                    "tool_use_id": block.id,
                    "is_error": True,
                    "content": "The input was rejected:\n- " + "\n- ".join(errors[:20])
                    + f"\nCall {TOOL_NAME} again with a corrected answer.",
                }]})
            elif attempt == 1:
                messages.append({"role": "assistant", "content": _as_params(response.content) or "(no answer)"})
                messages.append({"role": "user", "content": f"Answer only by calling the {TOOL_NAME} tool."})
        summary = "; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else "")
        return self._fallback(context, f"invalid answer twice: {summary}", Usage(tokens_in, tokens_out), started)

    def _reason(self, exc: Exception) -> str | None:
        """Why the call failed, for `fallback_reason`; None for an exception that is
        not the SDK's (a bug here: let it surface)."""
        sdk = self._anthropic
        if isinstance(exc, sdk.APITimeoutError):
            return f"the Anthropic API did not answer within {self.timeout:g} s"
        if isinstance(exc, sdk.RateLimitError):
            retry_after = _retry_after(exc.response.headers)
            if retry_after is not None:
                self._cooldown_until = time.monotonic() + retry_after
                return f"rate limited by the Anthropic API (HTTP 429); retry after {retry_after:g} s"
            return "rate limited by the Anthropic API (HTTP 429)"
        if isinstance(exc, sdk.APIStatusError):
            kind = "server error" if exc.status_code >= 500 else "request refused"
            return f"Anthropic API {kind} (HTTP {exc.status_code}): {_short(exc.message)}"
        if isinstance(exc, sdk.APIConnectionError):
            return f"cannot reach the Anthropic API: {_short(str(exc))}"
        if isinstance(exc, (sdk.APIError, ValueError)):
            # A body that is not JSON surfaces as the json module's ValueError: the SDK
            # parses a 200 response without wrapping that error.
            return f"unreadable answer from the Anthropic API: {_short(str(exc))}"
        return None

    def _fallback(self, context: InsightContext, reason: str, usage: Usage, started: float) -> GeneratedInsights:
        log.warning("insights fell back to rules", extra={"reason": reason})
        result = self.fallback.build(context)
        return replace(result, fallback_reason=reason, usage=replace(usage, latency_ms=_elapsed_ms(started)))


def _as_params(blocks) -> list[dict[str, Any]]:
    """Response content as request content: only the fields a request may carry."""
    params: list[dict[str, Any]] = []
    for block in blocks:
        kind = getattr(block, "type", "")
        if kind == "tool_use":
            params.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        elif kind == "text" and block.text:
            params.append({"type": "text", "text": block.text})
    return params


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return min(seconds, 3600.0)
    return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
