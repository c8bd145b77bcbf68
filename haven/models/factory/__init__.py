"""The test-model factory: GGUF files with random weights but real shapes, tokenizers and templates.

``make_model(out, arch=…, size=…, quant=…, template=…, seed=…)`` writes a ``llama`` or
``qwen2`` model at size ``tiny`` (under 1 MB, for unit tests) or ``0.5b`` (Qwen2.5-0.5B's
shapes and 151,936-token vocabulary, for benchmarks), as f32/f16 directly or q8_0/q4_k
through llama.cpp's quantizer. Same arguments → byte-identical file. Used by the test
fixture ``make_test_model``, ``haven dev make-model`` and ``haven dev ensure-demo``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from haven.errors import ModelFactoryError
from haven.models.factory.architectures import ARCHITECTURES, SIZES, shape_for
from haven.models.factory.templates import TEMPLATES, chat_template
from haven.models.factory.tokenizer import build_vocab
from haven.models.factory.writer import write_gguf

QUANTS = ("f32", "f16", "q8_0", "q4_k")

__all__ = ["ARCHITECTURES", "QUANTS", "SIZES", "TEMPLATES", "make_model"]


def _check(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ModelFactoryError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}", param=name)
    return value


def make_model(
    out: Path,
    *,
    arch: str = "qwen2",
    size: str = "tiny",
    quant: str = "f32",
    template: str = "qwen2.5",
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> Path:
    """Write a random-weight GGUF model to ``out`` and return ``out``.

    ``progress(stage, fraction)`` is called as work advances (fraction in 0..1 per stage).
    Raises :class:`~haven.errors.ModelFactoryError` for bad arguments (nothing is written)
    and :class:`~haven.errors.QuantizeError` if llama.cpp cannot quantize.
    """
    _check("arch", arch, ARCHITECTURES)
    _check("size", size, SIZES)
    _check("quant", quant, QUANTS)
    _check("template", template, TEMPLATES)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ModelFactoryError(f"seed must be an integer from 0 to 2**63-1, got {seed!r}", param="seed")
    out = Path(out)
    if out.is_dir():
        raise ModelFactoryError(f"output path {out} is a directory; give a file name such as model.gguf", param="out")

    shape = shape_for(arch, size)
    if progress is not None:
        progress("building vocabulary", 0.0)
    vocab = build_vocab(template, arch, shape.n_normal_tokens, shape.n_vocab)
    if progress is not None:
        progress("building vocabulary", 1.0)

    out.parent.mkdir(parents=True, exist_ok=True)
    # Quantized models start from f32 (tiny: best fidelity) or f16 (0.5b: half the temp disk).
    direct = quant in ("f32", "f16")
    source_ftype = quant if direct else ("f32" if size == "tiny" else "f16")
    # A unique temp name next to ``out``: concurrent builds of the same path never collide,
    # and a crash leaves only a dot-file, never a truncated ``out``.
    # (Not mkstemp: its 0600 mode would stick to the finished model.)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.{source_ftype}.partial")
    try:
        write_gguf(
            tmp,
            shape=shape,
            vocab=vocab,
            template_name=template,
            chat_template=chat_template(template),
            seed=seed,
            ftype=source_ftype,
            progress=progress,
        )
        if direct:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        else:
            from haven.engine.quantize import quantize_gguf

            if progress is not None:
                progress(f"quantizing to {quant}", 0.0)
            quantize_gguf(tmp, out, quant)
            if progress is not None:
                progress(f"quantizing to {quant}", 1.0)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return out
