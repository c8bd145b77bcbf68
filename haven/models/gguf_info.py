"""Read a GGUF file's header and metadata without loading its weights, and refuse malformed files.

Two passes. First a bounds-checked walk of the fixed header, the key/value section and the tensor
infos with :mod:`struct` over a read-only memory map: every count and length is checked against hard
limits *and* against the bytes actually left in the file before it is trusted, so an absurd tensor
count, a truncated file or a 2^60-byte string gives :class:`InvalidModelFileError` instead of a
MemoryError or a hang. Then the ``gguf`` package's :class:`GGUFReader` (which memory-maps the file and
never copies tensor data) extracts the fields Haven uses: architecture, parameter count, quantization,
context/embedding length, block count, vocabulary size, chat template, special tokens.

Layout reference: ggml's docs/gguf.md (header, typed key/values, tensor infos, aligned data section).
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haven.errors import InvalidModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
MAX_TENSORS = 1 << 20  # the largest published models have a few tens of thousands
MAX_KV = 1 << 16
MAX_KEY_LENGTH = 1 << 16
MAX_STRING_LENGTH = 64 << 20  # chat templates are tens of KB; 64 MiB is generous
MAX_ARRAY_LENGTH = 1 << 26
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 2
_ARRAY_PREVIEW = 16  # arrays longer than this are summarised by length in the metadata dict

# GGUF value types (gguf.GGUFValueType) → (struct format, size) for fixed-size ones.
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}  # fmt: skip
_STRING, _ARRAY = 8, 9
_TOKEN_TYPE_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL: special tokens such as <|im_start|>


@dataclass(frozen=True)
class GGUFInfo:
    """What Haven needs to know about a GGUF file, read from its header."""

    path: Path
    size: int
    version: int
    tensor_count: int
    architecture: str
    parameter_count: int
    quantization: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    vocab_size: int | None
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    special_tokens: dict[str, int] = field(default_factory=dict)
    name: str | None = None
    basename: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _bad(path: Path, why: str) -> InvalidModelFileError:
    return InvalidModelFileError(f"{path} is not a valid GGUF model: {why}")


class _Walker:
    """Bounds-checked cursor over the header bytes; raises InvalidModelFileError on any inconsistency."""

    def __init__(self, path: Path, buf: mmap.mmap) -> None:
        self.path, self.buf, self.pos, self.size = path, buf, 0, len(buf)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise _bad(self.path, f"the file is truncated (while reading {what})")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        return struct.unpack(fmt, self.take(size, what))[0]

    def skip_string(self, what: str, limit: int = MAX_STRING_LENGTH) -> None:
        length = self.unpack("<Q", 8, what)
        if length > limit:
            raise _bad(self.path, f"{what} claims {length:,} bytes (limit {limit:,})")
        if self.pos + length > self.size:
            raise _bad(self.path, f"the file is truncated (while reading {what})")
        self.pos += length

    def read_key(self) -> str:
        length = self.unpack("<Q", 8, "a metadata key")
        if length > MAX_KEY_LENGTH:
            raise _bad(self.path, f"a metadata key claims {length:,} bytes")
        try:
            return self.take(length, "a metadata key").decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(self.path, "a metadata key is not UTF-8") from None

    def skip_value(self, vtype: int, key: str, depth: int = 0) -> None:
        if vtype in _SCALARS:
            self.take(_SCALARS[vtype][1], f"the value of {key}")
        elif vtype == _STRING:
            self.skip_string(f"the value of {key}")
        elif vtype == _ARRAY and depth < MAX_ARRAY_DEPTH:
            etype = self.unpack("<I", 4, f"the array type of {key}")
            count = self.unpack("<Q", 8, f"the array length of {key}")
            if count > MAX_ARRAY_LENGTH:
                raise _bad(self.path, f"the array {key} claims {count:,} elements (limit {MAX_ARRAY_LENGTH:,})")
            if etype in _SCALARS:
                self.take(count * _SCALARS[etype][1], f"the array {key}")
            elif etype == _STRING:
                if count * 8 > self.size - self.pos:  # each string needs at least its 8-byte length
                    raise _bad(self.path, f"the file is truncated (while reading the array {key})")
                for _ in range(count):
                    self.skip_string(f"an element of {key}")
            else:
                for _ in range(count):
                    self.skip_value(etype, key, depth + 1)
        else:
            raise _bad(self.path, f"the metadata value {key} has an unknown type {vtype}")


def _validate_layout(path: Path, buf: mmap.mmap) -> tuple[int, int]:
    """Walk the whole header; returns (version, tensor_count). Checks the data section fits the file."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    w = _Walker(path, buf)
    if w.take(4, "the magic number") != GGUF_MAGIC:
        raise _bad(path, "it does not start with the GGUF magic bytes")
    version = w.unpack("<I", 4, "the version")
    if version not in SUPPORTED_VERSIONS:
        raise _bad(path, f"GGUF version {version} is not supported (only {', '.join(map(str, SUPPORTED_VERSIONS))})")
    tensor_count = w.unpack("<Q", 8, "the tensor count")
    kv_count = w.unpack("<Q", 8, "the metadata count")
    # A tensor info takes at least 8+0+4+8+4+8 bytes and a key/value at least 8+1+4+1: cheap, exact bounds.
    if tensor_count > MAX_TENSORS or tensor_count * 32 > w.size:
        raise _bad(
            path,
            f"the file is truncated or corrupt: it claims {tensor_count:,} tensors, "
            f"impossible for a {w.size:,}-byte file",
        )
    if kv_count > MAX_KV or kv_count * 14 > w.size:
        raise _bad(
            path,
            f"the file is truncated or corrupt: it claims {kv_count:,} metadata entries, "
            f"impossible for a {w.size:,}-byte file",
        )
    alignment = 32
    for _ in range(kv_count):
        key = w.read_key()
        vtype = w.unpack("<I", 4, f"the type of {key}")
        if key == "general.alignment" and vtype == 4:
            alignment = struct.unpack("<I", w.buf[w.pos : w.pos + 4])[0] if w.pos + 4 <= w.size else 0
            if alignment == 0 or alignment & (alignment - 1):
                raise _bad(path, f"general.alignment {alignment} is not a power of two")
        w.skip_value(vtype, key)
    extents: list[tuple[int, int]] = []
    names: set[bytes] = set()
    for index in range(tensor_count):
        name_length = w.unpack("<Q", 8, f"the name of tensor {index}")
        if name_length > MAX_KEY_LENGTH:
            raise _bad(path, f"the name of tensor {index} claims {name_length:,} bytes")
        name = w.take(name_length, f"the name of tensor {index}")
        if name in names:
            raise _bad(path, f"two tensors are named {name.decode('utf-8', 'replace')!r}")
        names.add(name)
        n_dims = w.unpack("<I", 4, f"the dimension count of tensor {index}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _bad(path, f"tensor {index} has {n_dims} dimensions")
        elements = 1
        for _ in range(n_dims):
            dim = w.unpack("<Q", 8, f"the shape of tensor {index}")
            if dim > 1 << 40:
                raise _bad(path, f"tensor {index} has an absurd dimension {dim:,}")
            if dim == 0:
                raise _bad(path, f"tensor {index} has a zero-sized dimension")
            elements *= dim
        ttype = w.unpack("<I", 4, f"the type of tensor {index}")
        offset = w.unpack("<Q", 8, f"the offset of tensor {index}")
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise _bad(path, f"tensor {index} has an unknown type {ttype}") from None
        if elements % block:
            raise _bad(path, f"tensor {index} has {elements} elements, not a multiple of its block size {block}")
        if offset % alignment:
            raise _bad(path, f"tensor {index} starts at offset {offset:,}, not a multiple of the alignment {alignment}")
        extents.append((offset, elements // block * type_size))
    data_start = -(-w.pos // alignment) * alignment
    end = 0  # tensors sorted by offset must not overlap (llama.cpp would read one tensor's bytes as another's)
    for offset, nbytes in sorted(extents):
        if offset < end:
            raise _bad(path, f"two tensors overlap at data offset {offset:,}")
        end = offset + nbytes
    for index, (offset, nbytes) in enumerate(extents):
        if data_start + offset + nbytes > w.size:
            raise _bad(
                path,
                f"the file is truncated: tensor {index} ends at byte {data_start + offset + nbytes:,} "
                f"but the file has {w.size:,} bytes",
            )
    return version, tensor_count


# What llama.cpp asserts on (GGML_ASSERT aborts the whole process) or mis-handles, checked up front so such a
# file is refused with a sentence. The trial load (haven.models.trial_load) catches whatever this list misses.
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 512  # LLAMA_MAX_EXPERTS is 256 in older builds: a file between the two is left to the trial load
ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")  # llama_rope_scaling_type_from_string


def _known_architectures() -> frozenset[str]:
    from gguf.constants import MODEL_ARCH_NAMES

    return frozenset(MODEL_ARCH_NAMES.values())


def _check_hyperparameters(path: Path, arch: str, metadata: dict[str, Any], vocab_size: int | None) -> None:
    if arch not in _known_architectures():
        raise _bad(path, f"its architecture {arch!r} is not one llama.cpp knows")

    def number(key: str) -> int | None:
        value = metadata.get(f"{arch}.{key}")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                return max(value, default=0)  # per-layer arrays (head counts): the largest must be sane
            raise _bad(path, f"{arch}.{key} is {value!r}, not a whole number")
        return value

    blocks = number("block_count")
    if blocks is None or not 1 <= blocks <= MAX_LAYERS:
        raise _bad(path, f"{arch}.block_count is {blocks}; llama.cpp needs 1 to {MAX_LAYERS} layers")
    experts, used = number("expert_count") or 0, number("expert_used_count") or 0
    if experts > MAX_EXPERTS:
        raise _bad(path, f"{arch}.expert_count is {experts:,}; llama.cpp supports at most {MAX_EXPERTS}")
    if experts == 0 and used:
        raise _bad(path, f"{arch}.expert_used_count is {used} but the model has no experts")
    if experts and not 1 <= used <= experts:
        raise _bad(path, f"{arch}.expert_used_count is {used}; it must be 1 to expert_count ({experts})")
    for key, low, high in (("embedding_length", 1, 1 << 20), ("context_length", 1, 1 << 26),
                           ("attention.head_count", 0, 1 << 14), ("attention.head_count_kv", 0, 1 << 14),
                           ("feed_forward_length", 0, 1 << 24)):  # fmt: skip
        value = number(key)
        if value is not None and not low <= value <= high:
            raise _bad(path, f"{arch}.{key} is {value:,}, outside {low:,}..{high:,}")
    heads, kv_heads = number("attention.head_count"), number("attention.head_count_kv")
    if heads is not None and kv_heads is not None and kv_heads > heads:
        raise _bad(path, f"{arch}.attention.head_count_kv ({kv_heads}) exceeds head_count ({heads})")
    scaling = metadata.get(f"{arch}.rope.scaling.type")
    if scaling is not None and scaling not in ROPE_SCALING_TYPES:
        raise _bad(path, f"{arch}.rope.scaling.type {scaling!r} is not one of {', '.join(ROPE_SCALING_TYPES)}")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id"):  # fmt: skip
        token = metadata.get(key)
        if isinstance(token, int) and vocab_size is not None and not 0 <= token < vocab_size and token != -1:
            raise _bad(path, f"{key} is {token}, outside the vocabulary of {vocab_size:,} tokens")


def _plain(value: Any) -> Any:
    """numpy scalars → Python scalars (JSON-serialisable)."""
    return value.item() if hasattr(value, "item") else value


def _field_value(reader_field: Any) -> Any:
    """A metadata value for the manifest: scalars as is, long arrays summarised by length."""
    from gguf.constants import GGUFValueType

    types = reader_field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        length = len(reader_field.data)
        if length > _ARRAY_PREVIEW or len(types) > 2:
            return {"array_of": types[-1].name.lower(), "length": length}
        return [_plain(v) for v in reader_field.contents()]
    return _plain(reader_field.contents())


def _quantization(file_type: int | None, tensor_types: list[Any]) -> str:
    from gguf.constants import LlamaFileType

    if file_type is not None:
        try:
            name = LlamaFileType(file_type).name
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    # No (known) general.file_type: name it after the most common type of the 2-D weights.
    if not tensor_types:
        return "unknown"
    return str(Counter(t.name for t in tensor_types).most_common(1)[0][0])


def read_gguf_info(path: Path) -> GGUFInfo:
    """Validate ``path`` as a GGUF model and return its header information (weights never loaded)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InvalidModelFileError(f"{path} is not a regular file")
        if size < 24:
            raise _bad(path, f"the file has only {size} bytes")
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            version, tensor_count = _validate_layout(path, buf)
    except FileNotFoundError:
        raise InvalidModelFileError(f"{path}: no such file") from None
    except PermissionError:
        raise InvalidModelFileError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise InvalidModelFileError(f"{path} is a directory, not a GGUF file") from None

    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # noqa: BLE001 — the reader raises bare ValueError/struct errors on odd files
        raise _bad(path, f"the gguf reader refused it ({exc})") from None

    fields = reader.fields
    metadata = {name: _field_value(f) for name, f in fields.items() if not name.startswith("GGUF.")}

    def get(key: str) -> Any:
        return metadata.get(key)

    def get_int(key: str) -> int | None:
        value = get(key)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    arch = get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _bad(path, "it has no general.architecture")
    tokens_field = fields.get("tokenizer.ggml.tokens")
    vocab_size = len(tokens_field.data) if tokens_field is not None else get_int(f"{arch}.vocab_size")
    _check_hyperparameters(path, arch, metadata, vocab_size)

    def token(token_id: int | None) -> str | None:
        if tokens_field is None or token_id is None or not 0 <= token_id < len(tokens_field.data):
            return None
        return str(tokens_field.contents(token_id))

    special: dict[str, int] = {}
    types_field = fields.get("tokenizer.ggml.token_type")
    if tokens_field is not None and types_field is not None and len(types_field.data) == len(tokens_field.data):
        token_types = types_field.contents()
        for token_id, ttype in enumerate(token_types):
            if int(ttype) == _TOKEN_TYPE_CONTROL:
                special[str(tokens_field.contents(token_id))] = token_id
    bos_id, eos_id = get_int("tokenizer.ggml.bos_token_id"), get_int("tokenizer.ggml.eos_token_id")
    template = get("tokenizer.chat_template")
    weight_types = [t.tensor_type for t in reader.tensors if len(t.shape) >= 2]
    return GGUFInfo(
        path=path,
        size=size,
        version=version,
        tensor_count=tensor_count,
        architecture=arch,
        parameter_count=sum(int(t.n_elements) for t in reader.tensors),
        quantization=_quantization(get_int("general.file_type"), weight_types),
        context_length=get_int(f"{arch}.context_length"),
        embedding_length=get_int(f"{arch}.embedding_length"),
        block_count=get_int(f"{arch}.block_count"),
        vocab_size=vocab_size,
        chat_template=template if isinstance(template, str) and template else None,
        bos_token=token(bos_id),
        eos_token=token(eos_id),
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        special_tokens=special,
        name=get("general.name") if isinstance(get("general.name"), str) else None,
        basename=get("general.basename") if isinstance(get("general.basename"), str) else None,
        metadata=metadata,
    )
