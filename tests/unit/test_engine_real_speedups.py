"""Speculative decoding and quantized KV caches on the real default model (smollm2:135m).

Needs ``tests.support.real_model`` (the real-model tier, issue 12); skipped until it is present and when
no package registry can provide the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.errors import ModelLoadError
from tests.support.engine_run import generate, tiny_engine, wide_drafts

pytestmark = pytest.mark.real_model

EDITS = [
    "Correct the spelling in this text and write it out in full:\n\nTeh quick brown fox jumpd over the lazzy dog. "
    "Evry morning the fox runned to the rivver to drink watter.",
    "Add type hints to this function and return the whole function:\n\ndef scale(values, factor):\n"
    "    return [v * factor for v in values]",
    'Translate the quoted names into French but keep the rest: the "Blue House" is next to the "Old Bridge".',
]


@pytest.fixture(scope="module")
def model_path() -> Path:
    real_model = pytest.importorskip("tests.support.real_model")
    return Path(real_model.real_model_file())


async def test_greedy_output_is_identical_with_speculation(model_path: Path) -> None:
    """One request at a time: token for token, with every useful draft verified.

    Batched, llama.cpp's batched kernels already change this model's (Q4_1) greedy output against
    one-at-a-time decoding for some prompts, with or without speculation, and speculation changes the
    batch shapes; ``benchmarks/bench_speedups.py`` measures the share of identical outputs there."""
    engine = wide_drafts(tiny_engine(model_path, parallel=2, batch_size=256, context_length=1024, threads=2))
    try:
        accepted = 0
        for text in EDITS:
            prompt = engine.tokenize(engine.render_chat([{"role": "user", "content": text}]).text)
            plain = await generate(engine, prompt, temperature=0, max_tokens=32, speculative="off")
            spec = await generate(engine, prompt, temperature=0, max_tokens=32, speculative="ngram")
            assert spec.token_ids == plain.token_ids
            accepted += spec.finished.usage.accepted_tokens
        assert accepted > 5
    finally:
        await engine.close()


@pytest.mark.parametrize("kv", ["q8_0", "q4_0"])
async def test_quantized_kv_cache_loads_reports_its_size_and_generates(model_path: Path, kv: str) -> None:
    f16 = tiny_engine(model_path, context_length=512, threads=2)
    quant = tiny_engine(model_path, context_length=512, threads=2, kv_cache_type=kv)
    try:
        assert quant.stats().kv_cache_type == kv
        ratio = quant.stats().kv_bytes_per_slot / f16.stats().kv_bytes_per_slot
        assert ratio == pytest.approx(34 / 64 if kv == "q8_0" else 18 / 64)
        prompt = quant.tokenize(quant.render_chat([{"role": "user", "content": "What is the capital of France?"}]).text)
        result = await generate(quant, prompt, temperature=0, max_tokens=16)
        assert result.finished.usage.completion_tokens > 0 and result.text.strip()
    finally:
        await f16.close()
        await quant.close()


def test_quantized_v_without_flash_attention_is_a_startup_error(model_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="flash_attention to auto or on"):
        tiny_engine(model_path, context_length=512, threads=2, kv_cache_type="q8_0", flash_attention="off")
