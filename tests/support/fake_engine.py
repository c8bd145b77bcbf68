"""A scripted :class:`~haven.engine.protocol.ModelEngine` (plus loader and store) for server tests.

``FakeEngine`` replays a script of events for every submitted request, honours ``parallel``/``max_queue``
(raising ``QueueFullError`` like the real scheduler), can hold every generation behind a ``gate`` (so a
test can fill the slots or disconnect mid-stream), and records what it was asked (``submitted``,
``handles``, ``rendered``, ``cancelled``, ``embedded``). A model whose info ``supports_thinking`` gets a
generation prompt that opens ``<think>`` when thinking is enabled, like DeepSeek-R1's template.
``FakeLoader`` is an ``EngineLoader`` that builds FakeEngines (or fails), ``FakeStore`` the real model
store with models added without a GGUF (the fake loader never reads blobs).
No llama.cpp, no threads of its own: everything runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haven.engine.chat_template import ChatTemplate, prompt_opens_reasoning
from haven.engine.chat_tokenize import check_encodable, check_limits, check_text_limit, prompt_limits
from haven.engine.protocol import (
    ChatPrompt,
    ChatTokens,
    EngineEvent,
    EngineStats,
    Finished,
    GenerationRequest,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    Usage,
)
from haven.errors import ContextLengthExceededError, ModelLoadError, QueueFullError
from haven.models.manifest import Manifest
from haven.models.names import parse_name
from haven.models.store import ModelStore

QWEN_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}<tool_call>"


def fake_info(name: str = "tiny:latest", **overrides: Any) -> ModelInfo:
    values: dict[str, Any] = {
        "name": name,
        "architecture": "qwen2",
        "context_length": 4096,
        "training_context_length": 32768,
        "vocab_size": 256,
        "embedding_length": 4,
        "parameter_count": 1_000_000,
        "quantization": "F32",
        "chat_template": QWEN_TEMPLATE,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "sha256": hashlib.sha256(name.encode()).hexdigest(),
        "supports_thinking": False,
    }
    values.update(overrides)
    return ModelInfo(**values)


Script = Sequence[TextDelta | ReasoningDelta | Finished]
ScriptFn = Callable[[GenerationRequest], Script]


class FakeHandle:
    """One scripted generation; the slot counts as busy until the script ends or it is cancelled."""

    def __init__(self, engine: FakeEngine, request: GenerationRequest, script: Script) -> None:
        self.engine = engine
        self.request = request
        self.script = script
        self.cancelled = False
        self.finished = False
        self._id = request.request_id or f"fake-{len(engine.submitted)}"

    @property
    def request_id(self) -> str:
        return self._id

    async def events(self) -> AsyncIterator[EngineEvent]:
        completion = 0
        try:
            if self.engine.gate is not None:
                await self.engine.gate.wait()
            for event in self.script:
                if self.cancelled:
                    yield Finished("cancelled", Usage(len(self.request.prompt_tokens), completion))
                    return
                if self.engine.delay:
                    await asyncio.sleep(self.engine.delay)
                if isinstance(event, Finished):
                    yield event
                    return
                completion += max(1, len(event.token_ids))
                if isinstance(event, TextDelta) and self.request.sampling.logprobs is not None and not event.logprobs:
                    top = tuple((event.text, -0.5 - i) for i in range(self.request.sampling.logprobs))
                    event = replace(event, logprobs=(TokenLogprob(event.text, -0.5, tuple(event.text.encode()), top),))
                yield event
            yield Finished(
                "stop",
                Usage(len(self.request.prompt_tokens), completion, cached_tokens=self.engine.cached_tokens),
                timings={"queued": 0.0, "prefill": 0.001, "decode": 0.002},
            )
        finally:
            self._release()

    def _release(self) -> None:
        if not self.finished:
            self.finished = True
            self.engine.active.discard(self)

    async def cancel(self) -> None:
        self.cancelled = True
        self.engine.cancelled.append(self._id)
        self._release()


@dataclass
class FakeEngine:
    """Scripted engine. ``script`` (a sequence, or a function of the request) is replayed per submit."""

    info: ModelInfo = field(default_factory=fake_info)
    script: Script | ScriptFn = (TextDelta("Hello"), TextDelta(" world"))
    delay: float = 0.0
    parallel: int = 4
    max_queue: int = 64
    gate: asyncio.Event | None = None
    submit_error: Exception | None = None
    cached_tokens: int = 0
    embedding: Sequence[float] | None = None
    """Returned for every text by :meth:`embed` when set; otherwise a vector derived from the text's hash."""
    submitted: list[GenerationRequest] = field(default_factory=list)
    handles: list[FakeHandle] = field(default_factory=list)
    rendered: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    embedded: list[list[str]] = field(default_factory=list)
    active: set[FakeHandle] = field(default_factory=set)
    closed: bool = False

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        # One token per UTF-8 byte: deterministic and easy to count in assertions.
        return list(text.encode())

    def detokenize(self, tokens: Sequence[int]) -> str:
        return bytes(tokens).decode(errors="replace")

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatPrompt:
        self.rendered.append(
            {
                "messages": list(messages),
                "tools": tools,
                "enable_thinking": enable_thinking,
                "template_kwargs": dict(template_kwargs or {}),
            }
        )
        text = "".join(f"<|{m['role']}|>{m.get('content') or ''}\n" for m in messages)
        opened = add_generation_prompt and enable_thinking and self.info.supports_thinking
        return ChatPrompt(text + ("<|assistant|>" if add_generation_prompt else ""), reasoning_opened=opened)

    async def tokenize_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template: str | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatTokens:
        # The real engine's limits and checks (they are pure functions), then the fake rendering.
        check_limits(messages, tools, prompt_limits(self.info.context_length), self.info.context_length)
        if template is not None:  # a model default's template: rendered by the real sandboxed renderer
            renderer = ChatTemplate(template, bos_token=self.info.bos_token, eos_token=self.info.eos_token)
            text = renderer.render(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                   enable_thinking=enable_thinking, **dict(template_kwargs or {}))
            prompt = ChatPrompt(text, add_generation_prompt and prompt_opens_reasoning(text))
        else:
            prompt = self.render_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt,
                                      enable_thinking=enable_thinking, template_kwargs=template_kwargs)
        check_encodable(prompt.text)
        return ChatTokens(tuple(self.tokenize(prompt.text)), prompt.text, prompt.reasoning_opened)

    async def tokenize_text(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        check_text_limit(text, prompt_limits(self.info.context_length), self.info.context_length)
        return self.tokenize(text)

    async def submit(self, request: GenerationRequest) -> FakeHandle:
        if self.submit_error is not None:
            raise self.submit_error
        if len(request.prompt_tokens) > self.info.context_length:
            raise ContextLengthExceededError(
                f"the prompt has {len(request.prompt_tokens)} tokens, more than the context of "
                f"{self.info.context_length}."
            )
        if len(self.active) >= self.parallel + self.max_queue:
            raise QueueFullError(f"the queue of model '{self.info.name}' is full; retry shortly.", retry_after=2.0)
        self.submitted.append(request)
        script = self.script(request) if callable(self.script) else self.script
        handle = FakeHandle(self, request, script)
        self.active.add(handle)
        self.handles.append(handle)
        return handle

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.append(list(texts))
        if self.embedding is not None:
            return [list(self.embedding) for _ in texts]
        out = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            out.append([(b - 128) / 128 for b in digest[: self.info.embedding_length]])
        return out

    def stats(self) -> EngineStats:
        in_use = min(len(self.active), self.parallel)
        return EngineStats(
            slots_total=self.parallel,
            slots_in_use=in_use,
            queue_depth=len(self.active) - in_use,
            cached_tokens_total=self.cached_tokens,
        )

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeLoader:
    """An ``EngineLoader``: builds a FakeEngine per load (``make``), or raises ``error``; records calls."""

    make: Callable[[str], FakeEngine] = field(default=lambda name: FakeEngine(info=fake_info(name)))
    error: Exception | None = None
    load_seconds: float = 0.0
    calls: list[str] = field(default_factory=list)
    engines: dict[str, FakeEngine] = field(default_factory=dict)

    def __call__(self, path: str, *, name: str, sha256: str) -> FakeEngine:
        self.calls.append(name)
        if self.load_seconds:
            time.sleep(self.load_seconds)  # the manager calls loaders in a worker thread
        if self.error is not None:
            raise self.error
        engine = self.make(name)
        self.engines[name] = engine
        return engine


def fake_manifest(name: str, **overrides: Any) -> Manifest:
    """A real :class:`Manifest` for a model that exists only as a fake blob."""
    values: dict[str, Any] = {
        "name": name,
        "sha256": hashlib.sha256(name.encode()).hexdigest(),
        "size": 1024,
        "architecture": "qwen2",
        "parameter_count": 1_000_000,
        "quantization": "F32",
        "context_length": 4096,
        "embedding_length": 4,
        "chat_template": QWEN_TEMPLATE,
        "template_safe": True,
        "template_warning": None,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "special_tokens": {},
        "modified": datetime(2026, 1, 2, tzinfo=UTC),
        "source": "test",
    }
    values.update(overrides)
    return Manifest(**values)


class FakeStore(ModelStore):
    """The real model store (same files, same contract) with ``add`` for models that need no GGUF: the
    fake loader never reads the blob (so no trial load either: header-only test files are fine).
    ``unreadable`` makes reads fail like a broken disk."""

    def __init__(self, root: Path, names: Sequence[str] = ("tiny:latest",)) -> None:
        super().__init__(root, trial_load_timeout=None)
        self.unreadable = False
        for name in names:
            self.add(name)

    def add(self, name: str, **overrides: Any) -> Manifest:
        manifest = fake_manifest(str(parse_name(name)), **overrides)
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.blob_path(manifest).write_bytes(b"GGUF" + bytes(1020))
        with self._locked():
            self._write_manifest(parse_name(name), manifest)
        return manifest

    def get(self, name: str) -> Manifest:
        if self.unreadable:
            raise OSError("store unreadable")
        return super().get(name)

    def list(self) -> list[Manifest]:
        if self.unreadable:
            raise OSError("store unreadable")
        return super().list()


def failing_loader(message: str = "model 'tiny:latest' could not be loaded: out of memory.") -> FakeLoader:
    return FakeLoader(error=ModelLoadError(message))
