"""Hand-made tiny GGUF files for header-level tests (independent of the test-model factory).

``write_tiny_gguf(path, template=..., ...)`` writes a ``qwen2``-looking file with two small tensors,
a 6-token vocabulary with two control tokens and a chat template. ``corrupt_tensor_count`` and
``truncate`` derive broken files from a good one.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SSTI_MRO = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
SSTI_GLOBALS = "{{ cycler.__init__.__globals__ }}"


def write_tiny_gguf(
    path: Path, *, template: str | None = CHATML, arch: str = "qwen2", name: str = "tiny test", seed: int = 0
) -> Path:
    writer = GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_file_type(0)
    writer.add_tokenizer_model("gpt2")
    tokens = ["a", "b", "c", "<|im_start|>", "<|im_end|>", "d"]
    writer.add_token_list(tokens)
    writer.add_token_types([1, 1, 1, 3, 3, 1])
    writer.add_bos_token_id(3)
    writer.add_eos_token_id(4)
    if template is not None:
        writer.add_chat_template(template)
    rng = np.random.default_rng(seed)
    writer.add_tensor("token_embd.weight", rng.standard_normal((6, 8)).astype(np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def with_tensor_count(src: Path, dst: Path, count: int) -> Path:
    """A copy of ``src`` whose header claims ``count`` tensors."""
    data = bytearray(src.read_bytes())
    data[8:16] = struct.pack("<Q", count)
    dst.write_bytes(bytes(data))
    return dst


def truncated(src: Path, dst: Path, keep: int) -> Path:
    dst.write_bytes(src.read_bytes()[:keep])
    return dst
