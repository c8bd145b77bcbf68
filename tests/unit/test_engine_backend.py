"""The llama.cpp wrapper's choices about this machine: which weight buffers a build may use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from haven.engine.llama_backend import Batch, LlamaBackend, extra_buffer_types_allowed, extra_buffer_types_safe

AMX_BUILD = (
    "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
AVX2_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | OPENMP = 1 | REPACK = 1 | "


def test_a_build_with_amx_kernels_keeps_weights_in_plain_cpu_buffers() -> None:
    assert extra_buffer_types_safe(AMX_BUILD) is False


def test_a_build_without_amx_keeps_weight_repacking() -> None:
    assert extra_buffer_types_safe(AVX2_BUILD) is True


@pytest.mark.parametrize("quant", ["q8_0", "q4_k"])
def test_a_quantized_model_decodes_with_the_buffers_this_build_allows(
    make_test_model: Callable[..., Path], quant: str
) -> None:
    # On a CPU with AMX, the AMX weight buffer segfaulted on the first decode of any quantized model.
    backend = LlamaBackend(make_test_model(quant=quant), context_length=128, parallel=1, batch_size=32, threads=1)
    try:
        assert backend.extra_buffer_types is extra_buffer_types_allowed()
        batch = Batch(32)
        prompt = backend.tokenize("hello world, hello world")
        for i, token in enumerate(prompt):
            batch.add(token, i, 0, i == len(prompt) - 1)
        assert backend.decode(batch) == 0
        assert np.isfinite(backend.logits_row(batch.n - 1)).all()
        batch.free()
    finally:
        backend.close()
