"""Ollama API mapping for generation: validated ``/api`` requests → the chat backend → Ollama-shaped chunks.

Protocol mapping only: templates, tools, grammars, reasoning, finish reasons and cancel-on-abandon are
the chat layer's (:mod:`haven.chat`). Every function takes parsed request models and returns dicts (or
async iterators of dicts for NDJSON streaming). Durations are nanoseconds, as in Ollama
(``total_duration``, ``load_duration``, ``prompt_eval_duration``, ``eval_duration``). The model store
side of the API (tags, show, copy, create, blobs, pull, delete) is :mod:`haven.server.ollama.models`.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from haven.chat import backend as api
from haven.chat.options import sampling_from
from haven.errors import InvalidRequestError
from haven.server.ollama.protocol import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    Format,
    GenerateRequest,
    Options,
    parse_keep_alive,
)

OLLAMA_COMPAT_VERSION = "0.12.0"
"""Reported by ``/api/version``: the Ollama API level Haven implements (clients gate features on it)."""


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive in the backend's spelling (negative: forever)."""
    seconds = parse_keep_alive(value)
    return -1.0 if seconds == math.inf else seconds


# --- request → chat contract ---------------------------------------------------------------------------


def sampling_of(options: Options) -> api.Sampling:
    # Ollama's repeat_last_n -1 (the whole context) and 0 (disabled) mean the same to the engine.
    return sampling_from(options)


def limits_of(options: Options) -> api.Limits:
    predict = options.num_predict
    stop = options.stop if isinstance(options.stop, list) else ()
    return api.Limits(max_tokens=predict if predict is not None and predict >= 0 else None, stop=tuple(stop))


def output_of(fmt: Format) -> api.OutputFormat:
    """``format``: "json" → any JSON object; a dict → that JSON schema; ""/None → free text."""
    if fmt is None or fmt == "":
        return api.PlainText()
    if fmt == "json":
        return api.JsonObject()
    assert isinstance(fmt, dict)
    return api.JsonSchema(fmt)


def reasoning_of(think: bool | str | None) -> api.Reasoning:
    if think is False:
        return api.Reasoning(enabled=False, show=False)
    if think is None:
        return api.Reasoning()
    effort: api.ReasoningEffort | None = None
    if think in ("low", "medium", "high"):
        effort = think
    return api.Reasoning(enabled=True, effort=effort)


def chat_request(r: ChatRequest) -> api.ChatRequest:
    messages = []
    for m in r.messages:
        if m.images:
            raise InvalidRequestError("this server's models do not accept images.", param="messages.images")
        calls = tuple(
            api.ToolCall("", c.function.name, json.dumps(c.function.arguments, ensure_ascii=False))
            for c in m.tool_calls or ()
        )
        messages.append(api.Message(m.role, m.content, m.thinking or None, calls, name=m.tool_name))
    tools = []
    for tool in r.tools or ():
        function = tool.get("function", tool)
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError("every tool needs a function with a name.", param="tools")
        tools.append(api.Tool(function["name"], function.get("description"), function.get("parameters")))
    return api.ChatRequest(
        messages=tuple(messages),
        tools=tuple(tools),
        reasoning=reasoning_of(r.think),
        context_length=r.options.num_ctx,
        **_generation_fields(r),
    )


def _generation_fields(r: ChatRequest | GenerateRequest) -> dict[str, Any]:
    """What every generating request maps the same way (model, format, options, keep_alive)."""
    return {
        "model": r.model,
        "output": output_of(r.format),
        "sampling": sampling_of(r.options),
        "limits": limits_of(r.options),
        "seed": r.options.seed,
        "keep_alive": keep_alive_seconds(r.keep_alive),
    }


def generate_request(r: GenerateRequest) -> api.ChatRequest | api.TextRequest:
    if r.template:
        raise InvalidRequestError("custom prompt templates are not supported; use raw=true.", param="template")
    if r.suffix:
        raise InvalidRequestError("fill-in-the-middle (suffix) is not supported.", param="suffix")
    if r.images:
        raise InvalidRequestError("this server's models do not accept images.", param="images")
    if r.raw:
        return api.TextRequest(prompt=r.prompt, **_generation_fields(r))
    messages = [api.Message("system", r.system)] if r.system else []
    messages.append(api.Message("user", r.prompt))
    return api.ChatRequest(
        messages=tuple(messages),
        reasoning=reasoning_of(r.think),
        context_length=r.options.num_ctx,
        **_generation_fields(r),
    )


# --- chat stream → Ollama chunks -----------------------------------------------------------------------


@dataclass
class Run:
    """One generation in flight plus what its ``done`` chunk reports."""

    stream: api.ChatStream
    model: str
    kind: str
    """"chat" or "generate"."""
    calls: list[api.ToolCallDelta] = field(default_factory=list)
    final: api.Final | None = None


def chunk(model: str, kind: str, *, content: str = "", thinking: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        out["message"] = message
    else:
        out["response"] = content
        if thinking:
            out["thinking"] = thinking
    out["done"] = False
    return out


async def chunks(run: Run) -> AsyncIterator[dict[str, Any]]:
    """Ollama chunks of a run, ending with the ``done`` chunk; closing it cancels the generation. A failed
    generation raises (the router reports it as a final ``{"error": …}`` line)."""
    try:
        async for event in run.stream:
            if isinstance(event, api.TextDelta):
                if event.text:
                    yield chunk(run.model, run.kind, content=event.text)
            elif isinstance(event, api.ReasoningDelta):
                yield chunk(run.model, run.kind, thinking=event.text)
            elif isinstance(event, api.ToolCallDelta):
                run.calls.append(event)
            else:
                run.final = event
                break
    finally:
        await run.stream.aclose()
    assert run.final is not None
    error = api.failure(run.final)
    if error is not None:
        raise error
    yield done_chunk(run, chunk(run.model, run.kind))


async def complete(run: Run) -> dict[str, Any]:
    """Run to the end and return one response (``stream: false``)."""
    result = await api.collect(run.stream)
    error = api.failure(result.final)
    if error is not None:
        raise error
    run.final = result.final
    run.calls = [api.ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(result.tool_calls)]
    return done_chunk(run, chunk(run.model, run.kind, content=result.content, thinking=result.reasoning or None))


def done_chunk(run: Run, out: dict[str, Any]) -> dict[str, Any]:
    final = run.final
    assert final is not None
    if run.calls and run.kind == "chat":
        out["message"]["tool_calls"] = [
            {"function": {"index": c.index, "name": c.name, "arguments": _arguments(c.arguments)}} for c in run.calls
        ]
    timings = final.timings
    out.update(
        done=True,
        done_reason="length" if final.finish_reason == "length" else "stop",
        total_duration=ns(timings.get("total", 0.0) + timings.get("load", 0.0)),
        load_duration=ns(timings.get("load", 0.0)),
        prompt_eval_count=final.usage.prompt_tokens,
        prompt_eval_duration=ns(timings.get("prefill", 0.0)),
        eval_count=final.usage.completion_tokens,
        eval_duration=ns(timings.get("decode", 0.0)),
    )
    return out


def _arguments(text: str) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


# --- embeddings ---------------------------------------------------------------------------------------


async def embed(backend: api.ChatBackend, r: EmbedRequest) -> dict[str, Any]:
    inputs = (r.input,) if isinstance(r.input, str) else tuple(r.input)
    result = await backend.embed(
        api.EmbedRequest(
            r.model,
            inputs,
            truncate=r.truncate,
            dimensions=r.dimensions,
            normalize=True,
            keep_alive=keep_alive_seconds(r.keep_alive),
        )
    )
    load = result.timings.get("load", 0.0)
    return {
        "model": r.model,
        "embeddings": result.vectors,
        "total_duration": ns(result.timings.get("total", load)),
        "load_duration": ns(load),
        "prompt_eval_count": result.prompt_tokens,
    }


async def embeddings(backend: api.ChatBackend, r: EmbeddingsRequest) -> dict[str, Any]:
    """Legacy ``/api/embeddings``: one prompt, the raw (not normalised) vector."""
    keep_alive = keep_alive_seconds(r.keep_alive)
    result = await backend.embed(api.EmbedRequest(r.model, (r.prompt,) if r.prompt else (), keep_alive=keep_alive))
    return {"embedding": result.vectors[0] if result.vectors else []}
