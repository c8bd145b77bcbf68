"""Pydantic models of the OpenAI-compatible API (``/v1``): requests with their limits, and validation.

The leniency policy (docs/compatibility.md): every field OpenAI documents is accepted (those that mean
nothing locally - ``store``, ``metadata``, ``modalities``, ``verbosity``, ``prediction``, ``audio`` … - are
ignored); the vLLM, llama-server and Ollama extensions clients send (``chat_template_kwargs``,
``repetition_penalty``, ``min_tokens``, ``stop_token_ids``, ``typical_p``, ``n_probs``, ``think``, ``num_ctx``
…) are accepted and honoured where they mean something here; a field nobody defines is kept aside
(``extra="allow"``), ignored, and named by :func:`unknown_fields` so the router can report it in the
``X-Haven-Ignored-Fields`` header and the log - or refuse it with a 400 when ``HAVEN_STRICT_REQUESTS``
is on. Wrong types and out-of-range values are always 400s naming the field. Limits live in
``Field(ge=…, le=…)``; settings-dependent limits (``max_tokens_limit``) are checked in the chat layer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from haven.chat.offload import MAX_MESSAGES

MAX_N = 16
MAX_TOKENS_HARD = 1_048_576
MAX_STOP = 16
MAX_EMBED_INPUTS = 2048


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- messages ---------------------------------------------------------------------------------------


class TextPart(_Lenient):
    """A text part; ``cache_control`` (Anthropic-style prompt caching hints) and the like are ignored."""

    type: Literal["text", "input_text", "output_text"]
    text: str
    cache_control: dict[str, Any] | None = None


class OtherPart(BaseModel):
    """Image/audio/file parts: parsed so the error can say "not supported" rather than "invalid"."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Lenient):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=1_000_000)


class ToolCallIn(_Lenient):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    refusal: str | None = None
    reasoning_content: str | None = None
    """An assistant turn's thinking (DeepSeek's and Haven's replies carry it); templates that replay
    thinking (Qwen3) receive it."""
    reasoning: str | None = None
    """The same, as vLLM spells it."""
    # What openai's ``message.model_dump()`` carries back (all null in Haven's replies): accepted, ignored.
    annotations: list[Any] | None = None
    audio: Any = None
    function_call: Any = None

    def text(self) -> str | None:
        """The content as one string (text parts joined); None when absent."""
        if self.content is None:
            return None
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


def check_messages(messages: list[ChatMessage]) -> None:
    """Raises ValueError with a message naming the offending message (→ HTTP 400)."""
    seen_conversation = False
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}] ({message.role})"
        if isinstance(message.content, list):
            for part in message.content:
                if isinstance(part, OtherPart):
                    raise ValueError(f"{where}: content parts of type '{part.type}' are not supported; send text.")
        text = message.text()
        has_text = bool(text and text.strip())
        # System messages may come anywhere (clients insert them mid-conversation; the template decides),
        # and an assistant turn may be empty (a reply that was cut off while thinking): both are what
        # clients send back, so neither is refused.
        if message.role in ("system", "developer"):
            if not has_text:
                raise ValueError(f"{where} has no content.")
        elif message.role == "user":
            seen_conversation = True
            open_calls = set()
            if not has_text:
                raise ValueError(f"{where} has no content.")
        elif message.role == "assistant":
            seen_conversation = True
            open_calls = {call.id for call in message.tool_calls or ()}
        else:  # tool
            seen_conversation = True
            if message.tool_call_id is None:
                raise ValueError(f"{where}: 'tool_call_id' is required.")
            if message.tool_call_id not in open_calls:
                raise ValueError(
                    f"{where}: a tool message must answer a tool call of the preceding assistant message "
                    f"(no call with id '{message.tool_call_id}')."
                )
            if text is None:
                raise ValueError(f"{where} has no content.")
    if not seen_conversation:
        raise ValueError("messages must contain at least one user message.")


# --- tools and response format ----------------------------------------------------------------------


class FunctionDef(_Lenient):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Lenient):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaSpec(_Lenient):
    name: str = Field(default="response", min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class ReasoningConfig(_Lenient):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    enabled: bool | None = None
    exclude: bool | None = None
    summary: str | None = None
    max_tokens: int | None = None


class ThinkingConfig(_Lenient):
    type: Literal["enabled", "disabled", "auto"] = "enabled"
    budget_tokens: int | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False
    include_obfuscation: bool | None = None


# --- requests ----------------------------------------------------------------------------------------


class _SamplingFields(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # llama.cpp-server style extras
    top_k: int | None = Field(default=None, ge=0, le=1000)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, ge=0, le=10)
    repeat_last_n: int | None = Field(default=None, ge=0, le=MAX_TOKENS_HARD)
    grammar: str | None = Field(default=None, max_length=1_000_000)
    ignore_eos: bool | None = None
    """Generate exactly max_tokens, never stopping at end-of-generation tokens (benchmark clients send it)."""
    cache_prompt: bool | None = None
    """False: no KV prefix reuse for this request, for bit-reproducible answers (llama-server's field)."""
    speculative: Literal["off", "ngram"] | None = None
    """Haven: speculative decoding for this request (None: the server's HAVEN_SPECULATIVE)."""
    speculative_draft_max: int | None = Field(default=None, ge=1, le=32)
    """Haven: most tokens drafted per step for this request."""
    # vLLM / llama-server / Ollama extensions, honoured
    typical_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=10)
    """vLLM's name for repeat_penalty."""
    min_tokens: int | None = Field(default=None, ge=0, le=MAX_TOKENS_HARD)
    stop_token_ids: list[int] | None = Field(default=None, max_length=MAX_STOP)
    include_stop_str_in_output: bool | None = None
    n_probs: int | None = Field(default=None, ge=0, le=20)
    """llama-server: report the top n token probabilities."""
    n_predict: int | None = Field(default=None, ge=-1, le=MAX_TOKENS_HARD)
    """llama-server's max_tokens (-1: no limit)."""
    num_ctx: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    """A smaller context for this request (Open WebUI copies Ollama's option to the top level)."""
    keep_alive: Any = None
    """How long the model stays loaded afterwards (Ollama's spelling: "5m", seconds, -1)."""
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: float | None = Field(default=None, ge=0, le=100)
    mirostat_eta: float | None = Field(default=None, ge=0, le=10)
    # extensions accepted and ignored (they change nothing about the answer here)
    skip_special_tokens: bool | None = None
    spaces_between_special_tokens: bool | None = None
    id_slot: int | None = None
    user: str | None = None

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"logit_bias keys must be token ids, got {key!r}")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values must be between -100 and 100, got {bias}")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if len(value) > MAX_STOP:
                raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
            if any(not s for s in value):
                raise ValueError("stop sequences must not be empty")
        return value

    def stop_tuple(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[FunctionDef] | None = Field(default=None, max_length=128)
    """OpenAI's deprecated spelling of tools."""
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    """"none" disables thinking (an R1 template's opened ``<think>`` is closed, so the answer is content)."""
    reasoning: ReasoningConfig | None = None
    """OpenRouter / Responses style ``{"effort": …, "enabled": …}``."""
    thinking: ThinkingConfig | None = None
    """Anthropic style ``{"type": "enabled" | "disabled", "budget_tokens": …}``."""
    think: StrictBool | Literal["high", "medium", "low"] | None = None
    """Ollama style: false turns thinking off, true (or a level) on."""
    chat_template_kwargs: dict[str, Any] | None = None
    """Extra chat template variables (vLLM), e.g. ``{"enable_thinking": false}``."""
    json_schema: dict[str, Any] | None = None
    """llama-server's top-level schema (when response_format is not given)."""
    # OpenAI fields that mean nothing for a local text model: accepted, ignored.
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    modalities: list[str] | None = None
    verbosity: str | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _valid_conversation(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        check_messages(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {t.function.name for t in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(f"tool_choice names '{self.tool_choice.function.name}', which is not in tools")
        if self.tool_choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        if self.tools and self.functions:
            raise ValueError("send tools or functions, not both")
        return self

    def requested_max_tokens(self) -> int | None:
        for value in (self.max_completion_tokens, self.max_tokens, self.n_predict):
            if value is not None and value >= 0:
                return value
        return None

    def all_tools(self) -> list[FunctionDef]:
        """``tools`` or the deprecated ``functions``."""
        return [t.function for t in self.tools or ()] or list(self.functions or ())

    def tool_choice_name(self) -> str:
        """``auto`` / ``none`` / ``required`` or the forced function's name (``function_call`` too)."""
        choice = self.tool_choice if self.tool_choice is not None else self.function_call
        if isinstance(choice, NamedToolChoice):
            return choice.function.name
        if isinstance(choice, NamedFunction):
            return choice.name
        return choice or "auto"


PromptInput = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_SamplingFields):
    prompt: PromptInput
    max_tokens: int | None = Field(default=16, ge=0, le=MAX_TOKENS_HARD)
    json_schema: dict[str, Any] | None = None
    """llama-server's top-level schema extension."""
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value: PromptInput) -> PromptInput:
        if isinstance(value, list):
            if not value:
                raise ValueError("prompt must not be an empty list")
            if len(value) > MAX_N:
                raise ValueError(f"at most {MAX_N} prompts per request")
        return value

    def prompts(self) -> list[str | list[int]]:
        value = self.prompt
        if isinstance(value, str):
            return [value]
        if all(isinstance(v, int) for v in value):
            return [[int(v) for v in value]]  # type: ignore[arg-type]
        return list(value)  # type: ignore[arg-type]


class EmbeddingRequest(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=65536)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _inputs(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if isinstance(value, list) and not value:
            raise ValueError("input must not be empty")
        if isinstance(value, list) and len(value) > MAX_EMBED_INPUTS:
            raise ValueError(f"at most {MAX_EMBED_INPUTS} inputs per request")
        for item in items:
            if isinstance(item, str) and not item:
                raise ValueError("input strings must not be empty")
            if isinstance(item, list) and not item:
                raise ValueError("token arrays must not be empty")
        return value
