"""Memory guard: refuse a context/parallel configuration that would not fit the budget.

The estimate is what llama.cpp will allocate on the CPU: the weights (the GGUF file size;
they are memory-mapped but every page is touched per token), the KV cache
(``n_layer × n_ctx_total × n_embd_kv × 2 (K and V) × 2 bytes (f16)``), and a compute-buffer
margin that grows with the batch size and the vocabulary (logits rows).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from haven.errors import MemoryBudgetError

KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default cache type is f16
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
) -> MemoryEstimate:
    kv = n_layer * context_length * parallel * n_embd_kv * 2 * KV_BYTES_PER_ELEMENT
    # Compute buffers: activations of one ubatch (≈ 16 × n_embd floats per token) plus the
    # f32 logits of every row that may request output, plus a fixed 64 MiB for graph metadata.
    compute = batch_size * (16 * n_embd + n_vocab) * 4 + 64 * _MiB
    return MemoryEstimate(weights=weights_bytes, kv_cache=kv, compute=compute)


def check_budget(est: MemoryEstimate, *, budget: int | None, context_length: int, parallel: int) -> None:
    """Raise MemoryBudgetError naming the numbers and what to lower when ``est`` exceeds ``budget``."""
    if budget is None or est.total <= budget:
        return
    raise MemoryBudgetError(
        f"Loading needs about {_fmt(est.total)} (weights {_fmt(est.weights)}, KV cache {_fmt(est.kv_cache)} "
        f"for {context_length} tokens × {parallel} slots, compute {_fmt(est.compute)}) but the memory budget is "
        f"{_fmt(budget)}; lower context_length or parallel, use a smaller quantization, "
        "or raise memory_budget_bytes."
    )
