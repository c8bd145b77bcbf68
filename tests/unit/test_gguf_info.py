"""GGUF header validation and metadata extraction, without loading weights."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from haven.errors import InvalidModelFileError
from haven.models.gguf_info import read_gguf_info
from tests.support.tiny_gguf import CHATML, truncated, with_tensor_count, write_tiny_gguf


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_reads_the_fields_haven_uses(tiny: Path) -> None:
    info = read_gguf_info(tiny)
    assert info.version == 3 and info.tensor_count == 2
    assert info.architecture == "qwen2"
    assert info.parameter_count == 6 * 8 + 8
    assert info.quantization == "F32"
    assert (info.context_length, info.embedding_length, info.block_count, info.vocab_size) == (256, 8, 1, 6)
    assert info.chat_template == CHATML
    assert (info.bos_token, info.bos_token_id, info.eos_token, info.eos_token_id) == (
        "<|im_start|>",
        3,
        "<|im_end|>",
        4,
    )
    assert info.special_tokens == {"<|im_start|>": 3, "<|im_end|>": 4}
    assert info.name == "tiny test"
    assert info.metadata["tokenizer.ggml.tokens"] == ["a", "b", "c", "<|im_start|>", "<|im_end|>", "d"]
    assert info.metadata["qwen2.context_length"] == 256
    assert info.size == tiny.stat().st_size


def test_reads_a_factory_model(make_test_model: Callable[..., Path]) -> None:
    info = read_gguf_info(make_test_model(template="deepseek-r1"))
    assert info.architecture == "qwen2" and info.quantization == "F32"
    assert info.vocab_size == 1280 and info.context_length == 4096
    assert info.metadata["tokenizer.ggml.tokens"] == {"array_of": "string", "length": 1280}  # summarised
    assert info.bos_token == "<｜begin▁of▁sentence｜>" and info.special_tokens["<｜User｜>"] == 1025
    assert info.chat_template is not None and "<think>" in info.chat_template


def test_quantized_file_type_is_named(make_test_model: Callable[..., Path]) -> None:
    assert read_gguf_info(make_test_model(quant="q8_0")).quantization == "Q8_0"


def _expect(path: Path, fragment: str) -> None:
    with pytest.raises(InvalidModelFileError) as caught:
        read_gguf_info(path)
    assert fragment in caught.value.message and "\n" not in caught.value.message


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "notes.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 4)
    _expect(path, "does not start with the GGUF magic bytes")


def test_empty_and_tiny_files(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").write_bytes(b"")
    _expect(tmp_path / "empty.gguf", "the file has only 0 bytes")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _expect(tmp_path / "nope.gguf", "no such file")
    _expect(tmp_path, "is not a regular file")


def test_unsupported_version(tiny: Path, tmp_path: Path) -> None:
    data = bytearray(tiny.read_bytes())
    data[4:8] = struct.pack("<I", 1)
    (tmp_path / "v1.gguf").write_bytes(bytes(data))
    _expect(tmp_path / "v1.gguf", "GGUF version 1 is not supported")


@pytest.mark.parametrize("count", [3, 10_000, 2**40, 2**64 - 1])
def test_absurd_tensor_counts(tiny: Path, tmp_path: Path, count: int) -> None:
    path = with_tensor_count(tiny, tmp_path / "absurd.gguf", count)
    if count == 3:  # plausible count, but the third tensor info runs into the data section
        with pytest.raises(InvalidModelFileError):
            read_gguf_info(path)
    else:
        _expect(path, f"it claims {count:,} tensors")


def test_absurd_kv_count(tiny: Path, tmp_path: Path) -> None:
    data = bytearray(tiny.read_bytes())
    data[16:24] = struct.pack("<Q", 2**50)
    (tmp_path / "kv.gguf").write_bytes(bytes(data))
    _expect(tmp_path / "kv.gguf", "metadata entries")


def test_absurd_string_length(tiny: Path, tmp_path: Path) -> None:
    data = bytearray(tiny.read_bytes())
    data[24:32] = struct.pack("<Q", 2**62)  # the length of the first key
    (tmp_path / "key.gguf").write_bytes(bytes(data))
    _expect(tmp_path / "key.gguf", "a metadata key claims")


@pytest.mark.parametrize("keep", [30, 200, 700])
def test_truncated_in_the_header(tiny: Path, tmp_path: Path, keep: int) -> None:
    _expect(truncated(tiny, tmp_path / "t.gguf", keep), "the file is truncated")


def test_truncated_in_the_tensor_data(tiny: Path, tmp_path: Path) -> None:
    size = tiny.stat().st_size
    _expect(truncated(tiny, tmp_path / "t.gguf", size - 4), f"but the file has {size - 4:,} bytes")
