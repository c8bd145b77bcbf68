"""The chat/completion service both HTTP APIs share: prompt → engine → events or one aggregated answer.

``start_chat`` renders messages with the model's chat template, tokenizes and submits; ``start_text``
submits a raw prompt. Both return a :class:`Generation`, whose ``events()`` yields the engine's events,
records metrics (tokens, time to first token, decode speed) and - if the consumer stops early because
the client went away - cancels the request so its slot is freed. ``collect`` runs a generation to the
end and aggregates content, reasoning, logprobs, usage and tool calls (parsed from the text with
:func:`haven.server.tool_calls.parse_tool_calls`, or taken from a grammar-forced call).

It knows the engine protocol and tool-call parsing; it knows nothing about HTTP or any API's JSON shape.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from haven.engine.protocol import (
    Finished,
    FinishReason,
    GenerationHandle,
    GenerationRequest,
    ModelEngine,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    Usage,
)
from haven.errors import EngineError, InvalidRequestError
from haven.server.metrics import ServerMetrics
from haven.server.ratelimit import charge_generated_tokens
from haven.server.tool_calls import ToolCall, new_call_id, parse_tool_calls
from haven.settings import Settings

StreamEvent = TextDelta | ReasoningDelta | Finished


class Generation:
    """One submitted request: its events, with metrics and cancel-on-abandon."""

    def __init__(self, engine: ModelEngine, handle: GenerationHandle, *, metrics: ServerMetrics | None = None) -> None:
        self.engine = engine
        self.handle = handle
        self.metrics = metrics
        self.model = engine.info.name
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished: Finished | None = None

    async def events(self) -> AsyncGenerator[StreamEvent, None]:
        try:
            async for event in self.handle.events():
                if isinstance(event, Finished):
                    self.finished = event
                    self._record(event)
                    yield event
                    return
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                    if self.metrics is not None:
                        self.metrics.ttft.labels(self.model).observe(self.first_token_at - self.submitted_at)
                yield event
        finally:
            if self.finished is None:
                await self.cancel()

    async def cancel(self) -> None:
        # Shielded: this usually runs inside a task being cancelled (client disconnect), where an
        # unshielded await would be cancelled before the engine heard about it, leaving the slot busy.
        with anyio.CancelScope(shield=True):
            await self.handle.cancel()

    def _record(self, finished: Finished) -> None:
        charge_generated_tokens(finished.usage.completion_tokens)  # the client's token bucket (issue 11)
        if self.metrics is None:
            return
        m, usage = self.metrics, finished.usage
        m.generations.labels(self.model, finished.reason).inc()
        m.prompt_tokens.labels(self.model).inc(usage.prompt_tokens)
        m.completion_tokens.labels(self.model).inc(usage.completion_tokens)
        m.cached_tokens.labels(self.model).inc(usage.cached_tokens)
        decode = finished.timings.get("decode")
        if not decode and self.first_token_at is not None:
            decode = time.perf_counter() - self.first_token_at
        if decode and usage.completion_tokens > 1:
            m.tokens_per_second.labels(self.model).observe(usage.completion_tokens / decode)


@dataclass
class Completion:
    """A finished generation, aggregated (the non-streaming answer)."""

    content: str
    reasoning: str
    finish_reason: str
    """OpenAI's vocabulary: ``stop``, ``length`` or ``tool_calls``."""
    usage: Usage
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_string: str | None = None


def finish_reason_of(reason: FinishReason) -> str:
    return "length" if reason == "length" else "stop"


async def start_chat(
    engine: ModelEngine,
    messages: Sequence[Mapping[str, Any]],
    sampling: SamplingParams,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    enable_thinking: bool = True,
    split_reasoning: bool = True,
    request_id: str = "",
    metrics: ServerMetrics | None = None,
) -> Generation:
    # Rendered and tokenized off the event loop; request text never becomes control tokens (issue 11).
    chat = await engine.tokenize_chat(messages, tools=tools, enable_thinking=enable_thinking)
    return await start_text(
        engine,
        chat.tokens,
        sampling,
        reasoning_opened=chat.reasoning_opened,
        split_reasoning=split_reasoning,
        request_id=request_id,
        metrics=metrics,
    )


async def start_text(
    engine: ModelEngine,
    prompt: str | Sequence[int],
    sampling: SamplingParams,
    *,
    reasoning_opened: bool = False,
    split_reasoning: bool = True,
    request_id: str = "",
    metrics: ServerMetrics | None = None,
    add_special: bool = True,
) -> Generation:
    """Submit a raw prompt (text, or token ids used as they are)."""
    # A raw prompt is the client's own template: its control-token texts are meant (parse_special=True).
    if isinstance(prompt, str):
        tokens: Sequence[int] = await engine.tokenize_text(prompt, add_special=add_special, parse_special=True)
    else:
        tokens = prompt
    request = GenerationRequest(
        prompt_tokens=list(tokens),
        sampling=sampling,
        request_id=request_id,
        reasoning_opened=reasoning_opened,
        split_reasoning=split_reasoning,
    )
    handle = await engine.submit(request)
    return Generation(engine, handle, metrics=metrics)


async def collect(
    generation: Generation,
    *,
    tool_family: str | None = None,
    forced_tools: Sequence[Mapping[str, Any]] | None = None,
) -> Completion:
    """Run to the end. ``tool_family``: parse calls from the text; ``forced_tools``: the output is a
    grammar-forced ``{"name", "arguments"}`` object naming one of these tools."""
    content: list[str] = []
    reasoning: list[str] = []
    logprobs: list[TokenLogprob] = []
    finished: Finished | None = None
    async for event in generation.events():
        if isinstance(event, TextDelta):
            content.append(event.text)
            logprobs.extend(event.logprobs)
        elif isinstance(event, ReasoningDelta):
            reasoning.append(event.text)
        else:
            finished = event
    if finished is None or finished.reason == "cancelled":
        raise EngineError("the generation was cancelled before it finished.")
    if finished.reason == "error":
        raise EngineError(finished.error or "the generation failed.")
    text = "".join(content)
    calls: list[ToolCall] = []
    if forced_tools:
        call = forced_call(text, forced_tools)
        if call is not None:
            text, calls = "", [call]
    elif tool_family is not None and text:
        text, calls = parse_tool_calls(text, tool_family)
    reason = "tool_calls" if calls else finish_reason_of(finished.reason)
    return Completion(
        content=text,
        reasoning="".join(reasoning),
        finish_reason=reason,
        usage=finished.usage,
        logprobs=logprobs,
        tool_calls=calls,
        stop_string=finished.stop_string,
    )


def forced_call(text: str, tools: Sequence[Mapping[str, Any]]) -> ToolCall | None:
    """The call in output generated under a forced-call schema (see ``forced_calls_schema``)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("arguments"), dict):
        return None
    names = {str(t.get("function", t).get("name")) for t in tools}
    if obj.get("name") not in names:
        return None
    return ToolCall(new_call_id(), str(obj["name"]), json.dumps(obj["arguments"], ensure_ascii=False))


def forced_calls_schema(tools: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """JSON schema of a call to one of ``tools``: ``{"name": <const>, "arguments": <its parameters>}``."""
    options = []
    for tool in tools:
        function = tool.get("function", tool)
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    "arguments": dict(function.get("parameters") or {"type": "object"}),
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def normalized(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (an all-zero vector is returned as it is)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [float(x) for x in vector]


def checked_max_tokens(value: int | None, settings: Settings, param: str) -> int | None:
    """``value``, refused when above the server's ``max_tokens_limit``."""
    if value is not None and value > settings.max_tokens_limit:
        raise InvalidRequestError(
            f"{param} is {value}; this server allows at most {settings.max_tokens_limit} tokens per request.",
            param=param,
        )
    return value
