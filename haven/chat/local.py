"""``LocalChatBackend``: the :class:`~haven.chat.backend.ChatBackend` over Haven's own engine.

One request goes: validate what can be validated before a model loads (tool schemas, output format)
→ get the engine (loading it if needed) → apply the model's defaults → render and tokenize with the
reasoning policy (:mod:`haven.chat.prompt`) → build sampling and the grammar (:mod:`haven.chat.options`)
→ submit → a :class:`LocalStream` of chat events. The stream owns what every API used to repeat: the
tool-call finishing (calls parsed from the text in the model family's format, or taken from a
grammar-forced call), the mapping of engine outcomes (``cancelled`` by anyone but us means the model was
unloaded or the server is shutting down: an error, in every API), metrics, and cancel-on-abandon.

It knows the engine protocol, the model store's manifests and tool-call formats; nothing about HTTP.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

import anyio

from haven.chat import options, prompt
from haven.chat.backend import (
    Capability,
    ChatError,
    ChatEvent,
    ChatRequest,
    Embeddings,
    EmbedRequest,
    Final,
    Limits,
    ModelCard,
    ModelDetails,
    ReasoningDelta,
    TextDelta,
    TextRequest,
    ToolCallDelta,
    Usage,
)
from haven.chat.tool_calls import ToolCall, ToolCallStream, family_for, forced_call
from haven.engine import protocol as engine_api
from haven.engine.protocol import GenerationHandle, GenerationRequest, ModelEngine, ModelInfo
from haven.errors import ContextLengthExceededError, InvalidRequestError
from haven.models.manifest import Manifest
from haven.models.store import ModelStore

SHUTDOWN_MESSAGE = "the model was unloaded (the server is shutting down) before the generation finished."


class ModelHost(Protocol):
    """What the backend needs of the server's model manager (:class:`haven.server.model_manager.ModelManager`)."""

    @property
    def store(self) -> ModelStore: ...

    async def get(self, name: str, *, keep_alive: float | None = None) -> ModelEngine: ...

    def catalog(self) -> list[Manifest]: ...

    def loaded_info(self, name: str) -> ModelInfo | None: ...


class GenerationObserver(Protocol):
    """Metrics hooks (the server's Prometheus metrics implement them)."""

    def first_token(self, model: str, seconds: float) -> None: ...

    def finished(self, model: str, reason: str, usage: Usage, decode_seconds: float | None) -> None: ...


class _ToolOutput:
    """Holds back tool calls: a forced call is one JSON object (held whole); with tools on "auto" text
    streams until what may be a call begins (see :class:`~haven.chat.tool_calls.ToolCallStream`)."""

    def __init__(self, plan: options.ToolPlan, family: str) -> None:
        self.forced = plan.forced
        self.stream = ToolCallStream(family) if plan.parse_calls else None
        self.held: list[str] = []

    @property
    def filtering(self) -> bool:
        return self.forced is not None or self.stream is not None

    def feed(self, text: str) -> str:
        if self.forced is not None:
            self.held.append(text)
            return ""
        return self.stream.feed(text) if self.stream is not None else text

    def finish(self) -> tuple[str, list[ToolCall]]:
        if self.forced is not None:
            text = "".join(self.held)
            call = forced_call(text, self.forced)
            return ("", [call]) if call is not None else (text, [])
        return self.stream.finish() if self.stream is not None else ("", [])


class LocalStream:
    """The chat events of one engine generation; closing it before :class:`Final` cancels the generation."""

    def __init__(
        self,
        handle: GenerationHandle,
        *,
        model: str,
        tools: _ToolOutput,
        show_reasoning: bool = True,
        include_stop: bool = False,
        prefix: str = "",
        observer: GenerationObserver | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        self.handle = handle
        self.model = model
        self._tools = tools
        self._show_reasoning = show_reasoning
        self._include_stop = include_stop
        self._prefix = prefix
        self._observer = observer
        self._timings = timings or {}
        self._submitted = time.perf_counter()
        self._done = False
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._events

    async def aclose(self) -> None:
        await self._events.aclose()
        await self._cancel()

    async def _cancel(self) -> None:
        if self._done:
            return
        self._done = True
        # Shielded: this usually runs inside a task being cancelled (client disconnect), where an
        # unshielded await would be cancelled before the engine heard about it, leaving the slot busy.
        with anyio.CancelScope(shield=True):
            await self.handle.cancel()

    async def _run(self) -> AsyncGenerator[ChatEvent, None]:
        first_at: float | None = None
        reasoning_tokens = 0
        try:
            if self._prefix:
                yield TextDelta(self._prefix)
            async for event in self.handle.events():
                if isinstance(event, engine_api.Finished):
                    self._done = True
                    for out in self._finish(event, reasoning_tokens, first_at):
                        yield out
                    return
                if first_at is None:
                    first_at = time.perf_counter()
                    if self._observer is not None:
                        self._observer.first_token(self.model, first_at - self._submitted)
                if isinstance(event, engine_api.ReasoningDelta):
                    reasoning_tokens += len(event.token_ids)
                    if event.text and self._show_reasoning:
                        yield ReasoningDelta(event.text)
                elif self._tools.filtering:
                    text = self._tools.feed(event.text)
                    if text:
                        yield TextDelta(text)
                elif event.text or event.logprobs:
                    yield TextDelta(event.text, event.logprobs)
        finally:
            if not self._done:
                await self._cancel()

    def _finish(self, event: engine_api.Finished, reasoning_tokens: int, first_at: float | None) -> list[ChatEvent]:
        u = event.usage
        usage = Usage(u.prompt_tokens, u.completion_tokens, u.cached_tokens, reasoning_tokens)
        timings = {**self._timings, **event.timings, "total": time.perf_counter() - self._submitted}
        if self._observer is not None:
            decode = event.timings.get("decode") or (time.perf_counter() - first_at if first_at else None)
            self._observer.finished(self.model, event.reason, usage, decode)
        if event.reason == "cancelled":
            return [Final("error", usage, ChatError("shutdown", SHUTDOWN_MESSAGE), timings=timings)]
        if event.reason == "error":
            message = event.error or "the generation failed."
            return [Final("error", usage, ChatError("engine_error", message), timings=timings)]
        out: list[ChatEvent] = []
        text, calls = self._tools.finish()
        if text:
            out.append(TextDelta(text))
        if self._include_stop and event.stop_string:
            out.append(TextDelta(event.stop_string))
        out.extend(ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(calls))
        reason = "tool_calls" if calls else event.reason
        out.append(Final(reason, usage, stop_string=event.stop_string, timings=timings))
        return out


def _no_tools() -> _ToolOutput:
    return _ToolOutput(options.ToolPlan(None, None), "qwen")


class LocalChatBackend:
    """Chat, completions, embeddings and model information from the models of this server."""

    def __init__(self, host: ModelHost, *, max_tokens_limit: int, observer: GenerationObserver | None = None) -> None:
        self.host = host
        self.max_tokens_limit = max_tokens_limit
        self.observer = observer

    async def _engine(self, name: str, keep_alive: float | None) -> tuple[ModelEngine, Manifest, float]:
        manifest = self.host.store.get(name)  # ModelNotFoundError before anything loads
        started = time.perf_counter()
        engine = await self.host.get(name, keep_alive=keep_alive)
        return engine, manifest, time.perf_counter() - started

    # --- generation ------------------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> LocalStream:
        plan = options.plan_tools(request.tools, request.tool_choice)  # every 400 before the model loads
        constraint = options.output_constraint(request.output, plan)
        engine, manifest, load = await self._engine(request.model, request.keep_alive)
        defaults = manifest.defaults
        request = prompt.with_defaults(request, defaults)
        family = family_for(engine.info)
        template = defaults.template if request.apply_defaults else None
        rendered = await prompt.render(engine, request, family, tools=plan.template_tools, template=template)
        limits = self._fit_context(request.limits, len(rendered.tokens), request.context_length, engine)
        sampling = options.sampling_params(
            request.sampling,
            limits,
            constraint,
            seed=request.seed,
            logprobs=request.logprobs,
            max_tokens_limit=self.max_tokens_limit,
            extra_stops=_stop_texts(engine, limits.stop_token_ids),
        )
        handle = await engine.submit(
            GenerationRequest(
                prompt_tokens=rendered.tokens,
                sampling=sampling,
                request_id=request.request_id,
                reasoning_opened=rendered.reasoning_opened,
                # A schema-constrained answer cannot contain "</think>": when the template opened a think
                # block, splitting would file the whole JSON answer under reasoning, so it is not split.
                split_reasoning=constraint.json_schema is None,
                client_key=request.client_key,
            )
        )
        return LocalStream(
            handle,
            model=engine.info.name,
            tools=_ToolOutput(plan, family),
            show_reasoning=request.reasoning.show,
            include_stop=limits.include_stop,
            observer=self.observer,
            timings={"load": load},
        )

    async def complete(self, request: TextRequest) -> LocalStream:
        constraint = options.output_constraint(request.output, param="grammar")
        engine, manifest, load = await self._engine(request.model, request.keep_alive)
        request = prompt.text_with_defaults(request, manifest.defaults)
        if isinstance(request.prompt, str):
            tokens = engine.tokenize(request.prompt, add_special=True, parse_special=True)
        else:
            tokens = list(request.prompt)
        echo = (
            "" if not request.echo else request.prompt if isinstance(request.prompt, str) else engine.detokenize(tokens)
        )
        sampling = options.sampling_params(
            request.sampling,
            request.limits,
            constraint,
            seed=request.seed,
            logprobs=request.logprobs,
            max_tokens_limit=self.max_tokens_limit,
            extra_stops=_stop_texts(engine, request.limits.stop_token_ids),
        )
        handle = await engine.submit(
            GenerationRequest(
                prompt_tokens=tokens,
                sampling=sampling,
                request_id=request.request_id,
                split_reasoning=False,
                client_key=request.client_key,
            )
        )
        return LocalStream(
            handle,
            model=engine.info.name,
            tools=_no_tools(),
            include_stop=request.limits.include_stop,
            prefix=echo,
            observer=self.observer,
            timings={"load": load},
        )

    @staticmethod
    def _fit_context(limits: Limits, prompt_tokens: int, asked: int | None, engine: ModelEngine) -> Limits:
        """A client's smaller context (Ollama ``num_ctx``): the prompt and the answer must fit in it.
        A larger one than the server runs is ignored (the configured context is the ceiling)."""
        if asked is None or asked >= engine.info.context_length:
            return limits
        if prompt_tokens >= asked:
            raise ContextLengthExceededError(
                f"The prompt has {prompt_tokens} tokens, more than the requested context of {asked} (num_ctx).",
                param="num_ctx",
            )
        room = asked - prompt_tokens
        if limits.max_tokens is None or limits.max_tokens > room:
            return dataclasses.replace(limits, max_tokens=room)
        return limits

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> Embeddings:
        engine, _, load = await self._engine(request.model, request.keep_alive)
        limit = engine.info.context_length
        texts: list[str] = []
        prompt_tokens = 0
        for i, item in enumerate(request.inputs):
            text = item if isinstance(item, str) else engine.detokenize(list(item))
            tokens = engine.tokenize(text, add_special=True, parse_special=False)
            if len(tokens) > limit:
                if not request.truncate:
                    raise InvalidRequestError(
                        f"input[{i}] has {len(tokens)} tokens, more than the model's context of {limit}.",
                        param="input",
                    )
                text = engine.detokenize(tokens[:limit])
            prompt_tokens += min(len(tokens), limit)
            texts.append(text)
        vectors = [list(v) for v in await engine.embed(texts)] if texts else []
        if request.dimensions is not None:
            for vector in vectors:
                if request.dimensions > len(vector):
                    raise InvalidRequestError(
                        f"dimensions is {request.dimensions}, but this model's embeddings have {len(vector)}.",
                        param="dimensions",
                    )
            vectors = [normalized(v[: request.dimensions]) for v in vectors]
        elif request.normalize:
            vectors = [normalized(v) for v in vectors]
        return Embeddings(vectors, prompt_tokens, {"load": load})

    # --- models ----------------------------------------------------------------------------------

    def models(self) -> Sequence[ModelCard]:
        return [model_card(m) for m in self.host.catalog()]

    def model(self, name: str) -> ModelDetails:
        manifest = self.host.store.get(name)
        info = self.host.loaded_info(manifest.name)
        template = manifest.defaults.template or (info.chat_template if info else manifest.chat_template) or ""
        thinking = bool(info and info.supports_thinking) or "<think>" in template
        caps: list[Capability] = ["completion"]
        if "tools" in template or "tool_call" in template:
            caps.append("tools")
        if thinking:
            caps.append("thinking")
        metadata = dict(manifest.metadata) or {"general.architecture": manifest.architecture}
        return ModelDetails(
            card=model_card(manifest),
            chat_template=template,
            capabilities=tuple(caps),
            defaults=manifest.defaults,
            metadata=metadata,
            loaded_context_length=info.context_length if info else None,
        )


def model_card(manifest: Manifest) -> ModelCard:
    modified = manifest.modified if manifest.modified.tzinfo else manifest.modified.replace(tzinfo=UTC)
    return ModelCard(
        name=manifest.name,
        modified=modified.astimezone(UTC) if isinstance(modified, datetime) else modified,
        size=manifest.size,
        digest=manifest.sha256,
        architecture=manifest.architecture,
        parameter_count=manifest.parameter_count,
        quantization=manifest.quantization,
        context_length=manifest.context_length,
    )


def _stop_texts(engine: ModelEngine, token_ids: Sequence[int]) -> list[str]:
    """``stop_token_ids`` as stop strings: generation stops where the token's text appears (a control
    token without text - most end-of-turn tokens - already ends generation)."""
    out = []
    for token in token_ids:
        text = engine.detokenize([token])
        if text:
            out.append(text)
    return out


def normalized(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (an all-zero vector is returned as it is)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else [float(x) for x in vector]
