"""Pydantic models of OpenAI's Responses API (``POST /v1/responses``), under the same leniency policy as
chat completions (unknown fields ignored and named; see :mod:`haven.server.openai.protocol`).

``input`` is a string or a list of items: messages (``role`` + text or ``input_text``/``output_text``
parts), ``function_call`` items (a call the model made), ``function_call_output`` items (its result) and
``reasoning`` items (the model's earlier thinking, handed to the next assistant turn).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from haven.server.openai.protocol import MAX_TOKENS_HARD, FunctionDef, ReasoningConfig


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Lenient):
    type: Literal["input_text", "output_text", "text", "refusal", "input_image", "input_file", "summary_text"]
    text: str | None = None
    refusal: str | None = None


class InputItem(_Lenient):
    """One item of ``input``: a message (``role``), or a typed item (``type``)."""

    type: Literal["message", "function_call", "function_call_output", "reasoning"] | None = None
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[ContentPart] | None = None
    call_id: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    arguments: str | None = Field(default=None, max_length=1_000_000)
    output: str | list[ContentPart] | None = None
    summary: list[ContentPart] | None = None
    id: str | None = None
    status: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> InputItem:
        kind = self.type or ("message" if self.role else None)
        if kind is None:
            raise ValueError("an input item needs a role or a type")
        if kind == "message" and self.role is None:
            raise ValueError("a message item needs a role")
        if kind in ("function_call", "function_call_output") and not self.call_id:
            raise ValueError(f"a {kind} item needs a call_id")
        if kind == "function_call" and not self.name:
            raise ValueError("a function_call item needs a name")
        self.type = kind
        return self

    def text(self) -> str:
        value = self.output if self.type == "function_call_output" else self.content
        if value is None:
            return "".join(p.text or "" for p in self.summary or ()) if self.type == "reasoning" else ""
        if isinstance(value, str):
            return value
        for part in value:
            if part.type in ("input_image", "input_file"):
                raise ValueError(f"content parts of type '{part.type}' are not supported; send text")
        return "".join(p.text or "" for p in value)


class FunctionTool(FunctionDef):
    """A Responses-style tool: the function's fields at the top level."""

    type: Literal["function"] = "function"


class NamedFunctionChoice(_Lenient):
    type: Literal["function"]
    name: str


class TextFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str = Field(default="response", max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TextConfig(_Lenient):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(_Lenient):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[InputItem] = Field(min_length=1)
    instructions: str | None = None
    tools: list[FunctionTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_HARD)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    stream: bool = False
    store: bool | None = None
    """Accepted; Haven keeps no responses yet (so ``previous_response_id`` is refused)."""
    previous_response_id: str | None = None
    # Accepted and ignored: nothing to do locally.
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    truncation: str | None = None
    user: str | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    background: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None
    max_tool_calls: int | None = None
    conversation: Any = None
