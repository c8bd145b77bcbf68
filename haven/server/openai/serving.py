"""OpenAI API logic: validated requests → engine work (via :mod:`haven.server.generation`) → OpenAI JSON.

Knows the model manager, the generation service and OpenAI's response shapes; knows nothing about
FastAPI. Streaming methods return async iterators of SSE frames (``data: {...}\\n\\n`` ... ``data: [DONE]``).

Choices of note:

* ``n`` > 1 submits n independent generations (seed + i when a seed is given, so they differ and are
  each reproducible); prompt tokens are counted once in ``usage``, as OpenAI does.
* ``tool_choice`` "required" or a named function constrains sampling to a call's JSON shape (a
  grammar), so even a model that would not call a tool does; "auto" parses calls from the text in
  the model family's format. Streamed with tools on "auto", text flows until what may be a call begins
  (a family marker such as ``<tool_call>``, or a leading ``{`` for Llama 3); that part is held and sent
  as ``tool_calls`` (or as text, if it was not a call) at the end.
* Unset sampling fields use the engine's defaults (llama.cpp's: temperature 0.8, top_p 0.95), not
  OpenAI's 1.0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import struct
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema

from haven import __version__
from haven.engine.protocol import (
    Finished,
    ModelEngine,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
    TokenLogprob,
    Usage,
)
from haven.errors import EngineError, HavenError, InvalidRequestError
from haven.server.errors import haven_error_body
from haven.server.generation import (
    Completion,
    Generation,
    checked_max_tokens,
    collect,
    finish_reason_of,
    forced_call,
    forced_calls_schema,
    normalized,
    start_chat,
    start_text,
)
from haven.server.metrics import ServerMetrics
from haven.server.model_manager import ModelManager
from haven.server.openai.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    NamedToolChoice,
)
from haven.server.tool_calls import ToolCall, ToolCallStream, family_for
from haven.settings import Settings

FINGERPRINT = f"haven-{__version__}"
KEEPALIVE_SECONDS = 2.0
"""An SSE comment is sent after this long without an event, so a vanished client is noticed (the
write fails) even while a request waits in the queue, and the slot is freed."""


def sse(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


@dataclass(frozen=True)
class _Chunks:
    """Builds the SSE frames of one streamed answer; ``usage`` goes in every frame only when asked for."""

    object: str
    request_id: str
    created: int
    model: str
    include_usage: bool

    def __call__(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.request_id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = usage
        return sse(body)


DONE = sse("[DONE]")
PING = b": keep-alive\n\n"


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _sum_usage(usages: Sequence[Usage]) -> Usage:
    """Prompt counted once (the same prompt for every choice), completions summed."""
    return Usage(
        prompt_tokens=max((u.prompt_tokens for u in usages), default=0),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=max((u.cached_tokens for u in usages), default=0),
    )


def _token_logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token,
        "logprob": lp.logprob,
        "bytes": list(lp.bytes) or list(lp.token.encode()),
        "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode())} for t, p in lp.top],
    }


def _tool_call_json(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    if index is not None:
        out = {"index": index, **out}
    return out


def check_schema(schema: Mapping[str, Any], param: str) -> None:
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"{param} is not a valid JSON schema: {exc.message}.", param=param) from None
    except (RecursionError, OverflowError, re.error):  # issue 9/11: nested ~100 deep, or a pattern re refuses
        raise InvalidRequestError(
            f"{param} is too deeply nested, or has a pattern Python cannot compile.", param=param
        ) from None


class _ChatPlan:
    """What one chat request asks of the engine, decided before anything is submitted."""

    def __init__(self, request: ChatCompletionRequest, settings: Settings) -> None:
        self.request = request
        tools = [t.model_dump(exclude_none=True) for t in request.tools or ()]
        choice = request.tool_choice
        self.template_tools: list[dict[str, Any]] | None = tools if tools and choice != "none" else None
        self.forced_tools: list[dict[str, Any]] | None = None
        if tools and isinstance(choice, NamedToolChoice):
            self.forced_tools = [t for t in tools if t["function"]["name"] == choice.function.name]
        elif tools and choice == "required":
            self.forced_tools = tools
        self.parse_tools = self.template_tools is not None and self.forced_tools is None
        for i, tool in enumerate(tools):
            parameters = tool["function"].get("parameters")
            if parameters is not None:
                check_schema(parameters, f"tools[{i}].function.parameters")
        self.json_schema = self._json_schema()
        if request.grammar is not None and self.json_schema is not None:
            raise InvalidRequestError(
                "grammar cannot be combined with response_format or a forced tool_choice.", param="grammar"
            )
        # A schema-constrained answer cannot contain "</think>": when the template opened a think block
        # (DeepSeek-R1), splitting would file the whole JSON answer under reasoning, so it is not split.
        self.split_reasoning = self.json_schema is None
        self.max_tokens = checked_max_tokens(request.requested_max_tokens(), settings, "max_tokens")
        self.logprobs = (request.top_logprobs or 0) if request.logprobs else None

    def _json_schema(self) -> dict[str, Any] | None:
        fmt = self.request.response_format
        if self.forced_tools is not None:
            if fmt is not None and fmt.type != "text":
                raise InvalidRequestError(
                    "response_format cannot be combined with a forced tool_choice.", param="response_format"
                )
            return forced_calls_schema(self.forced_tools)
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {}
        assert fmt.json_schema is not None
        schema = fmt.json_schema.schema_ or {}
        check_schema(schema, "response_format.json_schema.schema")
        return schema

    def sampling(self, index: int) -> SamplingParams:
        r = self.request
        return sampling_params(
            r, max_tokens=self.max_tokens, json_schema=self.json_schema, logprobs=self.logprobs, index=index
        )


def sampling_params(
    r: ChatCompletionRequest | CompletionRequest,
    *,
    max_tokens: int | None,
    json_schema: Mapping[str, Any] | None,
    logprobs: int | None,
    index: int,
) -> SamplingParams:
    values: dict[str, Any] = {
        "max_tokens": max_tokens,
        "stop": r.stop_tuple(),
        "grammar": r.grammar,
        "json_schema": json_schema,
        "logprobs": logprobs,
        "logit_bias": {int(k): v for k, v in (r.logit_bias or {}).items()},
    }
    for name in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repeat_penalty",
        "repeat_last_n",
        "presence_penalty",
        "frequency_penalty",
        "ignore_eos",
    ):
        value = getattr(r, name)
        if value is not None:
            values[name] = value
    if r.seed is not None:
        values["seed"] = r.seed + index
    return SamplingParams(**values)


def engine_messages(messages: Sequence[ChatMessage], family: str) -> list[dict[str, Any]]:
    """OpenAI messages → the dicts chat templates expect (HF conventions)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        item: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text() or ""}
        if m.name:
            item["name"] = m.name
        if m.tool_calls:
            calls = []
            for j, call in enumerate(m.tool_calls):
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    raise InvalidRequestError(
                        f"messages[{i}].tool_calls[{j}].function.arguments is not valid JSON.",
                        param=f"messages[{i}].tool_calls[{j}].function.arguments",
                    ) from None
                # DeepSeek's template concatenates arguments as text; Qwen's and Llama's serialise a dict.
                calls.append(
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments if family == "deepseek" else arguments,
                        },
                    }
                )
            item["tool_calls"] = calls
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


async def _start_all(starts: Sequence[Any]) -> list[Generation]:
    """Submit n generations; if one is refused (queue full), cancel the ones already queued."""
    started: list[Generation] = []
    try:
        for start in starts:
            started.append(await start())
    except BaseException:
        for generation in started:
            await generation.cancel()
        raise
    return started


async def _merge(generations: Sequence[Generation]) -> AsyncGenerator[tuple[int, Any], None]:
    """Events of several generations as (index, event), in arrival order; (index, None) ends one."""
    if len(generations) == 1:
        async with contextlib.aclosing(generations[0].events()) as merged:
            async for event in merged:
                yield 0, event
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, generation: Generation) -> None:
        try:
            async for event in generation.events():
                await queue.put((index, event))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put((index, exc))

    tasks = [asyncio.ensure_future(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if isinstance(item, Exception):
                raise item
            if item is None:
                remaining -= 1
            yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def with_keepalive(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yields ``PING`` whenever ``frames`` is silent for KEEPALIVE_SECONDS; closes ``frames`` on exit."""
    iterator = frames.__aiter__()
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield PING
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield frame
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await iterator.aclose()  # type: ignore[attr-defined]


async def _collect_all(generations: Sequence[Generation], **options: Any) -> list[Completion]:
    """Run every choice to its end; if one fails (or the client leaves), the others are cancelled too."""
    tasks = [asyncio.ensure_future(collect(g, **options)) for g in generations]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _error_frame(exc: HavenError) -> bytes:
    return sse(haven_error_body(exc, ollama=False))


class OpenAIServing:
    def __init__(self, models: ModelManager, settings: Settings, metrics: ServerMetrics | None = None) -> None:
        self.models = models
        self.settings = settings
        self.metrics = metrics

    # --- chat ---------------------------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest) -> dict[str, Any] | AsyncIterator[bytes]:
        plan = _ChatPlan(request, self.settings)  # every 400 before the model loads
        engine = await self.models.get(request.model)
        family = family_for(engine.info)
        messages = engine_messages(request.messages, family)
        request_id = "chatcmpl-" + uuid.uuid4().hex[:24]

        def starter(index: int) -> Any:
            return lambda: start_chat(
                engine,
                messages,
                plan.sampling(index),
                tools=plan.template_tools,
                enable_thinking=request.reasoning_effort != "none",
                split_reasoning=plan.split_reasoning,
                request_id=f"{request_id}-{index}",
                metrics=self.metrics,
            )

        generations = await _start_all([starter(i) for i in range(request.n)])
        created = int(time.time())
        if request.stream:
            frames = self._chat_stream(request, plan, generations, family, request_id, created)
            return with_keepalive(frames)
        completions = await _collect_all(
            generations, tool_family=family if plan.parse_tools else None, forced_tools=plan.forced_tools
        )
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [self._chat_choice(i, c, request) for i, c in enumerate(completions)],
            "usage": _usage(_sum_usage([c.usage for c in completions])),
        }

    @staticmethod
    def _chat_choice(index: int, c: Completion, request: ChatCompletionRequest) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": c.content if c.content or not c.tool_calls else None}
        if c.reasoning:
            message["reasoning_content"] = c.reasoning
        if c.tool_calls:
            message["tool_calls"] = [_tool_call_json(call) for call in c.tool_calls]
        logprobs = {"content": [_token_logprob(lp) for lp in c.logprobs]} if request.logprobs else None
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": c.finish_reason}

    async def _chat_stream(
        self,
        request: ChatCompletionRequest,
        plan: _ChatPlan,
        generations: list[Generation],
        family: str,
        request_id: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        # A forced call is one JSON object: held whole. With tools on "auto", text streams until what
        # may be a call begins (see ToolCallStream).
        forced = plan.forced_tools is not None
        held: dict[int, list[str]] = {i: [] for i in range(len(generations))}
        filters = {i: ToolCallStream(family) for i in range(len(generations))} if plan.parse_tools else {}
        usages: list[Usage] = []

        chunk = _Chunks("chat.completion.chunk", request_id, created, request.model, include_usage)

        def delta(index: int, d: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
            return chunk([{"index": index, "delta": d, "logprobs": logprobs, "finish_reason": finish}])

        try:
            for i in range(len(generations)):
                yield delta(i, {"role": "assistant", "content": ""})
            async with contextlib.aclosing(_merge(generations)) as merged:
                async for index, event in merged:
                    if isinstance(event, ReasoningDelta):
                        if event.text:
                            yield delta(index, {"reasoning_content": event.text})
                    elif isinstance(event, TextDelta):
                        if forced:
                            held[index].append(event.text)
                        elif filters:
                            text = filters[index].feed(event.text)
                            if text:
                                yield delta(index, {"content": text})
                        elif event.text or event.logprobs:
                            lp = {"content": [_token_logprob(x) for x in event.logprobs]} if request.logprobs else None
                            yield delta(index, {"content": event.text}, logprobs=lp)
                    elif isinstance(event, Finished):
                        if event.reason == "error":
                            raise EngineError(event.error or "the generation failed.")
                        usages.append(event.usage)
                        finish = finish_reason_of(event.reason)
                        if forced or filters:
                            calls: list[ToolCall] = []
                            if plan.forced_tools:
                                text = "".join(held[index])
                                call = forced_call(text, plan.forced_tools)
                                text, calls = ("", [call]) if call else (text, [])
                            else:
                                text, calls = filters[index].finish()
                            if calls:
                                finish = "tool_calls"
                                tool_deltas = [_tool_call_json(c, j) for j, c in enumerate(calls)]
                                yield delta(index, {"tool_calls": tool_deltas})
                            if text:
                                yield delta(index, {"content": text})
                        yield delta(index, {}, finish=finish)
            if include_usage:
                yield chunk([], _usage(_sum_usage(usages)))
        except HavenError as exc:
            # The 200 and headers are gone: report in-band, as OpenAI does; the SDK raises APIError.
            yield _error_frame(exc)
        yield DONE

    # --- completions ----------------------------------------------------------------------------------

    async def completion(self, request: CompletionRequest) -> dict[str, Any] | AsyncIterator[bytes]:
        if request.suffix:
            raise InvalidRequestError("suffix (fill-in-the-middle) is not supported.", param="suffix")
        max_tokens = checked_max_tokens(request.max_tokens, self.settings, "max_tokens")
        if request.grammar is not None and max_tokens == 0:
            raise InvalidRequestError("max_tokens 0 cannot be combined with a grammar.", param="max_tokens")
        engine = await self.models.get(request.model)
        prompts = request.prompts()
        request_id = "cmpl-" + uuid.uuid4().hex[:24]
        echo_texts = [p if isinstance(p, str) else engine.detokenize(p) for p in prompts]

        def starter(prompt: str | list[int], index: int) -> Any:
            sampling = sampling_params(
                request, max_tokens=max_tokens, json_schema=None, logprobs=request.logprobs, index=index
            )
            return lambda: start_text(
                engine,
                prompt,
                sampling,
                split_reasoning=False,
                request_id=f"{request_id}-{index}",
                metrics=self.metrics,
            )

        starts = [starter(p, j) for p in prompts for j in range(request.n)]
        generations = await _start_all(starts)
        created = int(time.time())
        echoes = [echo_texts[i // request.n] if request.echo else "" for i in range(len(generations))]
        if request.stream:
            return with_keepalive(self._completion_stream(request, generations, echoes, request_id, created))
        completions = await _collect_all(generations)
        return {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": request.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [
                {
                    "index": i,
                    "text": echoes[i] + c.content,
                    "logprobs": _legacy_logprobs(c.logprobs) if request.logprobs is not None else None,
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(completions)
            ],
            "usage": _usage(_completion_usage([c.usage for c in completions], request.n)),
        }

    async def _completion_stream(
        self,
        request: CompletionRequest,
        generations: list[Generation],
        echoes: list[str],
        request_id: str,
        created: int,
    ) -> AsyncIterator[bytes]:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        usages: list[Usage] = []

        chunk = _Chunks("text_completion", request_id, created, request.model, include_usage)

        try:
            for i, echo in enumerate(echoes):
                if echo:
                    yield chunk([{"index": i, "text": echo, "logprobs": None, "finish_reason": None}])
            async with contextlib.aclosing(_merge(generations)) as merged:
                async for index, event in merged:
                    if isinstance(event, TextDelta) and event.text:
                        lp = _legacy_logprobs(list(event.logprobs)) if request.logprobs is not None else None
                        yield chunk([{"index": index, "text": event.text, "logprobs": lp, "finish_reason": None}])
                    elif isinstance(event, Finished):
                        if event.reason == "error":
                            raise EngineError(event.error or "the generation failed.")
                        usages.append(event.usage)
                        finish = finish_reason_of(event.reason)
                        yield chunk([{"index": index, "text": "", "logprobs": None, "finish_reason": finish}])
            if include_usage:
                yield chunk([], _usage(_completion_usage(usages, request.n)))
        except HavenError as exc:
            yield _error_frame(exc)
        yield DONE

    # --- embeddings -------------------------------------------------------------------------------------

    async def embeddings(self, request: EmbeddingRequest) -> dict[str, Any]:
        engine = await self.models.get(request.model)
        texts = _embedding_texts(engine, request.input)
        prompt_tokens = 0
        limit = engine.info.context_length
        for i, text in enumerate(texts):
            count = len(engine.tokenize(text, add_special=True, parse_special=False))
            if count > limit:
                raise InvalidRequestError(
                    f"input[{i}] has {count} tokens, more than the model's context of {limit}.", param="input"
                )
            prompt_tokens += count
        vectors = await engine.embed(texts)
        data = []
        for i, vector in enumerate(vectors):
            values = list(vector)
            if request.dimensions is not None:
                if request.dimensions > len(values):
                    raise InvalidRequestError(
                        f"dimensions is {request.dimensions}, but this model's embeddings have {len(values)}.",
                        param="dimensions",
                    )
                values = normalized(values[: request.dimensions])
            embedding: list[float] | str = values
            if request.encoding_format == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    # --- models -------------------------------------------------------------------------------------------

    def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [model_card(entry) for entry in self.models.catalog()]}

    def get_model(self, model_id: str) -> dict[str, Any]:
        return model_card(self.models.store.get(model_id))


def _completion_usage(usages: Sequence[Usage], n: int) -> Usage:
    """Each prompt counted once however many choices it had."""
    prompt = sum(u.prompt_tokens for i, u in enumerate(usages) if i % max(n, 1) == 0)
    return Usage(prompt, sum(u.completion_tokens for u in usages), sum(u.cached_tokens for u in usages))


def _legacy_logprobs(items: Sequence[TokenLogprob]) -> dict[str, Any]:
    offsets, position = [], 0
    for lp in items:
        offsets.append(position)
        position += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [dict(lp.top) for lp in items],
        "text_offset": offsets,
    }


def _embedding_texts(engine: ModelEngine, value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [engine.detokenize(value)]
    return [v if isinstance(v, str) else engine.detokenize(v) for v in value]


def _timestamp(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, int | float):
        return int(value)
    return 0


def model_card(entry: Any) -> dict[str, Any]:
    def field(*names: str) -> Any:
        for name in names:
            if isinstance(entry, Mapping) and name in entry:
                return entry[name]
            if hasattr(entry, name):
                return getattr(entry, name)
        return None

    return {
        "id": str(field("name")),
        "object": "model",
        "created": _timestamp(field("created_at", "imported_at", "modified_at", "modified")),
        "owned_by": "haven",
    }
