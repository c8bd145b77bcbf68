"""A thin, typed wrapper over llama-cpp-python's low-level ctypes API.

Everything else in the engine talks to llama.cpp through this module: loading a model
(memory-mapped), one generation context with ``n_seq_max = parallel`` sequence slots, a
preallocated ``llama_batch``, ``llama_decode``, numpy views over logits rows, the KV memory
sequence operations, tokenization, vocabulary and metadata queries, per-sequence state
files and (in a second, lazily created context) embeddings.

KV layout: one context with ``n_ctx = context_length * parallel`` and ``kv_unified = False``,
so llama.cpp gives every sequence its own KV stream of ``context_length`` cells. Each slot
then has a guaranteed context of its own (no slot can starve the others), and attention in
a batched step only reads each sequence's own stream — the layout llama-server uses for
``--parallel N`` without ``--kv-unified``. The price: llama.cpp decodes only consecutive
sequence ids in one pass, which :mod:`~haven.engine.packing` arranges.

The wrapper owns raw pointers; :meth:`LlamaBackend.close` frees them. It is not thread-safe:
the scheduler thread is the only caller of the generation context.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import llama_cpp.llama_cpp as ll
import numpy as np
import numpy.typing as npt

from haven.engine.chat_tokenize import check_encodable
from haven.errors import EngineError, ModelLoadError

_backend_lock = threading.Lock()
_backend_ready = False
_log_callback: Any = None  # keeps the ctypes callback alive for the life of the process


def _silence_logs(verbose: bool) -> None:
    """Route llama.cpp's log through a callback that drops it unless ``verbose``."""
    global _log_callback
    if verbose:
        ll.llama_log_set(ll.llama_log_callback(), ctypes.c_void_p())  # NULL: llama.cpp logs to stderr
        return

    @ll.llama_log_callback
    def _drop(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _log_callback = _drop
    ll.llama_log_set(_drop, ctypes.c_void_p())


def extra_buffer_types_safe(system_info: str) -> bool:
    """Whether llama.cpp's extra weight buffers (repacking, AMX) may be used with this build.

    A build with AMX kernels (``AMX_INT8 = 1``, compiled for an Intel Sapphire Rapids or newer CPU)
    moves the weights into an AMX buffer, and the vendored ggml segfaults in its first decode there
    (measured on a Xeon with AMX: every model, the first ``llama_decode``; the crash llama.cpp issue
    #20824 reports). Plain CPU buffers run the same model with the AVX-512 kernels, and correctly.
    """
    return "AMX_INT8 = 1" not in system_info


@functools.cache
def extra_buffer_types_allowed() -> bool:
    """:func:`extra_buffer_types_safe` for the llama.cpp this process loaded (its build cannot change)."""
    return extra_buffer_types_safe(ll.llama_print_system_info().decode(errors="replace"))


def init_backend(verbose: bool = False) -> None:
    global _backend_ready
    with _backend_lock:
        _silence_logs(verbose)
        if not _backend_ready:
            ll.llama_backend_init()
            _backend_ready = True


_GGML_KV_TYPES = {"f16": ll.GGML_TYPE_F16, "q8_0": ll.GGML_TYPE_Q8_0, "q4_0": ll.GGML_TYPE_Q4_0}
_FLASH_ATTENTION = {
    "auto": ll.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": ll.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": ll.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}


class Batch:
    """A preallocated ``llama_batch`` filled by direct writes into its C arrays."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = ll.llama_batch_init(capacity, 0, 1)
        self._token = self.raw.token
        self._pos = self.raw.pos
        self._n_seq = self.raw.n_seq_id
        self._seq = self.raw.seq_id
        self._logits = self.raw.logits
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (the logits row when ``logits``)."""
        i = self.n
        self._token[i] = token
        self._pos[i] = pos
        self._n_seq[i] = 1
        self._seq[i][0] = seq_id
        self._logits[i] = 1 if logits else 0
        self.n = i + 1
        return i

    def free(self) -> None:
        if self.capacity:
            ll.llama_batch_free(self.raw)
            self.capacity = 0


class LlamaBackend:
    """One loaded model and its generation context."""

    def __init__(
        self,
        path: str | Path,
        *,
        context_length: int,
        parallel: int,
        batch_size: int,
        threads: int,
        gpu_layers: int = 0,
        verbose: bool = False,
        before_context: Callable[[LlamaBackend], None] | None = None,
        kv_cache_type: str = "f16",
        flash_attention: str = "auto",
    ) -> None:
        """``before_context(self)`` runs after the (memory-mapped) model is loaded and before the
        context allocates its KV cache: the memory guard raises there so nothing big is allocated."""
        init_backend(verbose)
        self.path = str(path)
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = gpu_layers if gpu_layers >= 0 else 1_000_000
        self.extra_buffer_types = extra_buffer_types_allowed()
        mparams.use_extra_bufts = self.extra_buffer_types
        model = ll.llama_model_load_from_file(self.path.encode(), mparams)
        if not model:
            raise ModelLoadError(f"llama.cpp could not load the model file {self.path}.")
        self.model = model
        self.vocab = ll.llama_model_get_vocab(model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        self.parallel = parallel
        if before_context is not None:
            try:
                before_context(self)
            except BaseException:
                ll.llama_model_free(model)
                self.model = None
                raise
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = context_length * parallel
        cparams.n_batch = batch_size
        cparams.n_ubatch = batch_size
        cparams.n_seq_max = parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = False
        cparams.no_perf = True
        # K and V share one type; llama.cpp needs flash attention for a quantized V (auto turns it on).
        cparams.type_k = cparams.type_v = _GGML_KV_TYPES[kv_cache_type]
        cparams.flash_attn_type = _FLASH_ATTENTION[flash_attention]
        # Speculative decoding verifies several drafted tokens of one sequence per step: each needs logits.
        cparams.n_outputs_max_per_seq = 0
        ctx = ll.llama_init_from_model(model, cparams)
        if not ctx:
            ll.llama_model_free(model)
            raise ModelLoadError(
                f"llama.cpp could not create a context of {context_length} tokens × {parallel} slots "
                f"(KV cache {kv_cache_type}, flash attention {flash_attention}); lower context_length or parallel"
                + (", or use kv_cache_type f16." if kv_cache_type != "f16" else ".")
            )
        self.ctx = ctx
        self.memory = ll.llama_get_memory(ctx)
        self.n_ctx_seq = int(ll.llama_n_ctx_seq(ctx))
        self.n_batch = int(ll.llama_n_batch(ctx))
        self.threads = threads
        self.batch = Batch(self.n_batch)
        self._piece_cache: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._embed_ctx: Any = None
        self._embed_lock = threading.Lock()

    # --- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        with self._embed_lock:  # an embedding in flight on another thread finishes first
            self._close()

    def _close(self) -> None:
        if getattr(self, "batch", None) is not None:
            self.batch.free()
        if self._embed_ctx:
            ll.llama_free(self._embed_ctx)
            self._embed_ctx = None
        if getattr(self, "ctx", None):
            ll.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            ll.llama_model_free(self.model)
            self.model = None

    # --- metadata -------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        raw = ll.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    @property
    def n_ctx_train(self) -> int:
        return int(ll.llama_model_n_ctx_train(self.model))

    @property
    def n_embd(self) -> int:
        return int(ll.llama_model_n_embd(self.model))

    @property
    def n_layer(self) -> int:
        return int(ll.llama_model_n_layer(self.model))

    @property
    def n_head_kv(self) -> int:
        return int(ll.llama_model_n_head_kv(self.model))

    @property
    def n_embd_kv(self) -> int:
        return self.head_dim("key") * self.n_head_kv

    def head_dim(self, which: str = "key") -> int:
        """Size of one attention head's key (or ``"value"``) vector."""
        arch = self.meta("general.architecture") or ""
        length = self.meta(f"{arch}.attention.{which}_length")
        n_head = int(ll.llama_model_n_head(self.model))
        return int(length) if length else self.n_embd // max(1, n_head)

    @property
    def is_recurrent(self) -> bool:
        """Recurrent or hybrid (Mamba-style) models keep a state that cannot be trimmed to a position."""
        return bool(ll.llama_model_is_recurrent(self.model) or ll.llama_model_is_hybrid(self.model))

    @property
    def n_params(self) -> int:
        return int(ll.llama_model_n_params(self.model))

    @property
    def size_bytes(self) -> int:
        return int(ll.llama_model_size(self.model))

    def description(self) -> str:
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.model, buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    # --- vocabulary -----------------------------------------------------------------------
    @property
    def bos(self) -> int:
        return int(ll.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(ll.llama_vocab_eos(self.vocab))

    @property
    def eot(self) -> int:
        return int(ll.llama_vocab_eot(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    @cached_property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token (a scan of the whole vocabulary, done once)."""
        return tuple(t for t in range(self.n_vocab) if self.is_eog(t))

    def token_text(self, token: int) -> str | None:
        if token < 0 or token >= self.n_vocab:
            return None
        raw = ll.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else None

    @cached_property
    def control_tokens(self) -> dict[str, int]:
        """Text → id of every control token (what ``parse_special`` turns text into), scanned once."""
        control = ll.LLAMA_TOKEN_ATTR_CONTROL
        found: dict[str, int] = {}
        for token in range(self.n_vocab):
            if int(ll.llama_vocab_get_attr(self.vocab, token)) & control:
                text = self.token_text(token)
                if text:
                    found.setdefault(text, token)
        return found

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from JSON ("\ud800"): the client's error, a 400
            check_encodable(text)
            raise
        cap = len(data) + 8
        buf = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (ll.llama_token * cap)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            raise EngineError("llama.cpp failed to tokenize the text.")
        return list(buf[:n])

    def token_to_piece(self, token: int) -> bytes:
        """The raw bytes of one token (special tokens rendered), cached per id."""
        piece = self._piece_cache.get(token)
        if piece is None:
            buf = self._piece_buf
            n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            piece = buf.raw[:n]
            self._piece_cache[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.token_to_piece(t) for t in tokens).decode("utf-8", errors="replace")

    # --- decoding -------------------------------------------------------------------------
    def decode(self, batch: Batch) -> int:
        """``llama_decode`` of the filled batch; 0 on success (llama.cpp's codes otherwise)."""
        batch.raw.n_tokens = batch.n
        return int(ll.llama_decode(self.ctx, batch.raw))

    def logits_row(self, index: int) -> npt.NDArray[np.float32]:
        """A zero-copy numpy view of the logits of batch entry ``index`` (valid until the next decode)."""
        ptr = ll.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def seq_rm(self, seq_id: int, p0: int = 0, p1: int = -1) -> bool:
        return bool(ll.llama_memory_seq_rm(self.memory, seq_id, p0, p1))

    def seq_pos_max(self, seq_id: int) -> int:
        """Largest position stored for ``seq_id``; -1 when the sequence holds nothing."""
        return int(ll.llama_memory_seq_pos_max(self.memory, seq_id))

    def clear_memory(self) -> None:
        ll.llama_memory_clear(self.memory, True)

    # --- per-sequence state files -------------------------------------------------------
    def save_seq(self, seq_id: int, path: str | Path, tokens: Sequence[int]) -> int:
        arr = (ll.llama_token * len(tokens))(*tokens)
        n = ll.llama_state_seq_save_file(self.ctx, str(path).encode(), seq_id, arr, len(tokens))
        if n == 0:
            raise EngineError(f"Could not save the state of slot {seq_id} to {path}.")
        return int(n)

    def load_seq(self, seq_id: int, path: str | Path, max_tokens: int) -> list[int]:
        arr = (ll.llama_token * max_tokens)()
        count = ctypes.c_size_t(0)
        n = ll.llama_state_seq_load_file(
            self.ctx,
            str(path).encode(),
            seq_id,
            arr,
            max_tokens,
            ctypes.byref(count),
        )
        if n == 0:
            raise EngineError(f"Could not load the saved state {path} into slot {seq_id}.")
        return list(arr[: count.value])

    # --- embeddings -----------------------------------------------------------------------
    def _embedding_context(self) -> Any:
        if self._embed_ctx:
            return self._embed_ctx
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = self.n_ctx_seq
        cparams.n_batch = self.n_ctx_seq
        cparams.n_ubatch = self.n_ctx_seq
        cparams.n_seq_max = 1
        cparams.n_threads = self.threads
        cparams.n_threads_batch = self.threads
        cparams.embeddings = True
        cparams.pooling_type = ll.LLAMA_POOLING_TYPE_UNSPECIFIED
        ctx = ll.llama_init_from_model(self.model, cparams)
        if ctx and ll.llama_pooling_type(ctx) == ll.LLAMA_POOLING_TYPE_NONE:
            # Generative models declare no pooling; mean pooling is what Ollama uses for them.
            ll.llama_free(ctx)
            cparams.pooling_type = ll.LLAMA_POOLING_TYPE_MEAN
            ctx = ll.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise EngineError("llama.cpp could not create an embeddings context for this model.")
        self._embed_ctx = ctx
        return ctx

    def embed(self, tokens: Sequence[int]) -> list[float]:
        """Pooled, L2-normalised embedding of one token sequence (thread-safe, own context)."""
        with self._embed_lock:
            ctx = self._embedding_context()
            mem = ll.llama_get_memory(ctx)
            ll.llama_memory_clear(mem, True)
            batch = Batch(len(tokens))
            try:
                for i, tok in enumerate(tokens):
                    batch.add(tok, i, 0, True)
                batch.raw.n_tokens = batch.n
                if ll.llama_decode(ctx, batch.raw) != 0:
                    raise EngineError("llama.cpp failed to compute the embedding.")
                ptr = ll.llama_get_embeddings_seq(ctx, 0)
                if not ptr:
                    raise EngineError("This model produced no pooled embedding.")
                vec = np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).astype(np.float64)
            finally:
                batch.free()
            norm = float(np.linalg.norm(vec))
            return (vec / norm if norm > 0 else vec).tolist()
