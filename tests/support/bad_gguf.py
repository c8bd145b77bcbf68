"""A corpus of malformed GGUF files, generated from one good factory model (never stored as binaries).

Each :class:`Case` rewrites the good file: its metadata (absurd or contradictory hyper-parameters, an
unknown architecture or rope scaling type), its tensor table (missing, duplicated, zero-sized,
misaligned, overlapping, wrongly shaped tensors) or its bytes (truncations). ``expect`` says what Haven
must do with it: ``"refused"`` (one-line error at import, store unchanged) or ``"accepted"`` (a file
llama.cpp runs, however odd: it must then serve).

Run as a script to write the corpus to a directory::

    python -m tests.support.bad_gguf OUT_DIR [GOOD.gguf]
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUFReader
from gguf.constants import GGUFValueType

ALIGN = 32


@dataclass
class Tensor:
    name: str
    shape: list[int]  # ggml order (ne0 first)
    ggml_type: int
    data: bytes
    offset: int | None = None  # None: laid out in order, aligned


@dataclass
class Model:
    kv: dict[str, tuple[list[GGUFValueType], Any]]  # key → (types, value) in file order
    tensors: list[Tensor]

    @property
    def arch(self) -> str:
        return str(self.kv["general.architecture"][1])

    def set(self, key: str, value: Any, vtype: GGUFValueType = GGUFValueType.UINT32) -> None:
        self.kv[key] = ([vtype], value)


def read_model(path: Path) -> Model:
    reader = GGUFReader(path)
    kv = {
        name: (list(field.types), field.contents())
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.")
    }
    tensors = [
        Tensor(t.name, [int(d) for d in t.shape], int(t.tensor_type), bytes(t.data.tobytes())) for t in reader.tensors
    ]
    return Model(kv, tensors)


_SCALAR = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}  # fmt: skip


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def _value(types: list[GGUFValueType], value: Any) -> bytes:
    head = types[0]
    if head == GGUFValueType.STRING:
        return _string(str(value))
    if head == GGUFValueType.ARRAY:
        inner = types[1]
        out = struct.pack("<IQ", int(inner), len(value))
        return out + b"".join(_value([inner], v) for v in value)
    return struct.pack(_SCALAR[head], value)


def write_model(model: Model, path: Path) -> Path:
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(model.tensors), len(model.kv)))
    for key, (types, value) in model.kv.items():
        out += _string(key) + struct.pack("<I", int(types[0])) + _value(types, value)
    offsets, cursor = [], 0
    for tensor in model.tensors:
        offset = cursor if tensor.offset is None else tensor.offset
        offsets.append(offset)
        cursor = max(cursor, -(-(offset + len(tensor.data)) // ALIGN) * ALIGN)
    for tensor, offset in zip(model.tensors, offsets, strict=True):
        out += _string(tensor.name) + struct.pack("<I", len(tensor.shape))
        out += b"".join(struct.pack("<Q", d) for d in tensor.shape)
        out += struct.pack("<IQ", tensor.ggml_type, offset)
    out += b"\0" * (-len(out) % ALIGN)
    data = bytearray(cursor)
    for tensor, offset in zip(model.tensors, offsets, strict=True):
        end = min(len(data), offset + len(tensor.data))
        data[offset:end] = tensor.data[: end - offset]
    path.write_bytes(bytes(out + data))
    return path


# --- the cases --------------------------------------------------------------------------------------------


def _find(model: Model, name: str) -> Tensor:
    return next(t for t in model.tensors if t.name == name)


def _kv(key: str, value: Any, vtype: GGUFValueType = GGUFValueType.UINT32) -> Callable[[Model], None]:
    def mutate(model: Model) -> None:
        model.set(key.format(arch=model.arch), value, vtype)

    return mutate


def _drop_tensor(name: str) -> Callable[[Model], None]:
    def mutate(model: Model) -> None:
        model.tensors = [t for t in model.tensors if t.name != name]

    return mutate


def _duplicate_tensor(model: Model) -> None:
    first = model.tensors[1]
    model.tensors.append(Tensor(first.name, first.shape, first.ggml_type, first.data))


def _zero_dim(model: Model) -> None:
    tensor = _find(model, "blk.0.attn_norm.weight")
    tensor.shape, tensor.data = [0], b""


def _misaligned(model: Model) -> None:
    model.tensors[1].offset = ALIGN * 20000 + 4


def _overlapping(model: Model) -> None:
    model.tensors[2].offset = 0  # on top of token_embd.weight


def _wrong_shape(model: Model) -> None:
    tensor = _find(model, "blk.0.attn_q.weight")
    tensor.shape = [tensor.shape[1], tensor.shape[0] // 2, 2]


def _unknown_tensor_type(model: Model) -> None:
    model.tensors[1].ggml_type = 99


def _random_weights(model: Model) -> None:
    tensor = _find(model, "blk.0.ffn_up.weight")
    tensor.data = bytes((i * 37 + 11) % 256 for i in range(len(tensor.data)))  # NaNs and infs among them


def _rope_scaling(model: Model) -> None:
    model.set(f"{model.arch}.rope.scaling.type", "quantum", GGUFValueType.STRING)


def _arch(model: Model) -> None:
    old = model.arch
    model.kv = {k.replace(f"{old}.", "evilnet.", 1): v for k, v in model.kv.items()}
    model.set("general.architecture", "evilnet", GGUFValueType.STRING)


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Model], None] | None = None
    truncate_to: float | None = None  # fraction of the good file kept
    expect: str = "refused"


CASES: tuple[Case, ...] = (
    Case("block_count_zero", _kv("{arch}.block_count", 0)),
    Case("block_count_huge", _kv("{arch}.block_count", 100_000)),
    Case("expert_count_huge", _kv("{arch}.expert_count", 5000)),
    Case("expert_used_without_experts", _kv("{arch}.expert_used_count", 2)),
    Case("experts_none_used", lambda m: (_kv("{arch}.expert_count", 8)(m), _kv("{arch}.expert_used_count", 0)(m))),
    Case("rope_scaling_unknown", _rope_scaling),
    Case("architecture_unknown", _arch),
    Case("head_count_zero", _kv("{arch}.attention.head_count", 0)),
    Case("head_count_kv_above_heads", _kv("{arch}.attention.head_count_kv", 64)),
    Case("embedding_length_mismatch", _kv("{arch}.embedding_length", 96)),
    Case("embedding_length_huge", _kv("{arch}.embedding_length", 1 << 30)),
    Case("bos_outside_vocab", _kv("tokenizer.ggml.bos_token_id", 1 << 30)),
    Case("tensor_missing", _drop_tensor("blk.0.attn_q.weight")),
    Case("tensor_duplicate", _duplicate_tensor),
    Case("tensor_zero_size", _zero_dim),
    Case("tensor_misaligned", _misaligned),
    Case("tensor_overlapping", _overlapping),
    Case("tensor_wrong_shape", _wrong_shape),
    Case("tensor_unknown_type", _unknown_tensor_type),
    Case("truncated_in_header", truncate_to=0.01),
    Case("truncated_in_tensor_infos", truncate_to=0.075),
    Case("truncated_in_data", truncate_to=0.9),
    Case("garbage_weights", _random_weights, expect="accepted"),
)


def build(case: Case, good: Path, out: Path) -> Path:
    """Write ``case`` derived from ``good`` to ``out``."""
    if case.truncate_to is not None:
        data = good.read_bytes()
        out.write_bytes(data[: int(len(data) * case.truncate_to)])
        return out
    model = read_model(good)
    if case.mutate is not None:
        case.mutate(model)
    return write_model(model, out)


def main(argv: list[str]) -> int:
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(argv) > 1:
        good = Path(argv[1])
    else:
        from haven.models.factory import make_model

        good = make_model(out_dir / "good.gguf", arch="qwen2", size="tiny", quant="f32", template="qwen2.5", seed=0)
    for case in CASES:
        print(build(case, good, out_dir / f"{case.name}.gguf"), case.expect)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
