"""Memory guard: refuse a context/parallel configuration that would not fit the budget.

The estimate is what llama.cpp will allocate on the CPU: the weights (the GGUF file size;
they are memory-mapped but every page is touched per token), the KV cache
(``n_layer × n_ctx_total × n_embd_kv × 2 (K and V) × bytes per element`` of the cache type:
2 for f16, 34/32 for q8_0, 18/32 for q4_0 — ggml's block sizes), and a compute-buffer margin
that grows with the batch size and the vocabulary (logits rows).

:func:`check_kv_cache_type` refuses, before llama.cpp sees them, the cache types a model cannot
use: a quantized cache needs each head's size to be a multiple of the 32-element block, and a
quantized V cache needs flash attention (llama.cpp's own rule; it would fail the context).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from haven.errors import MemoryBudgetError, ModelLoadError

KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default cache type is f16
KV_CACHE_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
"""Bytes per cached element: ggml's q8_0 block is 32 int8 + one f16 scale, q4_0 32 nibbles + one scale."""
KV_BLOCK_SIZE = {"f16": 1, "q8_0": 32, "q4_0": 32}
_MiB = 1024 * 1024


def _fmt(n: int) -> str:
    return f"{n / _MiB:,.0f} MiB" if n < 10 * 1024 * _MiB else f"{n / (1024 * _MiB):,.1f} GiB"


def total_ram_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None


def default_budget() -> int | None:
    """90 % of physical RAM (None when it cannot be read: no guard)."""
    total = total_ram_bytes()
    return None if total is None else int(total * 0.9)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute


def estimate(
    *,
    weights_bytes: int,
    n_layer: int,
    n_embd_kv: int,
    context_length: int,
    parallel: int,
    batch_size: int,
    n_vocab: int,
    n_embd: int,
    kv_cache_type: str = "f16",
) -> MemoryEstimate:
    kv = (
        kv_bytes_per_slot(
            n_layer=n_layer, n_embd_kv=n_embd_kv, context_length=context_length, kv_cache_type=kv_cache_type
        )
        * parallel
    )
    # Compute buffers: activations of one ubatch (≈ 16 × n_embd floats per token) plus the
    # f32 logits of every row that may request output, plus a fixed 64 MiB for graph metadata.
    compute = batch_size * (16 * n_embd + n_vocab) * 4 + 64 * _MiB
    return MemoryEstimate(weights=weights_bytes, kv_cache=kv, compute=compute)


def kv_bytes_per_slot(*, n_layer: int, n_embd_kv: int, context_length: int, kv_cache_type: str = "f16") -> int:
    """KV cache bytes of one slot holding ``context_length`` tokens (K and V, every layer)."""
    return int(n_layer * context_length * n_embd_kv * 2 * KV_CACHE_BYTES_PER_ELEMENT[kv_cache_type])


def check_kv_cache_type(kv_cache_type: str, *, flash_attention: str, head_dim_k: int, head_dim_v: int) -> None:
    """Raise ModelLoadError (naming the setting to change) for a cache type this model cannot use."""
    if kv_cache_type not in KV_CACHE_BYTES_PER_ELEMENT:
        raise ModelLoadError(
            f"kv_cache_type {kv_cache_type!r} is not supported; use one of {', '.join(KV_CACHE_BYTES_PER_ELEMENT)}."
        )
    block = KV_BLOCK_SIZE[kv_cache_type]
    for name, dim in (("key", head_dim_k), ("value", head_dim_v)):
        if dim % block:
            raise ModelLoadError(
                f"kv_cache_type {kv_cache_type} stores blocks of {block} elements, but this model's attention "
                f"{name} heads have {dim}; use kv_cache_type f16 for this model."
            )
    if block > 1 and flash_attention == "off":
        raise ModelLoadError(
            f"kv_cache_type {kv_cache_type} quantizes the V cache, which llama.cpp supports only with flash "
            "attention; set flash_attention to auto or on, or use kv_cache_type f16."
        )


def check_budget(est: MemoryEstimate, *, budget: int | None, context_length: int, parallel: int) -> None:
    """Raise MemoryBudgetError naming the numbers and what to lower when ``est`` exceeds ``budget``."""
    if budget is None or est.total <= budget:
        return
    raise MemoryBudgetError(
        f"Loading needs about {_fmt(est.total)} (weights {_fmt(est.weights)}, KV cache {_fmt(est.kv_cache)} "
        f"for {context_length} tokens × {parallel} slots, compute {_fmt(est.compute)}) but the memory budget is "
        f"{_fmt(budget)}; lower context_length or parallel, use a smaller quantization or a quantized KV cache "
        "(kv_cache_type q8_0 halves it), or raise memory_budget_bytes."
    )
