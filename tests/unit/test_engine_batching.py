"""Continuous batching gives the same greedy tokens as one request at a time (tiny real model)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np

from haven.engine.llama_backend import LlamaBackend
from tests.support.engine_run import generate, tiny_engine

PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog",
    "你好，世界。今天天气很好，我们去公园散步吧。",
    "One two three four five six seven eight nine ten eleven twelve thirteen fourteen",
]


async def test_batched_greedy_equals_one_at_a_time(make_test_model: Callable[..., Path]) -> None:
    path = make_test_model()
    # A batch of 8 and prefill_chunk 5 split prompts over several steps, interleaved with decoding.
    engine = tiny_engine(path, parallel=4, batch_size=8, prefill_chunk=5, prefix_cache=False)
    try:
        prompts = [engine.tokenize(p) for p in PROMPTS]
        assert len({len(p) for p in prompts}) == 4
        alone = [await generate(engine, p, temperature=0, max_tokens=24) for p in prompts]
        together = await asyncio.gather(*(generate(engine, p, temperature=0, max_tokens=24) for p in prompts))
        for a, b in zip(alone, together, strict=True):
            assert a.finished.reason == b.finished.reason
            assert a.token_ids == b.token_ids
            assert a.text == b.text
            assert len(a.token_ids) == a.finished.usage.completion_tokens
        # The four requests really shared steps: far fewer steps than tokens sampled.
        assert all(r.finished.usage.completion_tokens > 0 for r in alone)
        timings = engine.step_timings()
        assert timings.sampled_tokens > timings.steps
        assert timings.batch_tokens <= 8 * timings.steps
    finally:
        await engine.close()


def test_batched_logits_match_single_sequence_logits(make_test_model: Callable[..., Path]) -> None:
    backend = LlamaBackend(make_test_model(), context_length=128, parallel=3, batch_size=128, threads=1)
    try:
        a = backend.tokenize("The quick brown fox")
        b = backend.tokenize("你好，世界")
        batch = backend.batch
        batch.clear()
        for i, tok in enumerate(a):
            batch.add(tok, i, 0, i == len(a) - 1)
        assert backend.decode(batch) == 0
        single = backend.logits_row(len(a) - 1).copy()
        batch.clear()
        for i, tok in enumerate(a):
            batch.add(tok, i, 1, i == len(a) - 1)
        for i, tok in enumerate(b):
            batch.add(tok, i, 2, i == len(b) - 1)
        assert backend.decode(batch) == 0
        together = backend.logits_row(len(a) - 1)
        assert np.max(np.abs(single - together)) < 1e-3
        assert backend.seq_pos_max(1) == len(a) - 1 and backend.seq_pos_max(2) == len(b) - 1
    finally:
        backend.close()
