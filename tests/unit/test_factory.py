"""The test-model factory without llama.cpp: file size, GGUF metadata, vocabulary, templates, determinism."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from jinja2.sandbox import ImmutableSandboxedEnvironment

from haven.errors import ModelFactoryError
from haven.models.factory import make_model
from haven.models.factory.architectures import shape_for, tensor_specs
from haven.models.factory.templates import chat_template
from haven.models.factory.tokenizer import CONTROL, NORMAL, UNUSED, USER_DEFINED, build_vocab, encode_bytes

ARCHS = ("qwen2", "llama")
TEMPLATES = ("qwen2.5", "deepseek-r1", "llama3")


def _field(reader: GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("template", TEMPLATES)
def test_tiny_model_is_under_one_megabyte_and_reads_back(tmp_path: Path, arch: str, template: str) -> None:
    path = make_model(tmp_path / "m.gguf", arch=arch, template=template)
    assert path == tmp_path / "m.gguf"
    assert 100_000 < path.stat().st_size <= 1_000_000
    reader = GGUFReader(path)
    assert _field(reader, "general.architecture") == arch
    assert _field(reader, "general.file_type") == 0  # ALL_F32
    assert _field(reader, f"{arch}.block_count") == 2
    assert _field(reader, f"{arch}.embedding_length") == 64
    assert _field(reader, f"{arch}.feed_forward_length") == 128
    assert _field(reader, f"{arch}.attention.head_count") == 4
    assert _field(reader, f"{arch}.attention.head_count_kv") == 2
    assert _field(reader, f"{arch}.context_length") == 4096
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.chat_template") == chat_template(template)
    assert len(_field(reader, "tokenizer.ggml.tokens")) == 1280  # type: ignore[arg-type]
    names = {t.name: t for t in reader.tensors}
    assert "output.weight" not in names  # tied embeddings
    assert list(names["token_embd.weight"].shape) == [64, 1280]
    assert list(names["blk.1.attn_k.weight"].shape) == [64, 32]  # 2 KV heads x head dim 16
    assert list(names["blk.0.ffn_down.weight"].shape) == [128, 64]
    assert ("blk.0.attn_q.bias" in names) is (arch == "qwen2")
    assert len(reader.tensors) == (26 if arch == "qwen2" else 20)


def test_qwen25_tokens_and_ids(tmp_path: Path) -> None:
    reader = GGUFReader(make_model(tmp_path / "q.gguf", template="qwen2.5"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    first = 1024  # tiny: 1,024 ordinary tokens, then the specials in Qwen2.5's order
    assert tokens[first : first + 3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert types[first + 1] == CONTROL
    tool_call = tokens.index("<tool_call>")
    assert (tool_call - first, types[tool_call]) == (14, USER_DEFINED)
    assert types[tokens.index("<think>")] == USER_DEFINED
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    assert _field(reader, "tokenizer.ggml.bos_token_id") == first
    assert _field(reader, "tokenizer.ggml.eos_token_id") == first + 2
    assert _field(reader, "tokenizer.ggml.eot_token_id") == first + 2
    assert _field(reader, "tokenizer.ggml.padding_token_id") == first
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert types[:256] == [NORMAL] * 256
    assert tokens[-1] == "[PAD1279]" and types[-1] == UNUSED


def test_deepseek_r1_on_qwen2_and_llama(tmp_path: Path) -> None:
    qwen = GGUFReader(make_model(tmp_path / "rq.gguf", arch="qwen2", template="deepseek-r1"))
    tokens = qwen.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[1024:1031] == [
        "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>",
        "<|EOT|>", "<think>", "</think>",
    ]  # fmt: skip
    assert _field(qwen, "tokenizer.ggml.pre") == "deepseek-r1-qwen"
    assert _field(qwen, "tokenizer.ggml.bos_token_id") == 1024 + 3
    assert _field(qwen, "tokenizer.ggml.eos_token_id") == 1024
    assert _field(qwen, "tokenizer.ggml.add_bos_token") is True

    llama = GGUFReader(make_model(tmp_path / "rl.gguf", arch="llama", template="deepseek-r1"))
    tokens = llama.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[1024 + 0] == "<｜begin▁of▁sentence｜>"
    assert tokens[1024 + 13 : 1024 + 15] == ["<think>", "</think>"]
    assert _field(llama, "tokenizer.ggml.pre") == "llama-bpe"


def test_llama3_tokens(tmp_path: Path) -> None:
    reader = GGUFReader(make_model(tmp_path / "l.gguf", arch="llama", template="llama3"))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert tokens[1024] == "<|begin_of_text|>"
    assert tokens[1024 + 6 : 1024 + 11] == [
        "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    ]  # fmt: skip
    assert tokens[-1] == "<|reserved_special_token_247|>"
    assert set(types[1024:]) == {CONTROL}
    assert _field(reader, "tokenizer.ggml.bos_token_id") == 1024
    assert _field(reader, "tokenizer.ggml.eos_token_id") == 1024 + 9
    assert _field(reader, "tokenizer.ggml.eom_token_id") == 1024 + 8
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "llama.rope.dimension_count") == 16
    assert _field(reader, "llama.vocab_size") == 1280


def test_real_ids_at_0_5b_without_writing_weights() -> None:
    started = time.perf_counter()
    qwen = build_vocab("qwen2.5", "qwen2", 151_643, 151_936)
    r1 = build_vocab("deepseek-r1", "qwen2", 151_643, 151_936)
    llama = build_vocab("llama3", "llama", 128_000, 128_256)
    assert time.perf_counter() - started < 10  # seconds, not minutes, even on a busy 2-core box
    assert len(qwen.tokens) == 151_936 and len(set(qwen.tokens)) == 151_936
    assert len(qwen.merges) >= 151_643 - 256
    assert qwen.tokens[151_643:151_646] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert (qwen.tokens[151_657], qwen.tokens[151_664]) == ("<tool_call>", "<|file_sep|>")
    assert (qwen.bos_id, qwen.eos_id, qwen.pad_id) == (151_643, 151_645, 151_643)
    assert r1.tokens[151_646] == "<｜begin▁of▁sentence｜>" and r1.bos_id == 151_646 and r1.eos_id == 151_643
    assert r1.tokens[151_648:151_650] == ["<think>", "</think>"]
    assert llama.tokens[128_000] == "<|begin_of_text|>" and llama.tokens[128_009] == "<|eot_id|>"
    assert (llama.bos_id, llama.eos_id) == (128_000, 128_009)
    assert len(llama.tokens) == 128_256


def test_0_5b_shapes_match_qwen25_0_5b() -> None:
    shape = shape_for("qwen2", "0.5b")
    assert (shape.n_vocab, shape.n_embd, shape.n_layer, shape.n_head, shape.n_head_kv, shape.head_dim) == (
        151_936, 896, 24, 14, 2, 64,
    )  # fmt: skip
    assert (shape.n_ff, shape.n_ctx, shape.rope_theta, shape.rms_eps) == (4864, 32768, 1e6, 1e-6)
    # Qwen2.5-0.5B's published parameter count, tied embeddings and qkv biases included.
    assert sum(int(np.prod(s.shape)) for s in tensor_specs(shape)) == 494_032_768
    assert shape_for("llama", "0.5b").n_vocab == 128_256


def test_vocab_has_multibyte_english_and_chinese_tokens() -> None:
    vocab = set(build_vocab("qwen2.5", "qwen2", 1024, 1280).tokens)
    for word in (" the", " and", " is", "你好", "我们", "中国", "是"):
        assert encode_bytes(word) in vocab, word


def test_same_arguments_give_identical_bytes_and_seeds_differ(tmp_path: Path) -> None:
    a = make_model(tmp_path / "a.gguf", seed=7)
    b = make_model(tmp_path / "b.gguf", seed=7)
    c = make_model(tmp_path / "c.gguf", seed=8)
    assert _sha(a) == _sha(b)
    assert _sha(a) != _sha(c)
    wa = next(t for t in GGUFReader(a).tensors if t.name == "blk.0.attn_q.weight").data
    wc = next(t for t in GGUFReader(c).tensors if t.name == "blk.0.attn_q.weight").data
    assert not np.array_equal(wa, wc)
    assert 0.015 < float(np.std(wa)) < 0.025  # std 0.02: activations stay sane


def test_f16_holds_the_f32_values_rounded(tmp_path: Path) -> None:
    f32 = GGUFReader(make_model(tmp_path / "32.gguf", quant="f32"))
    f16 = GGUFReader(make_model(tmp_path / "16.gguf", quant="f16"))
    assert _field(f16, "general.file_type") == 1
    w32 = next(t for t in f32.tensors if t.name == "token_embd.weight")
    w16 = next(t for t in f16.tensors if t.name == "token_embd.weight")
    assert w16.data.dtype == np.float16
    np.testing.assert_array_equal(w16.data, w32.data.astype(np.float16))
    norm16 = next(t for t in f16.tensors if t.name == "output_norm.weight")
    assert norm16.data.dtype == np.float32  # 1-D tensors stay f32, as llama.cpp's converter does


def test_progress_is_reported_to_completion(tmp_path: Path) -> None:
    seen: list[tuple[str, float]] = []
    make_model(tmp_path / "p.gguf", progress=lambda stage, fraction: seen.append((stage, fraction)))
    weights = [f for stage, f in seen if stage == "writing weights"]
    assert weights == sorted(weights) and weights[-1] == pytest.approx(1.0)


def test_templates_render_in_the_sandbox() -> None:
    env = ImmutableSandboxedEnvironment()
    messages = [{"role": "user", "content": "Hi"}]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r1 = env.from_string(chat_template("deepseek-r1")).render(
        messages=messages, add_generation_prompt=True, bos_token="<｜begin▁of▁sentence｜>"
    )
    assert r1 == "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n"
    qwen = env.from_string(chat_template("qwen2.5")).render(messages=messages, tools=tools, add_generation_prompt=True)
    assert qwen.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert '"name": "get_weather"' in qwen and qwen.endswith("<|im_start|>assistant\n")
    llama = env.from_string(chat_template("llama3")).render(
        messages=messages, tools=tools, add_generation_prompt=True, bos_token="<|begin_of_text|>"
    )
    assert llama.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n")
    assert llama.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "gpt2"}, "unknown arch 'gpt2'; choose one of llama, qwen2"),
        ({"size": "7b"}, "unknown size '7b'; choose one of tiny, 0.5b"),
        ({"quant": "q3_k"}, "unknown quant 'q3_k'; choose one of f32, f16, q8_0, q4_k"),
        ({"template": "chatml"}, "unknown template 'chatml'; choose one of deepseek-r1, qwen2.5, llama3"),
        ({"seed": -1}, "seed must be an integer from 0 to 2**63-1, got -1"),
        ({"seed": "1"}, "seed must be an integer from 0 to 2**63-1, got '1'"),
        ({"seed": True}, "seed must be an integer from 0 to 2**63-1, got True"),
    ],
)
def test_bad_arguments_give_one_clear_error_and_write_nothing(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelFactoryError) as info:
        make_model(tmp_path / "bad.gguf", **kwargs)  # type: ignore[arg-type]
    assert info.value.message == message
    assert list(tmp_path.iterdir()) == []


def test_directory_as_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFactoryError, match="is a directory"):
        make_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = make_model(tmp_path / "m.gguf")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not a temp file's 0600
