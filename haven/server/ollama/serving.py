"""Ollama API logic: turn validated ``/api`` requests into engine work and Ollama-shaped responses.

Knows the engine protocol and the model manager, not FastAPI: every function takes parsed request models
and returns dicts (or async iterators of dicts for NDJSON streaming), so it is testable with a fake engine.
Durations in responses are nanoseconds, as in Ollama (``total_duration``, ``load_duration``,
``prompt_eval_duration``, ``eval_duration``).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import jsonschema

from haven.engine.protocol import Finished, ModelEngine, ModelInfo, ReasoningDelta, SamplingParams, TextDelta
from haven.errors import EngineError, InvalidRequestError
from haven.server.generation import Generation, checked_max_tokens, normalized, start_chat, start_text
from haven.server.metrics import ServerMetrics
from haven.server.ollama.protocol import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    Format,
    GenerateRequest,
    Options,
    parse_keep_alive,
)
from haven.server.tool_calls import ToolCall, ToolCallStream, family_for, parse_tool_calls
from haven.settings import Settings

OLLAMA_COMPAT_VERSION = "0.12.0"
"""Reported by ``/api/version``: the Ollama API level Haven implements (clients gate features on it)."""


class ModelSource(Protocol):
    """What the Ollama routes need from the model manager (see :mod:`haven.server.model_manager`)."""

    def get(self, name: str, *, keep_alive: float | None = None) -> Any:
        """A loaded engine (or an awaitable of one); raises ModelNotFoundError for unknown names."""


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


# --- request → engine ----------------------------------------------------------------------------------


def sampling_from(options: Options, fmt: Format, settings: Settings) -> SamplingParams:
    """Ollama ``options`` + ``format`` → engine sampling parameters (defaults: the engine's)."""
    values: dict[str, Any] = {}
    for key in (
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    ):
        value = getattr(options, key)
        if value is not None:
            values[key] = value
    if options.repeat_last_n is not None:
        # Ollama: -1 = the whole context, 0 = disabled.
        values["repeat_last_n"] = settings.context_length if options.repeat_last_n == -1 else options.repeat_last_n
    if options.stop:
        values["stop"] = tuple(options.stop)
    if options.num_predict is not None and options.num_predict >= 0:
        values["max_tokens"] = checked_max_tokens(options.num_predict, settings, "options.num_predict")
    schema = format_schema(fmt)
    if schema is not None:
        values["json_schema"] = schema
    return SamplingParams(**values)


def format_schema(fmt: Format) -> dict[str, Any] | None:
    """``format``: "json" → any JSON object; a dict → that JSON schema (checked); ""/None → free text."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {}
    assert isinstance(fmt, dict)
    try:
        jsonschema.validators.validator_for(fmt).check_schema(fmt)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(f"format is not a valid JSON schema: {exc.message}.", param="format") from None
    except (RecursionError, OverflowError, re.error):  # issue 9/11: nested ~100 deep, or a pattern re refuses
        raise InvalidRequestError(
            "format is too deeply nested, or has a pattern Python cannot compile.", param="format"
        ) from None
    return fmt


def _engine_messages(request: ChatRequest, family: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in request.messages:
        if message.images:
            raise InvalidRequestError("this server's models do not accept images.", param="messages.images")
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            # Templates differ: DeepSeek's concatenates arguments as a string, Qwen/Llama serialise a dict.
            item["tool_calls"] = [
                {
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": json.dumps(call.function.arguments)
                        if family == "deepseek"
                        else call.function.arguments,
                    },
                }
                for call in message.tool_calls
            ]
        if message.tool_name:
            item["name"] = message.tool_name
        out.append(item)
    return out


@dataclass
class _Run:
    """One generation in flight plus what the response needs to report about it."""

    generation: Generation
    started: float
    load_seconds: float
    show_thinking: bool
    family: str = "qwen"
    tool_stream: ToolCallStream | None = None
    """Set when the request has tools: answer text streams, possible tool calls are held back."""
    finished: Finished | None = None
    content: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)


class OllamaService:
    """The ``/api`` operations over a model source (the server's ModelManager) and the settings."""

    def __init__(self, models: ModelSource, settings: Settings, metrics: ServerMetrics | None = None) -> None:
        self.models = models
        self.settings = settings
        self.metrics = metrics

    async def engine(self, name: str, keep_alive: Any) -> tuple[ModelEngine, float]:
        seconds = parse_keep_alive(keep_alive)
        if seconds == math.inf:
            seconds = -1.0  # the manager's spelling of "forever"
        start = time.perf_counter()
        engine = await _maybe_await(self.models.get(name, keep_alive=seconds))
        return engine, time.perf_counter() - start

    # --- generation ---------------------------------------------------------------------------------

    async def start_chat(self, request: ChatRequest) -> _Run:
        started = time.perf_counter()
        sampling = sampling_from(request.options, request.format, self.settings)
        engine, load = await self.engine(request.model, request.keep_alive)
        family = family_for(engine.info)
        generation = await start_chat(
            engine,
            _engine_messages(request, family),
            sampling,
            tools=request.tools or None,
            enable_thinking=request.think is not False,
            metrics=self.metrics,
        )
        run = _Run(generation, started, load, show_thinking=request.think is not False, family=family)
        if request.tools:
            run.tool_stream = ToolCallStream(family)
        return run

    async def start_generate(self, request: GenerateRequest) -> _Run:
        started = time.perf_counter()
        if request.template:
            raise InvalidRequestError("custom prompt templates are not supported; use raw=true.", param="template")
        if request.suffix:
            raise InvalidRequestError("fill-in-the-middle (suffix) is not supported.", param="suffix")
        if request.images:
            raise InvalidRequestError("this server's models do not accept images.", param="images")
        sampling = sampling_from(request.options, request.format, self.settings)
        engine, load = await self.engine(request.model, request.keep_alive)
        if request.raw:
            generation = await start_text(engine, request.prompt, sampling, metrics=self.metrics)
        else:
            messages = [{"role": "system", "content": request.system}] if request.system else []
            messages.append({"role": "user", "content": request.prompt})
            generation = await start_chat(
                engine, messages, sampling, enable_thinking=request.think is not False, metrics=self.metrics
            )
        return _Run(generation, started, load, show_thinking=request.think is not False)

    async def load_only(self, name: str, keep_alive: Any, *, unload: Any) -> dict[str, Any]:
        """Empty prompt/messages: Ollama preloads the model (or unloads it when keep_alive is 0)."""
        seconds = parse_keep_alive(keep_alive)
        if seconds == 0:
            await _maybe_await(unload(name))
            reason = "unload"
        else:
            await self.engine(name, keep_alive)
            reason = "load"
        return {"model": name, "created_at": now_rfc3339(), "done": True, "done_reason": reason}

    async def chunks(self, run: _Run, model: str, *, kind: str) -> AsyncIterator[dict[str, Any]]:
        """Stream of Ollama chunks for a run (``kind`` "chat" or "generate"); cancels the run if dropped."""
        async with contextlib.aclosing(self._pieces(run, stream=True)) as pieces:
            async for content, thinking in pieces:
                yield _chunk(model, kind, content=content, thinking=thinking)
        if run.finished is not None:
            yield self.final_chunk(run, model, kind, include_text=False)

    async def complete(self, run: _Run, model: str, *, kind: str) -> dict[str, Any]:
        """Run to the end and return one response (``stream: false``)."""
        async with contextlib.aclosing(self._pieces(run, stream=False)) as pieces:
            async for _ in pieces:
                pass
        return self.final_chunk(run, model, kind, include_text=True)

    async def _pieces(self, run: _Run, *, stream: bool) -> AsyncGenerator[tuple[str, str | None], None]:
        """Runs the generation, collecting its answer and thinking in ``run``. With ``stream``, yields the
        (content, thinking) to send now; without, yields nothing (no per-token chunks or tool-call
        filtering: the whole answer is parsed once at the end). Cancels the run if dropped."""
        try:
            async for event in run.generation.events():
                if isinstance(event, TextDelta):
                    if event.text:
                        run.content.append(event.text)
                        if stream:
                            text = run.tool_stream.feed(event.text) if run.tool_stream else event.text
                            if text:
                                yield text, None
                elif isinstance(event, ReasoningDelta):
                    if event.text and run.show_thinking:
                        run.thinking.append(event.text)
                        if stream:
                            yield "", event.text
                elif isinstance(event, Finished):
                    run.finished = event
                    break
        finally:
            if run.finished is None:
                # Client went away (or the server is shutting down): free the slot now rather than when
                # the abandoned event iterator is garbage-collected (cancel() is shielded).
                await run.generation.cancel()
        if run.finished is not None:
            if run.finished.reason == "error":
                raise EngineError(run.finished.error or "generation failed")
            if run.finished.reason == "cancelled":  # e.g. the server is shutting down
                raise EngineError("the generation was cancelled before it finished.")

    def final_chunk(self, run: _Run, model: str, kind: str, *, include_text: bool) -> dict[str, Any]:
        """The ``done`` chunk: statistics, plus the whole answer when not streaming, plus any tool calls."""
        finished = run.finished
        assert finished is not None
        calls: list[ToolCall] = []
        if include_text:
            content, thinking = "".join(run.content), "".join(run.thinking)
            if run.tool_stream is not None:
                content, calls = parse_tool_calls(content, run.family)
        else:
            # Streaming: text was sent as it came; only what the tool-call filter held back is left.
            content, thinking = "", ""
            if run.tool_stream is not None:
                content, calls = run.tool_stream.finish()
        chunk = _chunk(model, kind, content=content, thinking=thinking or None)
        if calls:
            chunk["message"]["tool_calls"] = [
                {"function": {"index": i, "name": c.name, "arguments": c.arguments_dict}} for i, c in enumerate(calls)
            ]
        timings = finished.timings
        chunk.update(
            done=True,
            done_reason="length" if finished.reason == "length" else "stop",
            total_duration=ns(time.perf_counter() - run.started),
            load_duration=ns(run.load_seconds),
            prompt_eval_count=finished.usage.prompt_tokens,
            prompt_eval_duration=ns(timings.get("prefill", 0.0)),
            eval_count=finished.usage.completion_tokens,
            eval_duration=ns(timings.get("decode", 0.0)),
        )
        return chunk

    # --- embeddings ---------------------------------------------------------------------------------

    async def embed(self, request: EmbedRequest) -> dict[str, Any]:
        started = time.perf_counter()
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        engine, load = await self.engine(request.model, request.keep_alive)
        prompt_tokens = self._check_lengths(engine, texts, truncate=request.truncate)
        vectors = await engine.embed(texts) if texts else []
        if request.dimensions is not None:
            vectors = [v[: request.dimensions] for v in vectors]
        return {
            "model": request.model,
            "embeddings": [normalized(v) for v in vectors],
            "total_duration": ns(time.perf_counter() - started),
            "load_duration": ns(load),
            "prompt_eval_count": prompt_tokens,
        }

    async def embeddings(self, request: EmbeddingsRequest) -> dict[str, Any]:
        engine, _ = await self.engine(request.model, request.keep_alive)
        if not request.prompt:
            return {"embedding": []}
        self._check_lengths(engine, [request.prompt], truncate=False)
        return {"embedding": list((await engine.embed([request.prompt]))[0])}

    def _check_lengths(self, engine: ModelEngine, texts: Sequence[str], *, truncate: bool) -> int:
        total = 0
        limit = engine.info.context_length
        for index, text in enumerate(texts):
            count = len(engine.tokenize(text, add_special=True, parse_special=False))
            if count > limit and not truncate:
                raise InvalidRequestError(
                    f"input {index} has {count} tokens, more than the model's context of {limit}.", param="input"
                )
            total += min(count, limit)
        return total


def _chunk(model: str, kind: str, *, content: str = "", thinking: str | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if thinking:
            message["thinking"] = thinking
        chunk["message"] = message
    else:
        chunk["response"] = content
        if thinking:
            chunk["thinking"] = thinking
    chunk["done"] = False
    return chunk


# --- model metadata ------------------------------------------------------------------------------------


def parameter_size(count: int) -> str:
    """Ollama's human size: 494032768 → "494.03M", 7_615_616_512 → "7.6B"."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    return f"{count / 1e3:.2f}K" if count >= 1000 else str(count)


def details_from(architecture: str, parameter_count: int, quantization: str) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": architecture,
        "families": [architecture],
        "parameter_size": parameter_size(parameter_count),
        "quantization_level": quantization,
    }


def capabilities_of(template: str | None, supports_thinking: bool = False) -> list[str]:
    """Ollama's ``capabilities``: what the chat template (and the loaded model) can do."""
    caps = ["completion"]
    template = template or ""
    if "tools" in template or "tool_call" in template:
        caps.append("tools")
    if supports_thinking or "<think>" in template:
        caps.append("thinking")
    return caps


def model_info_block(info: ModelInfo) -> dict[str, Any]:
    """``model_info`` of ``/api/show``, keyed like Ollama's GGUF metadata view."""
    arch = info.architecture
    return {
        "general.architecture": arch,
        "general.parameter_count": info.parameter_count,
        f"{arch}.context_length": info.training_context_length,
        f"{arch}.embedding_length": info.embedding_length,
        "tokenizer.ggml.vocab_size": info.vocab_size,
    }


def ndjson(chunk: Mapping[str, Any]) -> bytes:
    return (json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# --- the model store (tags, show, delete, pull) --------------------------------------------------------


def _field(obj: Any, *names: str, default: Any = None) -> Any:
    """First present attribute (or mapping key) of a store entry; the store's records are read, not copied."""
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def iso_time(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value or now_rfc3339())


def tag_entry(entry: Any) -> dict[str, Any]:
    """One model of ``/api/tags`` from a store entry."""
    name = str(_field(entry, "name"))
    digest = str(_field(entry, "sha256", "digest", default=""))
    return {
        "name": name,
        "model": name,
        "modified_at": iso_time(_field(entry, "modified", "modified_at", "created_at")),
        "size": int(_field(entry, "size_bytes", "size", default=0) or 0),
        "digest": digest.removeprefix("sha256:"),
        "details": details_from(
            str(_field(entry, "architecture", default="") or ""),
            int(_field(entry, "parameter_count", default=0) or 0),
            str(_field(entry, "quantization", "file_type", default="") or ""),
        ),
    }


async def list_models(store: Any) -> list[dict[str, Any]]:
    entries = await _maybe_await(_field(store, "list", "list_models")())
    return [tag_entry(e) for e in entries]


def loaded_info(manager: Any, canonical: str) -> ModelInfo | None:
    for loaded in manager.loaded():
        if loaded.name == canonical:
            info: ModelInfo = loaded.info
            return info
    return None


async def show_model(store: Any, manager: Any, name: str, info: ModelInfo | None = None) -> dict[str, Any]:
    """``/api/show``: the store's manifest (its GGUF metadata is Ollama's ``model_info``), refined by the
    loaded model's info when the model is loaded."""
    entry = await _maybe_await(store.get(name))
    tag = tag_entry(entry)
    if info is None:
        info = loaded_info(manager, tag["name"])
    template = info.chat_template if info else _field(entry, "chat_template", default="")
    metadata = _field(entry, "metadata", default=None)
    if isinstance(metadata, Mapping) and metadata:
        model_info = dict(metadata)
    elif info is not None:
        model_info = model_info_block(info)
    else:
        model_info = {"general.architecture": tag["details"]["family"]}
    return {
        "modelfile": f"# Modelfile generated by Haven\nFROM {tag['name']}\n",
        "parameters": "",
        "template": template or "",
        "details": tag["details"],
        "modified_at": tag["modified_at"],
        "model_info": model_info,
        "capabilities": capabilities_of(template, info.supports_thinking if info else False),
    }


async def pull_events(pull: Any, store: Any, ref: str, settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """Runs ``pull(store, ref, settings, progress)`` in a worker thread and yields its progress as Ollama's
    lines (``{"status"}``, plus ``total``/``completed`` while bytes move); the pull's own exception is
    raised after the lines that preceded it."""
    import asyncio

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()

    def progress(status: str, completed: int | None = None, total: int | None = None, **_: Any) -> None:
        event: dict[str, Any] = {"status": status}
        if total is not None:
            event.update(total=int(total), completed=int(completed or 0))
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def work() -> None:
        try:
            pull(store, ref, settings, progress)
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except BaseException as exc:  # handed to the event loop and re-raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    task = loop.run_in_executor(None, work)
    while True:
        item = await queue.get()
        if item is None:
            break
        if isinstance(item, BaseException):
            await task
            raise item
        yield item
    await task


async def delete_model(store: Any, manager: Any, name: str) -> None:
    """Unloads the model if it is loaded, then removes it from the store (404 if unknown)."""
    manifest = await _maybe_await(store.get(name))  # raises ModelNotFoundError before anything changes
    canonical = str(_field(manifest, "name", default=name))  # "qwen" is loaded as "qwen:latest"
    if any(loaded.name == canonical for loaded in manager.loaded()):
        await _maybe_await(manager.unload(canonical))
    await _maybe_await(_field(store, "remove", "delete")(canonical))
