"""Fakes for the Ollama API tests: a scripted engine, a store and a model manager with the server's shapes.

The engine replays ``script`` (reasoning, text, Finished) for every submit and records what it was asked;
``delay`` slows each event down so tests can disconnect mid-stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from haven.engine.protocol import (
    ChatPrompt,
    EngineEvent,
    EngineStats,
    Finished,
    GenerationRequest,
    ModelInfo,
    ReasoningDelta,
    TextDelta,
    Usage,
)
from haven.errors import ModelNotFoundError

INFO = ModelInfo(
    name="tiny:latest",
    architecture="qwen2",
    context_length=64,
    training_context_length=2048,
    vocab_size=1000,
    embedding_length=2,
    parameter_count=494_032_768,
    quantization="Q8_0",
    chat_template="{{ messages }} <tool_call>",
    bos_token=None,
    eos_token="<|im_end|>",
    sha256="ab" * 32,
    supports_thinking=True,
)

DEFAULT_SCRIPT: tuple[EngineEvent, ...] = (
    ReasoningDelta("Let me think."),
    TextDelta("Hello"),
    TextDelta(" world"),
    Finished("stop", Usage(prompt_tokens=7, completion_tokens=3), timings={"prefill": 0.5, "decode": 0.25}),
)


class FakeHandle:
    def __init__(self, script: Sequence[EngineEvent], delay: float) -> None:
        self.script = script
        self.delay = delay
        self.cancelled = False

    @property
    def request_id(self) -> str:
        return "req-1"

    async def events(self) -> AsyncIterator[EngineEvent]:
        for event in self.script:
            if self.cancelled:
                return
            await asyncio.sleep(self.delay)
            yield event

    async def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeEngine:
    info: ModelInfo = INFO
    script: Sequence[EngineEvent] = DEFAULT_SCRIPT
    delay: float = 0.0
    submit_error: Exception | None = None
    submitted: list[GenerationRequest] = field(default_factory=list)
    rendered: list[dict[str, Any]] = field(default_factory=list)
    handles: list[FakeHandle] = field(default_factory=list)

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return "".join(chr(t) for t in tokens)

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
    ) -> ChatPrompt:
        self.rendered.append({"messages": list(messages), "tools": tools, "enable_thinking": enable_thinking})
        return ChatPrompt("".join(f"{m['role']}:{m['content']}\n" for m in messages), reasoning_opened=enable_thinking)

    async def submit(self, request: GenerationRequest) -> FakeHandle:
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append(request)
        handle = FakeHandle(self.script, self.delay)
        self.handles.append(handle)
        return handle

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[3.0, 4.0] for _ in texts]

    def stats(self) -> EngineStats:
        return EngineStats(slots_total=1, slots_in_use=0, queue_depth=0)

    async def close(self) -> None:
        pass


@dataclass
class Loaded:
    name: str
    info: ModelInfo
    size_bytes: int
    expires_at: float | None
    loaded_at: float


@dataclass
class FakeStore:
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def list(self) -> list[dict[str, Any]]:
        return list(self.entries.values())

    def get(self, name: str) -> dict[str, Any]:
        canonical = name if ":" in name else f"{name}:latest"  # as the real store resolves names
        if canonical not in self.entries:
            raise ModelNotFoundError(f"model '{name}' not found; `haven models list` shows the local models.")
        return self.entries[canonical]

    def remove(self, name: str) -> None:
        canonical = self.get(name)["name"]
        del self.entries[canonical]
        self.removed.append(canonical)


@dataclass
class FakeManager:
    engine: FakeEngine
    store: FakeStore
    keep_alives: list[float | None] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    is_loaded: bool = False

    async def get(self, name: str, *, keep_alive: float | None = None) -> FakeEngine:
        self.store.get(name)
        self.keep_alives.append(keep_alive)
        self.is_loaded = True
        return self.engine

    def loaded(self) -> list[Loaded]:
        return [Loaded("tiny:latest", INFO, 123_456_789, 1_900_000_000.0, 0.0)] if self.is_loaded else []

    async def unload(self, name: str) -> None:
        self.unloaded.append(name)
        self.is_loaded = False


def make_manager(engine: FakeEngine | None = None) -> FakeManager:
    """A manager whose store holds one model, ``tiny:latest``, served by ``engine``."""
    store = FakeStore(
        {
            "tiny:latest": {
                "name": "tiny:latest",
                "size_bytes": 2_000_000,
                "sha256": "ab" * 32,
                "modified_at": 1_700_000_000,
                "architecture": "qwen2",
                "parameter_count": 494_032_768,
                "quantization": "Q8_0",
            }
        }
    )
    return FakeManager(engine or FakeEngine(), store)
