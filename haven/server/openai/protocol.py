"""Pydantic models of the OpenAI-compatible API (``/v1``): requests with their limits, and validation.

Requests forbid unknown fields, as OpenAI does ("Unrecognized request argument supplied"), but accept
every field OpenAI documents - those Haven cannot honour but that change nothing about the answer
(``user``, ``store``, ``metadata``, ``service_tier`` ...) are accepted and ignored, so SDKs and tools
that send them keep working. llama.cpp-style sampling extras (``top_k``, ``min_p``, ``repeat_penalty``,
``grammar``) are accepted too. Limits live in ``Field(ge=…, le=…)``; settings-dependent limits
(``max_tokens_limit``) are checked in :mod:`.serving`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_N = 16
MAX_TOKENS_HARD = 1_048_576
MAX_STOP = 16
MAX_EMBED_INPUTS = 2048


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- messages ---------------------------------------------------------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class OtherPart(BaseModel):
    """Image/audio/file parts: parsed so the error can say "not supported" rather than "invalid"."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Strict):
    name: str = Field(min_length=1, max_length=256)
    arguments: str = Field(max_length=1_000_000)


class ToolCallIn(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = Field(default=None, max_length=256)
    refusal: str | None = None
    reasoning_content: str | None = None
    """DeepSeek's API echoes the reasoning back; accepted and dropped (templates strip it anyway)."""

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
        has_text = bool(text and text.strip()) if message.role != "assistant" else bool(text)
        if message.role in ("system", "developer"):
            if seen_conversation:
                raise ValueError(f"{where}: system messages must come before the conversation's first message.")
            if not has_text:
                raise ValueError(f"{where} has no content.")
        elif message.role == "user":
            seen_conversation = True
            open_calls = set()
            if not has_text:
                raise ValueError(f"{where} has no content.")
        elif message.role == "assistant":
            seen_conversation = True
            if not has_text and not message.tool_calls:
                raise ValueError(f"{where} has neither content nor tool_calls.")
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


class FunctionDef(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type 'json_schema' needs a 'json_schema' object")
        return self


class StreamOptions(_Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


# --- requests ----------------------------------------------------------------------------------------


class _SamplingFields(_Strict):
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
    user: str | None = None
    # llama.cpp-server style extras
    top_k: int | None = Field(default=None, ge=0, le=1000)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, ge=0, le=10)
    repeat_last_n: int | None = Field(default=None, ge=0, le=MAX_TOKENS_HARD)
    grammar: str | None = Field(default=None, max_length=1_000_000)
    ignore_eos: bool | None = None
    cache_prompt: bool | None = None
    """False: no KV prefix reuse for this request, for bit-reproducible answers (llama-server's field)."""
    """Generate exactly max_tokens, never stopping at end-of-generation tokens (benchmark clients send it)."""

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
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    """"none" disables thinking for models whose templates support switching it off."""
    # Accepted, meaningless for a local server.
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

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
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


PromptInput = str | list[str] | list[int] | list[list[int]]


class CompletionRequest(_SamplingFields):
    prompt: PromptInput
    max_tokens: int | None = Field(default=16, ge=0, le=MAX_TOKENS_HARD)
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


class EmbeddingRequest(_Strict):
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
