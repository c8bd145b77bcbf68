"""The engine's own configuration: what loading and serving one model needs, and nothing else.

The server builds it from the app's settings (:func:`haven.server.engine_config.engine_config`); tests,
benchmarks and the audit build it directly. The engine never reads app settings or the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EngineConfig:
    context_length: int = 4096
    """Tokens of each sequence slot (the KV cache holds parallel × this)."""
    parallel: int = 4
    """Sequence slots (concurrent generations)."""
    batch_size: int = 512
    """Tokens per llama_decode; at least ``parallel``."""
    prefill_chunk: int = 512
    """Most prompt tokens a step adds in total while other requests decode."""
    itl_target_ms: float = 0.0
    """While others decode, a step adds only the prompt tokens that fit this step time, measured on this
    machine (at least 8, at most ``prefill_chunk``); 0: ``prefill_chunk`` alone bounds the step."""
    threads: int = 1
    gpu_layers: int = 0
    max_queue: int = 64
    prefix_cache: bool = True
    max_tokens_limit: int = 32768
    memory_budget_bytes: int | None = None
    """None: the default budget of this machine (see :mod:`haven.engine.memory`)."""
    state_dir: Path | None = None
    """Where saved KV prefixes live (one sub-directory per model hash); None: not saved."""
    verbose: bool = False
    """llama.cpp's own logging."""
    speculative: str = "off"
    """``off`` or ``ngram`` (prompt-lookup drafts verified in the same decode; see docs/engine.md)."""
    speculative_draft_max: int = 32
    """Most tokens drafted per sequence per step."""
    kv_cache_type: str = "f16"
    """``f16``, ``q8_0`` or ``q4_0`` for both K and V (a quantized V needs flash attention)."""
    flash_attention: str = "auto"
    """``auto``, ``on`` or ``off``."""
