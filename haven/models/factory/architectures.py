"""Model shapes the factory can build: ``tiny`` (unit tests) and ``0.5b`` (real Qwen2.5-0.5B shapes).

A :class:`Shape` holds every hyper-parameter the GGUF metadata and the tensor list need. The
tiny shape keeps every llama.cpp kernel path valid (GQA with 2 KV heads, SwiGLU FFN, RoPE)
while fitting a whole f32 model in under 1 MB; ``0.5b`` copies Qwen2.5-0.5B's config.json
(hidden 896, 24 layers, 14 heads, 2 KV heads, FFN 4864, rope theta 1e6, tied embeddings) so
benchmarks measure the same memory traffic as the real model.
"""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = ("llama", "qwen2")
SIZES = ("tiny", "0.5b")


@dataclass(frozen=True)
class Shape:
    arch: str
    size: str
    n_vocab: int
    n_normal_tokens: int  # ordinary BPE tokens (bytes + merges); special tokens follow them
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    qkv_bias: bool
    size_label: str

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_embd_kv(self) -> int:
        return self.head_dim * self.n_head_kv


# Vocabulary layout per architecture family: (ordinary tokens, total rows of the embedding).
# Qwen2: 151,643 BPE tokens, specials from id 151643, embedding padded to 151,936 rows.
# Llama 3: 128,000 BPE tokens, 256 special/reserved tokens from id 128000 (total 128,256).
_VOCAB = {
    ("qwen2", "0.5b"): (151_643, 151_936),
    ("llama", "0.5b"): (128_000, 128_256),
    # Tiny: 1,024 BPE tokens and room for the largest special-token family (Llama 3's 256).
    ("qwen2", "tiny"): (1_024, 1_280),
    ("llama", "tiny"): (1_024, 1_280),
}


def shape_for(arch: str, size: str) -> Shape:
    """The shape for ``arch`` at ``size`` (both already validated by the caller)."""
    n_normal, n_vocab = _VOCAB[(arch, size)]
    # Llama 3 uses rope theta 500,000 and RMS eps 1e-5; Qwen2.5 uses 1e6 and 1e-6.
    rope_theta = 1_000_000.0 if arch == "qwen2" else 500_000.0
    rms_eps = 1e-6 if arch == "qwen2" else 1e-5
    if size == "tiny":
        return Shape(
            arch=arch,
            size=size,
            n_vocab=n_vocab,
            n_normal_tokens=n_normal,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_head_kv=2,
            n_ff=128,
            n_ctx=4096,
            rope_theta=rope_theta,
            rms_eps=rms_eps,
            qkv_bias=arch == "qwen2",
            size_label="tiny",
        )
    return Shape(
        arch=arch,
        size=size,
        n_vocab=n_vocab,
        n_normal_tokens=n_normal,
        n_embd=896,
        n_layer=24,
        n_head=14,
        n_head_kv=2,
        n_ff=4864,
        n_ctx=32768,
        rope_theta=rope_theta,
        rms_eps=rms_eps,
        qkv_bias=arch == "qwen2",
        size_label="0.5B",
    )


@dataclass(frozen=True)
class TensorSpec:
    """One weight tensor: GGUF name, numpy shape (rows, cols) and how to initialise it."""

    name: str
    shape: tuple[int, ...]
    init: str  # "normal" (std 0.02), "ones" (norm weights) or "bias" (std 0.02, kept small)


def tensor_specs(shape: Shape) -> list[TensorSpec]:
    """Tensors in llama.cpp's naming, in the order convert_hf_to_gguf.py writes them.

    Embeddings are tied (no ``output.weight``): Qwen2.5-0.5B ties them, and llama.cpp falls
    back to ``token_embd`` for both architectures when ``output`` is absent.
    """
    e, kv, ff = shape.n_embd, shape.n_embd_kv, shape.n_ff
    specs = [TensorSpec("token_embd.weight", (shape.n_vocab, e), "normal")]
    for i in range(shape.n_layer):
        p = f"blk.{i}."
        specs.append(TensorSpec(p + "attn_norm.weight", (e,), "ones"))
        specs.append(TensorSpec(p + "attn_q.weight", (e, e), "normal"))
        specs.append(TensorSpec(p + "attn_k.weight", (kv, e), "normal"))
        specs.append(TensorSpec(p + "attn_v.weight", (kv, e), "normal"))
        if shape.qkv_bias:
            specs.append(TensorSpec(p + "attn_q.bias", (e,), "bias"))
            specs.append(TensorSpec(p + "attn_k.bias", (kv,), "bias"))
            specs.append(TensorSpec(p + "attn_v.bias", (kv,), "bias"))
        specs.append(TensorSpec(p + "attn_output.weight", (e, e), "normal"))
        specs.append(TensorSpec(p + "ffn_norm.weight", (e,), "ones"))
        specs.append(TensorSpec(p + "ffn_gate.weight", (ff, e), "normal"))
        specs.append(TensorSpec(p + "ffn_up.weight", (ff, e), "normal"))
        specs.append(TensorSpec(p + "ffn_down.weight", (e, ff), "normal"))
    specs.append(TensorSpec("output_norm.weight", (e,), "ones"))
    return specs
