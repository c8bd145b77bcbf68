"""Quantize a GGUF file with llama.cpp's own quantizer (``llama_model_quantize``).

Used by the test-model factory (q8_0 / q4_k test models) and available to tooling. The
output is written to a temporary file next to ``dst`` and renamed into place only when
llama.cpp reports success, so a failed or interrupted run never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
from pathlib import Path

from haven.errors import QuantizeError

# Haven's names → llama.cpp ``llama_ftype`` values (llama.h). "q4_k" means Q4_K_M, the
# variant llama.cpp's quantize tool and Ollama pick for "Q4_K".
FTYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q8_0": 7,
    "q5_0": 8,
    "q5_1": 9,
    "q2_k": 10,
    "q3_k_s": 11,
    "q3_k_m": 12,
    "q3_k_l": 13,
    "q4_k_s": 14,
    "q4_k": 15,
    "q4_k_m": 15,
    "q5_k_s": 16,
    "q5_k": 17,
    "q5_k_m": 17,
    "q6_k": 18,
    "bf16": 32,
}


def quantize_gguf(src: Path, dst: Path, ftype: str, *, threads: int | None = None) -> Path:
    """Write ``src`` re-encoded as ``ftype`` (e.g. ``"q8_0"``, ``"q4_k"``) to ``dst``; return ``dst``.

    Raises :class:`~haven.errors.QuantizeError` for an unknown type, a missing source, or any
    failure inside llama.cpp (the message names the file and the type).
    """
    key = ftype.lower()
    if key not in FTYPES:
        raise QuantizeError(f"unknown quantization type {ftype!r}; choose one of {', '.join(sorted(FTYPES))}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise QuantizeError(f"cannot quantize {src}: no such file")
    if threads is not None and threads < 0:
        raise QuantizeError(f"threads must be 0 (auto) or positive, got {threads}")

    import llama_cpp  # imported lazily: loading libllama takes a moment and pulls in the backend

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[key]
    params.nthread = threads or 0  # 0: llama.cpp uses every hardware thread
    # Refuse to re-quantize an already quantized file: it silently loses precision twice.
    params.allow_requantize = False

    dst.parent.mkdir(parents=True, exist_ok=True)
    # A unique name (not mkstemp, whose 0600 mode would stick to the result) next to dst.
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.quantizing")
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            raise QuantizeError(
                f"llama.cpp could not quantize {src.name} to {key} (error {rc}); "
                "is it a valid f32/f16 GGUF file with room on the disk for the output?"
            )
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dst
