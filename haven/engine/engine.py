"""``LlamaEngine``: one loaded GGUF model implementing :class:`haven.engine.protocol.ModelEngine`.

It ties the pieces together: :mod:`~haven.engine.memory` checks the budget before the KV
cache is allocated, :mod:`~haven.engine.llama_backend` holds the model and context,
:mod:`~haven.engine.scheduler` runs continuous batching on its own thread, and
:mod:`~haven.engine.chat_template` renders prompts. :func:`load_engine` is the server's
``EngineLoader`` (plus the :class:`~haven.engine.config.EngineConfig` it needs).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

from haven.engine.chat_template import ChatTemplate, prompt_opens_reasoning
from haven.engine.chat_tokenize import (
    SpecialTexts,
    check_limits,
    check_text_limit,
    new_nonce,
    prompt_limits,
    tokenize_rendered,
)
from haven.engine.config import EngineConfig
from haven.engine.llama_backend import LlamaBackend
from haven.engine.memory import check_budget, check_kv_cache_type, default_budget, estimate, kv_bytes_per_slot
from haven.engine.protocol import (
    ChatPrompt,
    ChatTokens,
    EngineStats,
    GenerationHandle,
    GenerationRequest,
    ModelInfo,
    PromptLimits,
)
from haven.engine.scheduler import Scheduler, SchedulerConfig, StepTimings
from haven.errors import EngineClosedError, InvalidRequestError, ModelLoadError


def _memory_guard(config: EngineConfig, weights_bytes: int) -> Any:
    def check(backend: LlamaBackend) -> None:
        check_kv_cache_type(
            config.kv_cache_type,
            flash_attention=config.flash_attention,
            head_dim_k=backend.head_dim("key"),
            head_dim_v=backend.head_dim("value"),
        )
        est = estimate(
            weights_bytes=weights_bytes,
            n_layer=backend.n_layer,
            n_embd_kv=backend.n_embd_kv,
            context_length=config.context_length,
            parallel=config.parallel,
            batch_size=config.batch_size,
            n_vocab=backend.n_vocab,
            n_embd=backend.n_embd,
            kv_cache_type=config.kv_cache_type,
        )
        budget = config.memory_budget_bytes or default_budget()
        check_budget(est, budget=budget, context_length=config.context_length, parallel=config.parallel)

    return check


class LlamaEngine:
    """A model served with continuous batching over ``config.parallel`` KV slots."""

    def __init__(self, path: str, *, name: str, sha256: str, config: EngineConfig) -> None:
        file = Path(path)
        if not file.is_file():
            raise ModelLoadError(f"The model file {path} does not exist.")
        if config.batch_size < config.parallel:
            # Every decoding slot puts one token into each step's batch.
            raise ModelLoadError(f"batch_size ({config.batch_size}) must be at least parallel ({config.parallel}).")
        self.backend = LlamaBackend(
            file,
            context_length=config.context_length,
            parallel=config.parallel,
            batch_size=config.batch_size,
            threads=config.threads,
            gpu_layers=config.gpu_layers,
            verbose=config.verbose,
            before_context=_memory_guard(config, file.stat().st_size),
            kv_cache_type=config.kv_cache_type,
            flash_attention=config.flash_attention,
        )
        try:
            self._finish_init(name, sha256, config)
        except BaseException:
            # Nothing else owns the backend yet: free its weights and context now, or every failed
            # load (a retried request, a broken template) would keep them until the process exits.
            self.backend.close()
            raise
        self._closed = False

    def _finish_init(self, name: str, sha256: str, config: EngineConfig) -> None:
        backend = self.backend
        template_source = backend.chat_template()
        bos = backend.token_text(backend.bos) if backend.bos >= 0 else None
        eos = backend.token_text(backend.eos) if backend.eos >= 0 else None
        self._template = ChatTemplate(template_source, bos_token=bos, eos_token=eos)
        self._special = SpecialTexts(backend.control_tokens)
        self._limits = prompt_limits(backend.n_ctx_seq)
        # Rendering and tokenizing request input is CPU work that grows with the input: it runs here,
        # never on the event loop, and on a pool of its own so it cannot starve pulls or model loads.
        self._prepare_pool = ThreadPoolExecutor(max(2, config.parallel), thread_name_prefix="haven-prompt")
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
                parallel=config.parallel,
                prefill_chunk=config.prefill_chunk,
                itl_target_s=config.itl_target_ms / 1000,
                max_queue=config.max_queue,
                prefix_cache=config.prefix_cache,
                max_tokens_limit=config.max_tokens_limit,
                speculative=config.speculative,
                speculative_draft_max=config.speculative_draft_max,
                kv_cache_type=config.kv_cache_type,
                kv_bytes_per_slot=kv_bytes_per_slot(
                    n_layer=backend.n_layer,
                    n_embd_kv=backend.n_embd_kv,
                    context_length=backend.n_ctx_seq,
                    kv_cache_type=config.kv_cache_type,
                ),
                # Keyed by the file's hash: a state file is only ever loaded into the same model.
                state_dir=config.state_dir / sha256
                if config.state_dir is not None and re.fullmatch(r"[0-9a-f]{8,128}", sha256)
                else None,
            ),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _check_open(self) -> None:
        # After close() the model's memory is freed: touching it would crash the process.
        if self._closed:
            raise EngineClosedError(f"The model {self._info.name} was unloaded (engine shut down); retry the request.")

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
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatPrompt:
        text = self._template.render(
            messages,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
            **dict(template_kwargs or {}),
        )
        opened = add_generation_prompt and prompt_opens_reasoning(text)
        return ChatPrompt(text=text, reasoning_opened=opened)

    @property
    def prompt_limits(self) -> PromptLimits:
        return self._limits

    def prepare_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template: str | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatTokens:
        """The blocking body of :meth:`tokenize_chat` (for worker threads, the audit and tests)."""
        self._check_open()
        check_limits(messages, tools, self._limits, self.backend.n_ctx_seq)
        chat_template = self._template if template is None else self._override(template)
        nonce, swapped = new_nonce(), list[str]()
        safe_messages = self._special.protect(list(messages), nonce, swapped)
        safe_tools = self._special.protect(list(tools), nonce, swapped) if tools else None
        extra = self._special.protect(dict(template_kwargs), nonce, swapped) if template_kwargs else {}
        rendered = chat_template.render(
            safe_messages,
            tools=safe_tools,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
            **extra,
        )
        text, tokens = tokenize_rendered(
            rendered,
            nonce,
            swapped,
            self._special,
            lambda part, special: self.backend.tokenize(part, add_special=False, parse_special=special),
        )
        opened = add_generation_prompt and prompt_opens_reasoning(text)
        return ChatTokens(tokens=tuple(tokens), text=text, reasoning_opened=opened)

    def _override(self, source: str) -> ChatTemplate:
        return _template_for(source, self._template.bos_token, self._template.eos_token)

    async def tokenize_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template: str | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatTokens:
        self._check_open()
        check_limits(messages, tools, self._limits, self.backend.n_ctx_seq)  # cheap refusals stay cheap
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._prepare_pool,
            lambda: self.prepare_chat(
                messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
                template=template,
                template_kwargs=template_kwargs,
            ),
        )

    async def tokenize_text(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        self._check_open()
        check_text_limit(text, self._limits, self.backend.n_ctx_seq)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._prepare_pool, lambda: self.tokenize(text, add_special=add_special, parse_special=parse_special)
        )

    async def submit(self, request: GenerationRequest) -> GenerationHandle:
        self._check_open()
        loop = asyncio.get_running_loop()
        if request.sampling.grammar is None and request.sampling.json_schema is None:
            return self.scheduler.submit(request, loop)
        # Compiling a schema and llama.cpp's grammar parse are CPU work: never on the event loop.
        future = loop.run_in_executor(None, self.scheduler.submit, request, loop)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The caller left while the grammar compiled: cancel the request once it is queued.
            scheduler = self.scheduler

            def cancel_when_queued(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    scheduler.cancel(done.result().request_id)

            future.add_done_callback(cancel_when_queued)
            raise

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for text in texts:
            tokens = await self.tokenize_text(text, add_special=True, parse_special=False)
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
        # No render may touch the vocabulary once it is freed; waiting for one in flight (up to the
        # template's time budget) happens off the loop.
        await asyncio.to_thread(self._prepare_pool.shutdown, wait=True)
        self.backend.close()


@lru_cache(maxsize=16)
def _template_for(source: str, bos_token: str, eos_token: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)


def load_engine(path: str, *, name: str, sha256: str, config: EngineConfig) -> LlamaEngine:
    """Load ``path`` with ``config`` (an :class:`EngineConfig`: context_length, parallel, batch_size, …)."""
    return LlamaEngine(path, name=name, sha256=sha256, config=config)
