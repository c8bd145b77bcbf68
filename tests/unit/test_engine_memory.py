"""Memory guard: the estimate's arithmetic and refusal before the KV cache is allocated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from haven.engine.engine import load_engine
from haven.engine.memory import (
    MemoryEstimate,
    check_budget,
    check_kv_cache_type,
    default_budget,
    estimate,
    kv_bytes_per_slot,
    total_ram_bytes,
)
from haven.errors import MemoryBudgetError, ModelLoadError
from haven.server.engine_config import engine_config
from haven.settings import Settings

MiB = 1024 * 1024


def test_kv_cache_estimate_for_qwen2_0_5b_shape() -> None:
    # Qwen2.5-0.5B: 24 layers, 2 KV heads × 64 dims; 4 slots × 4096 tokens in f16.
    est = estimate(
        weights_bytes=500 * MiB,
        n_layer=24,
        n_embd_kv=128,
        context_length=4096,
        parallel=4,
        batch_size=512,
        n_vocab=151_936,
        n_embd=896,
    )
    assert est.kv_cache == 24 * 4096 * 4 * 128 * 2 * 2 == 192 * MiB
    assert est.weights == 500 * MiB
    assert est.compute == 512 * (16 * 896 + 151_936) * 4 + 64 * MiB
    assert est.total == est.weights + est.kv_cache + est.compute


def test_over_budget_names_the_numbers_and_what_to_lower() -> None:
    est = MemoryEstimate(weights=500 * MiB, kv_cache=3072 * MiB, compute=100 * MiB)
    with pytest.raises(MemoryBudgetError) as info:
        check_budget(est, budget=2048 * MiB, context_length=32768, parallel=4)
    message = str(info.value)
    assert "3,672 MiB" in message and "KV cache 3,072 MiB" in message and "2,048 MiB" in message
    assert "32768 tokens × 4 slots" in message and "lower context_length or parallel" in message
    check_budget(est, budget=4096 * MiB, context_length=32768, parallel=4)  # fits: no error
    check_budget(est, budget=None, context_length=32768, parallel=4)  # unknown RAM: no guard


def test_default_budget_is_ninety_percent_of_ram() -> None:
    total = total_ram_bytes()
    assert total is not None and total > 0
    assert default_budget() == int(total * 0.9)


def test_loading_over_budget_fails_and_the_engine_is_not_created(make_test_model: Callable[..., Path]) -> None:
    settings = Settings(context_length=65536, parallel=8, threads=1, memory_budget_bytes=64 * MiB)
    with pytest.raises(MemoryBudgetError, match="lower context_length or parallel"):
        load_engine(str(make_test_model()), name="tiny", sha256="", config=engine_config(settings))


async def test_loading_within_budget_works(make_test_model: Callable[..., Path]) -> None:
    settings = Settings(context_length=256, parallel=2, threads=1, batch_size=64, memory_budget_bytes=1024 * MiB)
    engine = load_engine(str(make_test_model()), name="tiny", sha256="abc", config=engine_config(settings))
    try:
        assert engine.info.context_length == 256 and engine.info.sha256 == "abc"
        assert engine.stats().slots_total == 2
    finally:
        await engine.close()


def test_batch_smaller_than_parallel_is_refused(make_test_model: Callable[..., Path]) -> None:
    settings = Settings(context_length=256, parallel=8, batch_size=4, threads=1)
    with pytest.raises(ModelLoadError, match=r"batch_size \(4\) must be at least parallel \(8\)"):
        load_engine(str(make_test_model()), name="tiny", sha256="", config=engine_config(settings))


def test_missing_model_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_engine(str(tmp_path / "nope.gguf"), name="x", sha256="", config=engine_config(Settings(threads=1)))

        load_engine(str(tmp_path / "nope.gguf"), name="x", sha256="", config=engine_config(Settings(threads=1)))


def test_kv_cache_bytes_per_slot_by_type() -> None:
    # Qwen2.5-0.5B at 4096 tokens per slot: f16 48 MiB; q8_0 34/64 of it; q4_0 18/64.
    f16 = kv_bytes_per_slot(n_layer=24, n_embd_kv=128, context_length=4096)
    assert f16 == 48 * MiB
    assert kv_bytes_per_slot(n_layer=24, n_embd_kv=128, context_length=4096, kv_cache_type="q8_0") == 51 * MiB // 2
    assert kv_bytes_per_slot(n_layer=24, n_embd_kv=128, context_length=4096, kv_cache_type="q4_0") == 27 * MiB // 2
    shape: dict[str, Any] = {
        "weights_bytes": 0, "n_layer": 24, "n_embd_kv": 128, "context_length": 4096,
        "parallel": 4, "batch_size": 512, "n_vocab": 151_936, "n_embd": 896,
    }  # fmt: skip
    assert estimate(**shape, kv_cache_type="q8_0").kv_cache == 4 * 51 * MiB // 2
    # The same budget holds more slots: what a quantized cache is for.
    assert estimate(**shape).kv_cache / estimate(**shape, kv_cache_type="q4_0").kv_cache == pytest.approx(64 / 18)


def test_unsupported_kv_cache_combinations_are_refused_with_the_setting_to_change() -> None:
    check_kv_cache_type("q8_0", flash_attention="auto", head_dim_k=64, head_dim_v=64)
    check_kv_cache_type("f16", flash_attention="off", head_dim_k=16, head_dim_v=16)
    with pytest.raises(ModelLoadError, match="flash attention.*flash_attention to auto or on"):
        check_kv_cache_type("q4_0", flash_attention="off", head_dim_k=64, head_dim_v=64)
    with pytest.raises(ModelLoadError, match="heads have 16; use kv_cache_type f16"):
        check_kv_cache_type("q8_0", flash_attention="on", head_dim_k=16, head_dim_v=16)
    with pytest.raises(ModelLoadError, match="not supported"):
        check_kv_cache_type("q2_k", flash_attention="on", head_dim_k=64, head_dim_v=64)


def test_quantized_kv_cache_on_a_model_whose_heads_do_not_fit_fails_at_startup(
    make_test_model: Callable[..., Path],
) -> None:
    # The tiny factory model has 16-dimensional heads; llama.cpp's q8_0 blocks hold 32 elements.
    settings = Settings(context_length=256, parallel=2, threads=1, batch_size=64, kv_cache_type="q8_0")
    with pytest.raises(ModelLoadError, match="kv_cache_type q8_0 stores blocks of 32 elements"):
        load_engine(str(make_test_model()), name="tiny", sha256="", config=engine_config(settings))


async def test_engine_stats_report_the_kv_cache_type_and_bytes_per_slot(make_test_model: Callable[..., Path]) -> None:
    engine = load_engine(
        str(make_test_model()),
        name="tiny",
        sha256="",
        config=engine_config(Settings(context_length=256, parallel=2, threads=1, batch_size=64)),
    )
    try:
        stats = engine.stats()
        backend = engine.backend
        assert stats.kv_cache_type == "f16"
        assert stats.kv_bytes_per_slot == backend.n_layer * 256 * backend.n_embd_kv * 2 * 2
    finally:
        await engine.close()
