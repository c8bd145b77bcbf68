"""OpenAI API mapping: validated ``/v1`` requests → the chat backend → OpenAI JSON or SSE frames.

Protocol mapping only: every generation rule (templates, tools, grammars, reasoning, finish reasons,
cancel-on-abandon) is the chat layer's (:mod:`haven.chat`). Streaming methods return async iterators of
SSE frames (``data: {...}\\n\\n`` … ``data: [DONE]``). ``n`` > 1 submits n generations (seed + i when a
seed is given, so they differ and are each reproducible); prompt tokens are counted once in ``usage``,
as OpenAI does.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from haven import __version__
from haven.chat import backend as api
from haven.chat.fanout import collect_all, merge, start_all
from haven.chat.offload import off_loop_if_long
from haven.errors import HavenError, InvalidRequestError
from haven.server.errors import haven_error_body
from haven.server.openai import convert
from haven.server.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from haven.server.streaming import with_keepalive

FINGERPRINT = f"haven-{__version__}"


def sse(data: Mapping[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


DONE = sse("[DONE]")


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


Starter = Callable[[], Awaitable[api.ChatStream]]


class OpenAIServing:
    def __init__(self, backend: api.ChatBackend, *, reasoning_field: convert.ReasoningField = "both") -> None:
        self.backend = backend
        self.reasoning_field = reasoning_field

    # --- chat ---------------------------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest, keep_alive: float | None = None) -> Any:
        base = await off_loop_if_long(
            request.messages, convert.chat_request, request, max_tokens=request.requested_max_tokens()
        )
        base = dataclasses.replace(base, keep_alive=keep_alive)
        request_id = "chatcmpl-" + uuid.uuid4().hex[:24]

        def starter(i: int) -> Starter:
            seed = None if base.seed is None else base.seed + i
            one = dataclasses.replace(base, seed=seed, request_id=f"{request_id}-{i}")
            return lambda: self.backend.chat(one)

        streams = await start_all([starter(i) for i in range(request.n)])
        created = int(time.time())
        if request.stream:
            return with_keepalive(self._chat_stream(request, streams, request_id, created))
        results = await collect_all(streams)
        choices = []
        for i, result in enumerate(results):
            logprobs = (
                {"content": [convert.token_logprob_json(x) for x in result.logprobs]} if request.logprobs else None
            )
            message = convert.message_json(result, self.reasoning_field)
            choices.append(
                {"index": i, "message": message, "logprobs": logprobs, "finish_reason": result.final.finish_reason}
            )
        return {
            "id": request_id,
            "object": "chat.completion",
            "created": created,
            "model": request.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": convert.usage_json(convert.sum_usage([r.final.usage for r in results])),
        }

    async def _chat_stream(
        self, request: ChatCompletionRequest, streams: list[api.ChatStream], request_id: str, created: int
    ) -> AsyncIterator[bytes]:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        chunk = _Chunks("chat.completion.chunk", request_id, created, request.model, include_usage)
        usages: list[api.Usage] = []

        def delta(index: int, d: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> bytes:
            return chunk([{"index": index, "delta": d, "logprobs": logprobs, "finish_reason": finish}])

        try:
            for i in range(len(streams)):
                yield delta(i, {"role": "assistant", "content": ""})
            async for index, event in merge(streams):
                if isinstance(event, api.ReasoningDelta):
                    yield delta(index, convert.reasoning_json(event.text, self.reasoning_field))
                elif isinstance(event, api.TextDelta):
                    lp = None
                    if request.logprobs:
                        lp = {"content": [convert.token_logprob_json(x) for x in event.logprobs]}
                    yield delta(index, {"content": event.text}, logprobs=lp)
                elif isinstance(event, api.ToolCallDelta):
                    yield delta(index, {"tool_calls": [convert.tool_call_json(event, event.index)]})
                else:
                    error = api.failure(event)
                    if error is not None:
                        raise error
                    usages.append(event.usage)
                    yield delta(index, {}, finish=event.finish_reason)
            if include_usage:
                yield chunk([], convert.usage_json(convert.sum_usage(usages)))
        except HavenError as exc:
            # The 200 and headers are gone: report in-band, as OpenAI does; the SDK raises APIError.
            yield sse(haven_error_body(exc, ollama=False))
        yield DONE

    # --- completions ----------------------------------------------------------------------------------

    async def completion(self, request: CompletionRequest, keep_alive: float | None = None) -> Any:
        if request.suffix:
            raise InvalidRequestError("suffix (fill-in-the-middle) is not supported.", param="suffix")
        output: api.OutputFormat = api.PlainText()
        if request.grammar is not None:
            output = api.Grammar(request.grammar)
        elif request.json_schema is not None:
            output = api.JsonSchema(request.json_schema)
        prompts = request.prompts()
        request_id = "cmpl-" + uuid.uuid4().hex[:24]
        max_tokens = request.max_tokens if request.max_tokens is not None else request.n_predict

        def starter(prompt: str | list[int], i: int) -> Starter:
            one = api.TextRequest(
                model=request.model,
                prompt=prompt if isinstance(prompt, str) else tuple(prompt),
                output=output,
                sampling=convert.sampling_of(request),
                limits=convert.limits_of(request, max_tokens if max_tokens != -1 else None),
                seed=None if request.seed is None else request.seed + i,
                logprobs=request.logprobs,
                keep_alive=keep_alive,
                echo=request.echo,
                request_id=f"{request_id}-{i}",
            )
            return lambda: self.backend.complete(one)

        streams = await start_all([starter(p, j) for p in prompts for j in range(request.n)])
        created = int(time.time())
        if request.stream:
            return with_keepalive(self._completion_stream(request, streams, len(prompts), request_id, created))
        results = await collect_all(streams)
        choices = [
            {
                "index": i,
                "text": r.content,
                "logprobs": convert.legacy_logprobs_json(r.logprobs) if request.logprobs is not None else None,
                "finish_reason": r.final.finish_reason,
            }
            for i, r in enumerate(results)
        ]
        usage = convert.sum_usage([r.final.usage for r in results], prompts=len(prompts))
        return {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": request.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
            "usage": convert.usage_json(usage),
        }

    async def _completion_stream(
        self, request: CompletionRequest, streams: list[api.ChatStream], prompts: int, request_id: str, created: int
    ) -> AsyncIterator[bytes]:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        chunk = _Chunks("text_completion", request_id, created, request.model, include_usage)
        usages: list[api.Usage] = []
        try:
            async for index, event in merge(streams):
                if isinstance(event, api.TextDelta) and event.text:
                    lp = convert.legacy_logprobs_json(event.logprobs) if request.logprobs is not None else None
                    yield chunk([{"index": index, "text": event.text, "logprobs": lp, "finish_reason": None}])
                elif isinstance(event, api.Final):
                    error = api.failure(event)
                    if error is not None:
                        raise error
                    usages.append(event.usage)
                    finish = {"index": index, "text": "", "logprobs": None, "finish_reason": event.finish_reason}
                    yield chunk([finish])
            if include_usage:
                yield chunk([], convert.usage_json(convert.sum_usage(usages, prompts=prompts)))
        except HavenError as exc:
            yield sse(haven_error_body(exc, ollama=False))
        yield DONE

    # --- embeddings -------------------------------------------------------------------------------------

    async def embeddings(self, request: EmbeddingRequest, keep_alive: float | None = None) -> dict[str, Any]:
        value: Any = request.input
        if isinstance(value, str):
            inputs: tuple[str | tuple[int, ...], ...] = (value,)
        elif value and all(isinstance(v, int) for v in value):
            inputs = (tuple(value),)
        else:
            inputs = tuple(v if isinstance(v, str) else tuple(v) for v in value)
        result = await self.backend.embed(
            api.EmbedRequest(request.model, inputs, dimensions=request.dimensions, keep_alive=keep_alive)
        )
        data = []
        for i, values in enumerate(result.vectors):
            embedding: list[float] | str = values
            if request.encoding_format == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
            data.append({"object": "embedding", "index": i, "embedding": embedding})
        tokens = result.prompt_tokens
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": request.model, "usage": usage}

    # --- models -------------------------------------------------------------------------------------------

    def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [model_json(card) for card in self.backend.models()]}

    def get_model(self, model_id: str) -> dict[str, Any]:
        return model_json(self.backend.model(model_id).card)


def model_json(card: api.ModelCard) -> dict[str, Any]:
    return {"id": card.name, "object": "model", "created": int(card.modified.timestamp()), "owned_by": card.owned_by}
