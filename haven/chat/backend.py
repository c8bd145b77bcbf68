"""The message-level chat contract: what every API adapter, the audit and the UI ask of a chat backend.

A :class:`ChatBackend` takes a conversation (messages, tools, output format, reasoning policy, sampling)
and answers with a stream of :data:`ChatEvent`: text, reasoning and tool-call deltas, then exactly one
:class:`Final` carrying the finish reason, usage and - when the generation failed - an error. It also
embeds texts and lists and describes models. It speaks in messages and strings, never in token ids or
HTTP, so it can be implemented by

* :class:`haven.chat.local.LocalChatBackend`: Haven's own engine (templates, tool-call parsing, the
  reasoning policy and grammars happen there), and
* a remote OpenAI-compatible upstream (vLLM, llama-server, SGLang, another Haven): every field below
  maps onto a ``/v1/chat/completions`` body (the extensions onto vLLM's / llama-server's spellings) and
  every event onto a streamed chunk, so such a backend is a translation, not a reimplementation.

Rules every implementation follows (the adapters rely on them):

* Errors the caller caused, or that happen before generation starts (unknown model, bad schema, context
  too long, queue full), are raised as :class:`haven.errors.HavenError` by :meth:`ChatBackend.chat`
  itself, so an HTTP adapter can still answer with a status code.
* After that, failures arrive in-band: ``Final(finish_reason="error", error=ChatError(...))``. A server
  shutting down is an error (``code="shutdown"``), never a quiet ``stop``, in every API.
* Tool calls are reported as :class:`ToolCallDelta` (the local backend sends each call whole, once it
  is parsed; a remote one may send fragments), and a generation that called tools finishes with
  ``finish_reason="tool_calls"``.
* Closing the stream early (``aclose()``, or dropping it) cancels the generation and frees its slot.

It knows :mod:`haven.engine.protocol`'s small value types only by re-export; it knows nothing about HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from haven.engine.protocol import TokenLogprob as TokenLogprob  # re-exported: a token, its logprob, top alternatives
from haven.errors import EngineError
from haven.models.manifest import ModelDefaults

# --- the conversation ------------------------------------------------------------------------------

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A function call: ``arguments`` is a JSON object serialised as text (OpenAI's shape)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One turn. ``content`` is plain text (adapters join text parts); ``reasoning`` is the thinking an
    assistant turn carried (templates that replay it, like Qwen3's, receive it as ``reasoning_content``)."""

    role: Role
    content: str = ""
    reasoning: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    """A tool result's function name (Ollama ``tool_name``), or a participant's name."""


@dataclass(frozen=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None


ToolChoice = Literal["auto", "none", "required"] | str
"""``auto`` / ``none`` / ``required``, or the name of the one function that must be called."""


# --- what the output must look like ----------------------------------------------------------------


@dataclass(frozen=True)
class PlainText:
    """Free text (the default)."""


@dataclass(frozen=True)
class JsonObject:
    """Any JSON object (OpenAI ``json_object``, Ollama ``format: "json"``)."""


@dataclass(frozen=True)
class JsonSchema:
    """JSON matching ``schema`` (OpenAI ``json_schema``, Ollama ``format: {...}``)."""

    schema: Mapping[str, Any]
    name: str = "response"
    strict: bool | None = None


@dataclass(frozen=True)
class Grammar:
    """A GBNF grammar (llama.cpp's ``grammar`` extension; a remote upstream may refuse it)."""

    gbnf: str


OutputFormat = PlainText | JsonObject | JsonSchema | Grammar

ReasoningEffort = Literal["minimal", "low", "medium", "high"]


@dataclass(frozen=True)
class Reasoning:
    """The reasoning policy of one request.

    ``enabled``: None = the model's own default; False = no thinking (templates that can switch it off
    do, and where a template opens ``<think>`` regardless - DeepSeek-R1 - the backend closes it, so the
    reply is all content); True = think where the model can. ``effort`` is passed to templates and
    upstreams that know it. ``show``: False keeps reasoning text out of the events (it is still
    generated when enabled, as Ollama does for requests without ``think``)."""

    enabled: bool | None = None
    effort: ReasoningEffort | None = None
    show: bool = True


@dataclass(frozen=True)
class Mirostat:
    mode: Literal[1, 2]
    tau: float = 5.0
    eta: float = 0.1


@dataclass(frozen=True)
class Sampling:
    """Sampling knobs; None means "the model's default, else the backend's"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    """Multiplicative repetition penalty (vLLM ``repetition_penalty``, llama.cpp ``repeat_penalty``)."""
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    """Token id → bias, in the model's own vocabulary."""
    mirostat: Mirostat | None = None
    ignore_eos: bool = False
    speculative: Literal["off", "ngram"] | None = None
    """Per-request speculative decoding (None: the server's HAVEN_SPECULATIVE); local backends only."""
    speculative_draft_max: int | None = None
    cache_prompt: bool = True
    """Reuse a cached KV prefix (llama-server's ``cache_prompt``); False recomputes the whole prompt, so a
    seeded request gives the same answer whatever ran before it (the audit's reproducible runs)."""


@dataclass(frozen=True)
class Limits:
    """How long the answer may be and where it ends."""

    max_tokens: int | None = None
    """None: up to the backend's limit / the context's end."""
    min_tokens: int = 0
    """End-of-generation tokens are banned until this many tokens are out (vLLM ``min_tokens``)."""
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop: bool = False
    """Keep the matched stop string at the end of the text (vLLM ``include_stop_str_in_output``)."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat generation. Adapters fan out ``n`` choices as ``n`` requests (seed + i)."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    output: OutputFormat = field(default_factory=PlainText)
    reasoning: Reasoning = field(default_factory=Reasoning)
    sampling: Sampling = field(default_factory=Sampling)
    limits: Limits = field(default_factory=Limits)
    seed: int | None = None
    logprobs: int | None = None
    """None: no logprobs; n: the chosen token's logprob plus the n most likely alternatives (0..20)."""
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """Extra variables for the chat template (vLLM ``chat_template_kwargs``, e.g. ``enable_thinking``)."""
    context_length: int | None = None
    """A smaller context the client asks for (Ollama ``num_ctx``); never more than the backend has."""
    keep_alive: float | None = None
    """Seconds the model stays loaded afterwards (None: default, negative: forever); local backends only."""
    apply_defaults: bool = True
    """Apply the model's stored defaults (system prompt, stop strings, parameters) to what is unset."""
    request_id: str = ""
    affinity_key: str | None = None
    """What keeps one conversation on one upstream (a conversation id, a user or session key); remote only."""
    client_key: str = ""
    """Who asked, for the local scheduler's fair share between clients (``user:<id>`` or ``addr:<ip>``;
    "" = anonymous); the server stamps it (:mod:`haven.server.fair_share`)."""


@dataclass(frozen=True)
class TextRequest:
    """A raw completion of ``prompt`` (text, or token ids of the model's vocabulary); no template."""

    model: str
    prompt: str | tuple[int, ...]
    output: OutputFormat = field(default_factory=PlainText)
    sampling: Sampling = field(default_factory=Sampling)
    limits: Limits = field(default_factory=Limits)
    seed: int | None = None
    logprobs: int | None = None
    keep_alive: float | None = None
    apply_defaults: bool = True
    echo: bool = False
    client_key: str = ""
    """As :attr:`ChatRequest.client_key`."""
    """Send the prompt (as text) back as the first TextDelta."""
    request_id: str = ""


# --- what comes back -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """Visible answer text."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class ReasoningDelta:
    """Thinking text (``<think>…</think>`` locally, ``reasoning_content`` from an upstream)."""

    text: str


@dataclass(frozen=True)
class ToolCallDelta:
    """Part of the ``index``-th tool call; ``id`` and ``name`` arrive with its first delta."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Prompt tokens served from a reused KV prefix."""
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


ErrorCode = Literal["shutdown", "cancelled", "engine_error", "upstream_error"]


@dataclass(frozen=True)
class ChatError:
    code: ErrorCode
    message: str


FinishReason = Literal["stop", "length", "tool_calls", "error"]


@dataclass(frozen=True)
class Final:
    """The last event of every stream."""

    finish_reason: FinishReason
    usage: Usage
    error: ChatError | None = None
    stop_string: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds: ``load``, ``queued``, ``prefill`` (to the first token), ``decode``, ``total``."""


ChatEvent = TextDelta | ReasoningDelta | ToolCallDelta | Final


class ChatStream(Protocol):
    """The events of one generation; ``aclose()`` before :class:`Final` cancels it."""

    def __aiter__(self) -> AsyncIterator[ChatEvent]: ...

    async def aclose(self) -> None: ...


# --- embeddings and models -------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbedRequest:
    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    """Texts, or token ids read in the model's own vocabulary (as vLLM and llama-server do)."""
    truncate: bool = False
    """Cut inputs to the context instead of refusing them."""
    dimensions: int | None = None
    """Keep the first n dimensions (re-normalised)."""
    normalize: bool = False
    keep_alive: float | None = None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    timings: Mapping[str, float] = field(default_factory=dict)


Capability = Literal["completion", "tools", "thinking", "embedding"]


@dataclass(frozen=True)
class ModelCard:
    """A model as listings show it."""

    name: str
    modified: datetime
    size: int = 0
    digest: str = ""
    """``sha256`` hex of the weights (empty when the backend does not know it)."""
    architecture: str = ""
    parameter_count: int = 0
    quantization: str = ""
    context_length: int | None = None
    owned_by: str = "haven"


@dataclass(frozen=True)
class ModelDetails:
    """One model in depth (``/api/show``): its card, template, capabilities, defaults, metadata."""

    card: ModelCard
    chat_template: str = ""
    capabilities: tuple[Capability, ...] = ("completion",)
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """GGUF-style metadata (``general.architecture``, ``<arch>.context_length`` …)."""
    loaded_context_length: int | None = None


@runtime_checkable
class ChatBackend(Protocol):
    """One source of chat generations, embeddings and model information."""

    async def chat(self, request: ChatRequest) -> ChatStream:
        """Validate, (load,) render and submit; raises HavenError for anything wrong before generation."""

    async def complete(self, request: TextRequest) -> ChatStream:
        """A raw text completion (no template, no tools, no reasoning split)."""

    async def embed(self, request: EmbedRequest) -> Embeddings: ...

    def models(self) -> Sequence[ModelCard]:
        """Every model this backend serves (cheap; called on every listing)."""

    def model(self, name: str) -> ModelDetails:
        """One model; raises ModelNotFoundError."""


# --- helpers every consumer wants ------------------------------------------------------------------


@dataclass
class ChatResult:
    """A whole answer, collected from a stream (the non-streaming responses, the audit)."""

    content: str
    reasoning: str
    tool_calls: list[ToolCall]
    final: Final
    logprobs: list[TokenLogprob] = field(default_factory=list)


async def collect(stream: ChatStream) -> ChatResult:
    """Runs ``stream`` to its :class:`Final` (closing it either way) and joins the deltas."""
    content: list[str] = []
    reasoning: list[str] = []
    logprobs: list[TokenLogprob] = []
    calls: dict[int, list[str]] = {}
    heads: dict[int, tuple[str, str]] = {}
    final: Final | None = None
    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                content.append(event.text)
                logprobs.extend(event.logprobs)
            elif isinstance(event, ReasoningDelta):
                reasoning.append(event.text)
            elif isinstance(event, ToolCallDelta):
                if event.index not in heads:
                    heads[event.index] = (event.id or "", event.name or "")
                calls.setdefault(event.index, []).append(event.arguments)
            else:
                final = event
                break
    finally:
        await stream.aclose()
    if final is None:
        final = Final("error", Usage(), ChatError("cancelled", "the generation ended without a final event."))
    tool_calls = [ToolCall(heads[i][0], heads[i][1], "".join(calls[i])) for i in sorted(calls)]
    return ChatResult("".join(content), "".join(reasoning), tool_calls, final, logprobs)


def failure(final: Final) -> EngineError | None:
    """The error a failed generation is reported as, in every API (None when it did not fail)."""
    if final.finish_reason != "error":
        return None
    message = final.error.message if final.error is not None else "the generation failed."
    return EngineError(message)
