"""The engine's narrow configuration, built from the app's settings (the engine never sees Settings)."""

from __future__ import annotations

from haven.engine.config import EngineConfig
from haven.settings import Settings


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        context_length=settings.context_length,
        parallel=settings.parallel,
        batch_size=settings.batch_size,
        prefill_chunk=settings.prefill_chunk,
        itl_target_ms=settings.itl_target_ms,
        threads=settings.threads,
        gpu_layers=settings.gpu_layers,
        max_queue=settings.max_queue,
        prefix_cache=settings.prefix_cache,
        max_tokens_limit=settings.max_tokens_limit,
        memory_budget_bytes=settings.memory_budget_bytes,
        # Issue 10: these files hold prompt tokens (conversation text) in clear, so only when opted in.
        state_dir=settings.home / "kv-state" if settings.kv_state_files else None,
        verbose=settings.log_level == "debug",
        speculative=settings.speculative,
        speculative_draft_max=settings.speculative_draft_max,
        kv_cache_type=settings.kv_cache_type,
        flash_attention=settings.flash_attention,
    )
