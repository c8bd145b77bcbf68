"""The Ollama API tests' setup: the shared scripted engine with this module's model, on the shared harness.

The engine is :class:`tests.support.fake_engine.FakeEngine` with this module's model (``INFO``) and a
default script (reasoning, text, Finished); ``delay`` slows each event down so tests can disconnect
mid-stream. The app is the real one (:func:`tests.asgi.openai_support.harness`): real model manager,
real store, real chat backend, so the Ollama tests run on the same harness as the OpenAI tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from haven.engine.protocol import Finished, ModelInfo, ReasoningDelta, TextDelta, Usage
from tests.asgi.openai_support import Harness, harness
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


MANIFEST: dict[str, Any] = {
    "size": 2_000_000,
    "sha256": "ab" * 32,
    "modified": datetime.fromtimestamp(1_700_000_000, UTC),
    "architecture": "qwen2",
    "parameter_count": 494_032_768,
    "quantization": "Q8_0",
    "chat_template": "{{ messages }}",
    "metadata": {"general.architecture": "qwen2", "qwen2.context_length": 2048},
}
"""The store's record of ``tiny:latest`` (its template gains tools and thinking once the model is loaded)."""


@asynccontextmanager
async def ollama_harness(tmp_path: Path, engine: FakeEngine | None = None, **settings: Any) -> AsyncIterator[Harness]:
    """The shared harness with one model, ``tiny:latest``, served by ``engine``."""
    settings.setdefault("max_tokens_limit", 1000)
    async with harness(
        tmp_path, engine=engine or FakeEngine(), names=("tiny:latest",), manifest=MANIFEST, **settings
    ) as h:
        yield h


def keep_alive_of(h: Harness, name: str = "tiny:latest") -> float:
    """The keep-alive the manager holds for a loaded model."""
    return h.app.state.model_manager._models[name].keep_alive
