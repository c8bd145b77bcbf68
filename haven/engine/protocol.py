"""The engine's public contract: what the server (and the audit, and tests) may rely on.

The HTTP layer depends on these types only, never on llama.cpp, so that every route can be
tested in-process with a fake engine. A *ModelEngine* is one loaded model: it tokenizes,
renders chat prompts, and runs generations that yield a stream of events. Generation
requests carry token ids; text appears only in the events it emits (already detokenized,
never broken UTF-8, already split into reasoning and content).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. Validation of ranges happens in :meth:`validate`."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    typical_p: float = 1.0
    """Locally typical sampling (llama.cpp ``typ_p``); 1.0 = off."""
    mirostat: int = 0
    """0 = off; 1 = Mirostat, 2 = Mirostat 2.0 (llama.cpp/Ollama). On, it replaces top-k/top-p/min-p/typical-p
    and picks the token itself, aiming at a surprise of ``mirostat_tau`` with learning rate ``mirostat_eta``."""
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    min_tokens: int = 0
    """End-of-generation tokens are banned, and stop strings end nothing, until this many tokens were generated
    (vLLM ``min_tokens``)."""
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    grammar: str | None = None
    """GBNF grammar text. Mutually exclusive with ``json_schema``."""
    json_schema: Mapping[str, Any] | None = None
    """Constrain output to JSON matching this schema ({} or {"type": "object"} = any JSON object)."""
    logprobs: int | None = None
    """If set, report the chosen token's logprob and this many top alternatives (0..20)."""
    ignore_eos: bool = False
    """Ban every end-of-generation token, so the request runs to ``max_tokens`` (or the context's end):
    fixed-length output for benchmarks, as llama-server and vLLM offer. Stop strings still apply."""
    cache_prompt: bool = True
    """False: evaluate the whole prompt afresh instead of reusing a slot's KV prefix (llama-server's
    ``cache_prompt``). Reused and recomputed KV can differ numerically, so reproducible runs (the
    audit, issue 13) switch reuse off."""

    speculative: str | None = None
    """Per-request override of the server's speculative decoding: ``"off"`` or ``"ngram"`` (None: the
    server's setting). Output is the same either way; only speed changes."""
    speculative_draft_max: int | None = None
    """Most tokens drafted per step for this request (1..32; None: the server's setting)."""


@dataclass(frozen=True)
class GenerationRequest:
    prompt_tokens: Sequence[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    reasoning_opened: bool = False
    """True when the prompt already ends inside ``<think>`` (DeepSeek-R1 distills open it in
    the generation prompt), so the first generated text is reasoning."""
    split_reasoning: bool = True
    """Split ``<think>…</think>`` into reasoning events; False passes it through as content."""
    client_key: str = ""
    """Who asked (a user or API key id; "" = anonymous): the scheduler shares slots and prefill fairly
    between keys, so one client's burst cannot hold everyone else's requests in the queue."""


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class TextDelta:
    """Visible answer text."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ReasoningDelta:
    """Text generated between ``<think>`` and ``</think>``."""

    text: str
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Prompt tokens whose KV entries were reused from a previous request (prefix reuse)."""
    drafted_tokens: int = 0
    """Tokens proposed by speculative decoding and verified by the model."""
    accepted_tokens: int = 0
    """Drafted tokens the model agreed with (each saved one decoding step)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    usage: Usage
    stop_string: str | None = None
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds: ``queued``, ``prefill`` (time to first token), ``decode``."""


EngineEvent = TextDelta | ReasoningDelta | Finished


@runtime_checkable
class GenerationHandle(Protocol):
    """A submitted request. Iterate :meth:`events` until :class:`Finished`; cancel any time."""

    @property
    def request_id(self) -> str: ...

    def events(self) -> AsyncIterator[EngineEvent]: ...

    async def cancel(self) -> None:
        """Stop generating; the slot is freed within one scheduler step."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str
    context_length: int
    """Context per sequence slot as configured (not the model's training maximum)."""
    training_context_length: int
    vocab_size: int
    embedding_length: int
    parameter_count: int
    quantization: str
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    sha256: str = ""
    supports_thinking: bool = False


@dataclass(frozen=True)
class ChatPrompt:
    text: str
    reasoning_opened: bool = False


@dataclass(frozen=True)
class ChatTokens:
    """A rendered and tokenized chat: what :meth:`ModelEngine.tokenize_chat` returns."""

    tokens: tuple[int, ...]
    """The prompt's token ids; control tokens only where the template wrote them."""
    text: str
    """The rendered prompt (the request's strings as they were sent)."""
    reasoning_opened: bool = False
    """The generation prompt ends inside ``<think>`` (pass on as ``GenerationRequest.reasoning_opened``)."""


@dataclass(frozen=True)
class PromptLimits:
    """Request-size limits tied to the context length, checked before any rendering or tokenization."""

    max_messages: int
    max_chars: int
    """Characters of every string in messages and tools together (or of one raw prompt)."""


@dataclass(frozen=True)
class EngineStats:
    slots_total: int
    slots_in_use: int
    queue_depth: int
    cached_tokens_total: int = 0
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0
    drafted_tokens_total: int = 0
    """Speculative decoding: tokens drafted and verified, and how many of them were accepted."""
    accepted_tokens_total: int = 0
    kv_cache_type: str = "f16"
    """llama.cpp's KV cache element type (K and V)."""
    kv_bytes_per_slot: int = 0
    """KV cache bytes one sequence slot holds at its full context (``context_length`` tokens)."""

    @property
    def acceptance_rate(self) -> float:
        """Share of drafted tokens accepted (0 when nothing was drafted)."""
        return self.accepted_tokens_total / self.drafted_tokens_total if self.drafted_tokens_total else 0.0


@runtime_checkable
class ModelEngine(Protocol):
    """One loaded model serving many concurrent generations."""

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> str: ...

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatPrompt:
        """``template_kwargs``: extra template variables (``chat_template_kwargs``); they cannot override
        the standard ones (messages, tools, add_generation_prompt, enable_thinking, bos/eos tokens)."""

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
        """Render (``template`` replaces the model's own if given) and tokenize off the event loop. Text
        from the request is never parsed into control tokens. Raises PromptTooLargeError (400, over the
        :class:`PromptLimits`), ChatTemplateError (400), InvalidRequestError (lone surrogates)."""

    async def tokenize_text(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Tokenize request text off the event loop, with the same limits and checks."""

    async def submit(self, request: GenerationRequest) -> GenerationHandle:
        """Queue a request. Raises QueueFullError, ContextLengthExceededError, GrammarError."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def stats(self) -> EngineStats: ...

    async def close(self) -> None: ...


class EngineLoader(Protocol):
    """Loads a model file into a ModelEngine (the server calls this lazily on first use)."""

    def __call__(self, path: str, *, name: str, sha256: str) -> ModelEngine: ...
