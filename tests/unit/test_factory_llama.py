"""The factory's models in llama.cpp itself: they load, tokenize like the real families, decode, quantize."""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import llama_cpp as L
import numpy as np
import pytest

from haven.engine.llama_backend import extra_buffer_types_allowed
from haven.engine.quantize import quantize_gguf
from haven.errors import QuantizeError

pytestmark = pytest.mark.slow

SPECIALS = {
    "qwen2.5": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>"],
    "deepseek-r1": ["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<think>", "</think>"],
    "llama3": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"],
}
# (bos, eos) relative to the first special id (1024 in tiny models).
BOS_EOS = {
    ("qwen2", "qwen2.5"): (0, 2),
    ("llama", "qwen2.5"): (0, 2),
    ("qwen2", "deepseek-r1"): (3, 0),
    ("llama", "deepseek-r1"): (0, 1),
    ("qwen2", "llama3"): (0, 9),
    ("llama", "llama3"): (0, 9),
}

MakeModel = Callable[..., Path]


@contextmanager
def loaded(path: Path) -> Iterator[ctypes.c_void_p]:
    L.llama_backend_init()
    params = L.llama_model_default_params()
    # The buffers Haven's backend uses on this build (the AMX buffer segfaults on a batched decode).
    params.use_extra_bufts = extra_buffer_types_allowed()
    model = L.llama_model_load_from_file(str(path).encode(), params)
    assert model, f"llama.cpp could not load {path}"
    try:
        yield model
    finally:
        L.llama_model_free(model)


def tokenize(vocab: ctypes.c_void_p, text: str, *, special: bool = True) -> list[int]:
    data = text.encode()
    buf = (L.llama_token * 512)()
    n = L.llama_tokenize(vocab, data, len(data), buf, 512, False, special)
    assert n >= 0
    return list(buf[:n])


def piece(vocab: ctypes.c_void_p, token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = L.llama_token_to_piece(vocab, token, buf, 64, 0, True)
    assert n >= 0
    return buf.raw[:n]


def last_logits(model: ctypes.c_void_p, tokens: list[int]) -> np.ndarray:
    params = L.llama_context_default_params()
    params.n_ctx = 256
    params.n_batch = 64
    params.n_threads = params.n_threads_batch = 1
    ctx = L.llama_init_from_model(model, params)
    assert ctx
    try:
        arr = (L.llama_token * len(tokens))(*tokens)
        assert L.llama_decode(ctx, L.llama_batch_get_one(arr, len(tokens))) == 0
        n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)).copy()
    finally:
        L.llama_free(ctx)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("template", ["qwen2.5", "deepseek-r1", "llama3"])
def test_tiny_models_load_and_tokenize_like_the_family(make_test_model: MakeModel, arch: str, template: str) -> None:
    with loaded(make_test_model(arch=arch, template=template)) as model:
        vocab = L.llama_model_get_vocab(model)
        assert L.llama_vocab_n_tokens(vocab) == 1280
        bos, eos = BOS_EOS[(arch, template)]
        assert (L.llama_vocab_bos(vocab), L.llama_vocab_eos(vocab)) == (1024 + bos, 1024 + eos)
        assert L.llama_vocab_is_eog(vocab, L.llama_vocab_eos(vocab))
        for text in SPECIALS[template]:
            ids = tokenize(vocab, text)
            assert len(ids) == 1 and ids[0] >= 1024, (text, ids)
            assert piece(vocab, ids[0]) == text.encode()
        # Ordinary text: multi-byte tokens for English and Chinese, and a lossless round trip.
        for text in ("Hello world, the people of the city", "你好，世界！我们是中国人"):
            ids = tokenize(vocab, text)
            assert len(ids) < len(text.encode()) // 2, (text, ids)
            assert b"".join(piece(vocab, t) for t in ids) == text.encode()
        logits = last_logits(model, tokenize(vocab, "The quick brown fox"))
        assert logits.shape == (1280,) and np.isfinite(logits).all() and float(np.abs(logits).max()) > 0


def test_control_tokens_need_parse_special_but_user_defined_do_not(make_test_model: MakeModel) -> None:
    with loaded(make_test_model(template="deepseek-r1")) as model:
        vocab = L.llama_model_get_vocab(model)
        assert len(tokenize(vocab, "<think>", special=False)) == 1  # USER_DEFINED, as in the real model
        assert len(tokenize(vocab, "<｜User｜>", special=False)) > 1  # CONTROL: plain text unless asked


def test_reasoning_tokens_round_trip_in_a_chat_prompt(make_test_model: MakeModel) -> None:
    with loaded(make_test_model(template="deepseek-r1")) as model:
        vocab = L.llama_model_get_vocab(model)
        ids = tokenize(vocab, "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>\n")
        think = tokenize(vocab, "<think>")[0]
        assert ids[0] == L.llama_vocab_bos(vocab) and think in ids


@pytest.mark.parametrize(("quant", "desc"), [("q8_0", b"Q8_0"), ("q4_k", b"Q4_K - Medium")])
def test_quantized_tiny_models_load_and_decode(make_test_model: MakeModel, quant: str, desc: bytes) -> None:
    path = make_test_model(quant=quant)
    assert path.stat().st_size < make_test_model(quant="f32").stat().st_size // 2
    with loaded(path) as model:
        buf = ctypes.create_string_buffer(128)
        L.llama_model_desc(model, buf, 128)
        assert buf.value.endswith(desc), buf.value
        vocab = L.llama_model_get_vocab(model)
        assert np.isfinite(last_logits(model, tokenize(vocab, "<|im_start|>user\nhi"))).all()


def test_quantize_gguf_writes_atomically(make_test_model: MakeModel, tmp_path: Path) -> None:
    out = quantize_gguf(make_test_model(quant="f16"), tmp_path / "sub" / "q.gguf", "Q8_0", threads=1)
    assert out == tmp_path / "sub" / "q.gguf" and out.stat().st_size > 0
    assert [p.name for p in out.parent.iterdir()] == ["q.gguf"]


def test_quantize_gguf_errors_are_clear_and_leave_nothing(make_test_model: MakeModel, tmp_path: Path) -> None:
    dst = tmp_path / "out.gguf"
    with pytest.raises(QuantizeError, match="unknown quantization type 'q9_9'"):
        quantize_gguf(make_test_model(), dst, "q9_9")
    with pytest.raises(QuantizeError, match="no such file"):
        quantize_gguf(tmp_path / "missing.gguf", dst, "q8_0")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(QuantizeError, match="could not quantize garbage.gguf to q8_0"):
        quantize_gguf(garbage, dst, "q8_0")
    # Already quantized: re-quantizing would lose precision twice, llama.cpp refuses.
    with pytest.raises(QuantizeError, match="to q4_k"):
        quantize_gguf(make_test_model(quant="q8_0"), dst, "q4_k")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.gguf"]


@pytest.mark.parametrize("quant", ["q8_0", "q4_k"])
def test_quantized_models_are_deterministic(tmp_path: Path, quant: str) -> None:
    from haven.models.factory import make_model

    a = make_model(tmp_path / "a.gguf", quant=quant, seed=5)
    b = make_model(tmp_path / "b.gguf", quant=quant, seed=5)
    c = make_model(tmp_path / "c.gguf", quant=quant, seed=6)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gguf", "b.gguf", "c.gguf"]  # no temp files left


def test_quantized_files_get_the_usual_permissions(tmp_path: Path) -> None:
    from haven.models.factory import make_model

    umask = os.umask(0o022)
    try:
        path = make_model(tmp_path / "q.gguf", quant="q8_0")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
