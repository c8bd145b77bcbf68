"""``LlamaEngine``: one loaded GGUF model implementing :class:`haven.engine.protocol.ModelEngine`.

It ties the pieces together: :mod:`~haven.engine.memory` checks the budget before the KV
cache is allocated, :mod:`~haven.engine.llama_backend` holds the model and context,
:mod:`~haven.engine.scheduler` runs continuous batching on its own thread, and
:mod:`~haven.engine.chat_template` renders prompts. :func:`load_engine` is the server's
``EngineLoader`` (plus the settings it needs).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from haven.engine.chat_template import ChatTemplate, prompt_opens_reasoning
from haven.engine.llama_backend import LlamaBackend
from haven.engine.memory import check_budget, check_kv_cache_type, default_budget, estimate, kv_bytes_per_slot
from haven.engine.protocol import ChatPrompt, EngineStats, GenerationHandle, GenerationRequest, ModelInfo
from haven.engine.scheduler import Scheduler, SchedulerConfig, StepTimings
from haven.errors import EngineError, InvalidRequestError, ModelLoadError
from haven.settings import Settings


def _memory_guard(settings: Settings, weights_bytes: int) -> Any:
    def check(backend: LlamaBackend) -> None:
        check_kv_cache_type(
            settings.kv_cache_type,
            flash_attention=settings.flash_attention,
            head_dim_k=backend.head_dim("key"),
            head_dim_v=backend.head_dim("value"),
        )
        est = estimate(
            weights_bytes=weights_bytes,
            n_layer=backend.n_layer,
            n_embd_kv=backend.n_embd_kv,
            context_length=settings.context_length,
            parallel=settings.parallel,
            batch_size=settings.batch_size,
            n_vocab=backend.n_vocab,
            n_embd=backend.n_embd,
            kv_cache_type=settings.kv_cache_type,
        )
        budget = settings.memory_budget_bytes or default_budget()
        check_budget(est, budget=budget, context_length=settings.context_length, parallel=settings.parallel)

    return check


class LlamaEngine:
    """A model served with continuous batching over ``settings.parallel`` KV slots."""

    def __init__(self, path: str, *, name: str, sha256: str, settings: Settings) -> None:
        file = Path(path)
        if not file.is_file():
            raise ModelLoadError(f"The model file {path} does not exist.")
        if settings.batch_size < settings.parallel:
            # Every decoding slot puts one token into each step's batch.
            raise ModelLoadError(f"batch_size ({settings.batch_size}) must be at least parallel ({settings.parallel}).")
        self.backend = LlamaBackend(
            file,
            context_length=settings.context_length,
            parallel=settings.parallel,
            batch_size=settings.batch_size,
            threads=settings.threads,
            gpu_layers=settings.gpu_layers,
            verbose=settings.log_level == "debug",
            before_context=_memory_guard(settings, file.stat().st_size),
            kv_cache_type=settings.kv_cache_type,
            flash_attention=settings.flash_attention,
        )
        try:
            self._finish_init(name, sha256, settings)
        except BaseException:
            # Nothing else owns the backend yet: free its weights and context now, or every failed
            # load (a retried request, a broken template) would keep them until the process exits.
            self.backend.close()
            raise
        self._closed = False

    def _finish_init(self, name: str, sha256: str, settings: Settings) -> None:
        backend = self.backend
        template_source = backend.chat_template()
        bos = backend.token_text(backend.bos) if backend.bos >= 0 else None
        eos = backend.token_text(backend.eos) if backend.eos >= 0 else None
        self._template = ChatTemplate(template_source, bos_token=bos, eos_token=eos)
        desc = backend.description().split()
        arch = backend.meta("general.architecture") or "unknown"
        self._info = ModelInfo(
            name=name,
            architecture=arch,
            context_length=backend.n_ctx_seq,
            training_context_length=backend.n_ctx_train,
            vocab_size=backend.n_vocab,
            embedding_length=backend.n_embd,
            parameter_count=backend.n_params,
            quantization=desc[-1] if desc else "unknown",
            chat_template=template_source,
            bos_token=bos,
            eos_token=eos,
            sha256=sha256,
            supports_thinking=bool(template_source and "<think>" in template_source),
        )
        self.scheduler = Scheduler(
            backend,
            SchedulerConfig(
                parallel=settings.parallel,
                prefill_chunk=settings.prefill_chunk,
                max_queue=settings.max_queue,
                prefix_cache=settings.prefix_cache,
                max_tokens_limit=settings.max_tokens_limit,
                speculative=settings.speculative,
                speculative_draft_max=settings.speculative_draft_max,
                kv_cache_type=settings.kv_cache_type,
                kv_bytes_per_slot=kv_bytes_per_slot(
                    n_layer=backend.n_layer,
                    n_embd_kv=backend.n_embd_kv,
                    context_length=backend.n_ctx_seq,
                    kv_cache_type=settings.kv_cache_type,
                ),
                # Keyed by the file's hash: a state file is only ever loaded into the same model.
                state_dir=settings.home / "kv-state" / sha256 if re.fullmatch(r"[0-9a-f]{8,128}", sha256) else None,
            ),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _check_open(self) -> None:
        # After close() the model's memory is freed: touching it would crash the process.
        if self._closed:
            raise EngineError(f"The model {self._info.name} is unloaded (engine shut down).")

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        self._check_open()
        return self.backend.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        self._check_open()
        n_vocab = self.backend.n_vocab
        for tok in tokens:
            if not 0 <= tok < n_vocab:
                raise InvalidRequestError(f"Token {tok} is not in this model's vocabulary (0..{n_vocab - 1}).")
        return self.backend.detokenize(tokens)

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
    ) -> ChatPrompt:
        text = self._template.render(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
        )
        opened = add_generation_prompt and prompt_opens_reasoning(text)
        return ChatPrompt(text=text, reasoning_opened=opened)

    async def submit(self, request: GenerationRequest) -> GenerationHandle:
        self._check_open()
        return self.scheduler.submit(request, asyncio.get_running_loop())

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for text in texts:
            self._check_open()
            tokens = self.backend.tokenize(text, add_special=True, parse_special=False)
            if not tokens:
                raise InvalidRequestError("Cannot embed an empty text.", param="input")
            if len(tokens) > self.backend.n_ctx_seq:
                raise InvalidRequestError(
                    f"The text has {len(tokens)} tokens; embeddings take at most {self.backend.n_ctx_seq}.",
                    param="input",
                )
            out.append(await asyncio.to_thread(self.backend.embed, tokens))
        return out

    def stats(self) -> EngineStats:
        return self.scheduler.stats()

    def step_timings(self) -> StepTimings:
        """Cumulative per-step counters (see :class:`~haven.engine.scheduler.StepTimings`)."""
        return self.scheduler.timings_snapshot()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self.scheduler.close)
        self.backend.close()


def load_engine(path: str, *, name: str, sha256: str, settings: Settings) -> LlamaEngine:
    """Load ``path`` with ``settings`` (context_length, parallel, batch_size, threads, …)."""
    return LlamaEngine(path, name=name, sha256=sha256, settings=settings)
