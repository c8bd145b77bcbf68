"""Fakes for the Ollama API tests: the shared scripted engine set up for them, a store and a model manager.

The engine is :class:`tests.support.fake_engine.FakeEngine` with this module's model (``INFO``) and a
default script (reasoning, text, Finished); ``delay`` slows each event down so tests can disconnect
mid-stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from haven.engine.protocol import Finished, ModelInfo, ReasoningDelta, TextDelta, Usage
from haven.errors import ModelNotFoundError
from tests.support.fake_engine import FakeEngine as ScriptedEngine
from tests.support.fake_engine import Script, ScriptFn, fake_info

INFO = fake_info(
    "tiny:latest",
    context_length=4096,
    training_context_length=2048,
    vocab_size=1000,
    embedding_length=2,
    parameter_count=494_032_768,
    quantization="Q8_0",
    chat_template="{{ messages }} <tool_call>",
    sha256="ab" * 32,
    supports_thinking=True,
)

DEFAULT_SCRIPT: tuple[TextDelta | ReasoningDelta | Finished, ...] = (
    ReasoningDelta("Let me think."),
    TextDelta("Hello"),
    TextDelta(" world"),
    Finished("stop", Usage(prompt_tokens=7, completion_tokens=3), timings={"prefill": 0.5, "decode": 0.25}),
)


@dataclass
class FakeEngine(ScriptedEngine):
    """The shared scripted engine with this module's model: thinking, one slot, a fixed 3-4 embedding."""

    info: ModelInfo = INFO
    script: Script | ScriptFn = DEFAULT_SCRIPT
    parallel: int = 1
    embedding: Sequence[float] | None = (3.0, 4.0)


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
