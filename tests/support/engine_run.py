"""Helpers for engine tests: load a real LlamaEngine on a tiny model and collect a generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haven.engine.engine import LlamaEngine, load_engine
from haven.engine.protocol import (
    EngineEvent,
    Finished,
    GenerationRequest,
    ReasoningDelta,
    SamplingParams,
    TextDelta,
)
from haven.engine.speculative import StepCostModel
from haven.server.engine_config import engine_config
from haven.settings import Settings


def tiny_engine(path: Path, **overrides: Any) -> LlamaEngine:
    values: dict[str, Any] = {
        "context_length": 256,
        "parallel": 2,
        "batch_size": 128,
        "prefill_chunk": 64,
        "threads": 1,
        "max_queue": 8,
    }
    values.update(overrides)
    return load_engine(str(path), name="tiny", sha256="", config=engine_config(Settings(**values)))


class FixedCost(StepCostModel):
    """A step cost that is never refitted, so a test decides what drafting costs on its machine."""

    def observe(self, tokens: int, seconds: float) -> None:
        return None

    def untried(self, sizes: Sequence[int]) -> int | None:
        return None  # every width counts as measured: the widest useful one is always chosen


def fixed_cost(engine: LlamaEngine, *, base: float, per_token: float) -> LlamaEngine:
    engine.scheduler._cost = FixedCost(base=base, per_token=per_token)
    return engine


def wide_drafts(engine: LlamaEngine) -> LlamaEngine:
    """A memory-bound machine's step cost: every useful draft is verified in full, so tests exercise long
    accepted runs (on the tiny model the fitted cost makes the scheduler draft one token)."""
    return fixed_cost(engine, base=1.0, per_token=0.0001)


@dataclass
class Result:
    events: list[EngineEvent] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ReasoningDelta))

    @property
    def token_ids(self) -> list[int]:
        return [t for e in self.events if isinstance(e, TextDelta | ReasoningDelta) for t in e.token_ids]

    @property
    def finished(self) -> Finished:
        last = self.events[-1]
        assert isinstance(last, Finished), last
        return last


async def generate(
    engine: LlamaEngine,
    prompt: Sequence[int],
    *,
    reasoning_opened: bool = False,
    split_reasoning: bool = True,
    **sampling: Any,
) -> Result:
    request = GenerationRequest(
        list(prompt),
        SamplingParams(**sampling),
        reasoning_opened=reasoning_opened,
        split_reasoning=split_reasoning,
    )
    handle = await engine.submit(request)
    result = Result()
    async for event in handle.events():
        result.events.append(event)
    return result
