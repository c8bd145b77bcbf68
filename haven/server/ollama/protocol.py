"""Request models of Ollama's API (``/api/*``), with the limits Haven enforces.

Field names follow Ollama's ``api/types.go`` and ``docs/api.md``. Like Ollama, unknown top-level fields and
unknown ``options`` are ignored (clients send many that only matter to Ollama's runner: ``num_gpu``,
``use_mmap``…); known fields with a wrong type or an out-of-range value are a 400. Responses are built as
plain dicts in :mod:`haven.server.ollama.serving` (they are on the hot path of streaming).
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from haven.chat.offload import MAX_MESSAGES
from haven.errors import InvalidRequestError

ThinkLevel = StrictBool | Literal["high", "medium", "low"]
KeepAlive = Any
"""Checked by :func:`parse_keep_alive` (pydantic would coerce ``true`` to 1 second)."""
Format = Literal["", "json"] | dict[str, Any] | None


class _Lenient(BaseModel):
    # Unknown fields are kept aside (``model_extra``) so the router can name them (see haven.server.leniency).
    model_config = ConfigDict(extra="allow")


class Options(BaseModel):
    """Sampling and runtime options (``options`` in every generating request). Runner options Haven has
    no use for (``num_gpu``, ``use_mmap``, ``num_thread`` …) are ignored silently, as Ollama's own list."""

    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(default=None, ge=0, le=100)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    min_p: float | None = Field(default=None, ge=0, le=1)
    typical_p: float | None = Field(default=None, ge=0, le=1)
    num_ctx: int | None = Field(default=None, ge=1, le=1_048_576)
    num_predict: int | None = Field(default=None, ge=-2)
    """-1: no limit, -2: fill the context (both: the server's max_tokens limit)."""
    num_keep: int | None = None
    seed: int | None = None
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(default=None, ge=0, le=10)
    repeat_last_n: int | None = Field(default=None, ge=-1, le=1_048_576)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    mirostat: Literal[0, 1, 2] | None = None
    mirostat_tau: float | None = Field(default=None, ge=0, le=100)
    mirostat_eta: float | None = Field(default=None, ge=0, le=10)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: list[str] | str | None) -> list[str] | None:
        if isinstance(value, str):
            value = [value]
        if value is not None and (len(value) > 16 or any(not s for s in value)):
            raise ValueError("stop takes at most 16 non-empty strings")
        return value


class ToolCallFunction(_Lenient):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCallIn(_Lenient):
    function: ToolCallFunction


class Message(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None


class _Generating(_Lenient):
    model: str = Field(min_length=1, max_length=512)
    stream: StrictBool = True
    format: Format = None
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive = None
    think: ThinkLevel | None = None


class ChatRequest(_Generating):
    messages: list[Message] = Field(default_factory=list, max_length=MAX_MESSAGES)
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(_Generating):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: StrictBool = False
    images: list[str] | None = None


class EmbedRequest(_Lenient):
    model: str = Field(min_length=1, max_length=512)
    input: str | list[str]
    truncate: StrictBool = True
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive = None
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _input_limits(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("input takes at most 2048 strings")
        return value


class EmbeddingsRequest(_Lenient):
    """Legacy ``/api/embeddings`` (one prompt, one ``embedding``)."""

    model: str = Field(min_length=1, max_length=512)
    prompt: str = ""
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive = None


class ModelRequest(_Lenient):
    """``/api/show`` and ``/api/delete``: ``model`` (``name`` is Ollama's deprecated spelling)."""

    model: str = ""
    name: str = ""
    verbose: bool = False

    @property
    def ref(self) -> str:
        return self.model or self.name


class PullRequest(_Lenient):
    model: str = ""
    name: str = ""
    insecure: bool = False
    stream: StrictBool = True

    @property
    def ref(self) -> str:
        return self.model or self.name


class CopyRequest(_Lenient):
    source: str = Field(min_length=1, max_length=512)
    destination: str = Field(min_length=1, max_length=512)


class CreateRequest(_Lenient):
    """``/api/create``: a model from an uploaded blob (``files``) or an existing model (``from``), with
    ``system``, ``template`` and ``parameters`` stored as its defaults."""

    model: str = ""
    name: str = ""
    from_: str | None = Field(default=None, alias="from", max_length=512)
    files: dict[str, str] | None = None
    """File name → ``sha256:<hex>`` digest of a blob uploaded with ``POST /api/blobs/:digest``."""
    system: str | None = Field(default=None, max_length=1_000_000)
    template: str | None = Field(default=None, max_length=1_000_000)
    parameters: dict[str, Any] | None = None
    modelfile: str | None = None
    quantize: str | None = None
    adapters: dict[str, str] | None = None
    license: str | list[str] | None = None
    messages: list[dict[str, Any]] | None = None
    stream: StrictBool = True

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @property
    def ref(self) -> str:
        return self.model or self.name


DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def parse_digest(value: str) -> str:
    """The hex of a strict ``sha256:<64 lowercase hex>`` digest; anything else is a 400."""
    match = DIGEST.fullmatch(value)
    if match is None:
        raise InvalidRequestError(f"invalid digest {value[:80]!r}: expected sha256:<64 hex digits>.", param="digest")
    return match.group(1)


# --- keep_alive ----------------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: KeepAlive) -> float | None:
    """Seconds a model stays loaded after the request; None = the server default; ``inf`` = forever.

    Accepts what Ollama accepts: a number of seconds, a numeric string, or a Go duration ("5m", "1h30m",
    "250ms"); a negative value keeps the model loaded forever, 0 unloads it right after the request.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequestError("keep_alive must be a duration like '5m' or a number of seconds.", param="keep_alive")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _DURATION_PART.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise InvalidRequestError(
                    f"keep_alive {value!r} is not a duration (use e.g. '5m', '1h30m', '30s', 0 or -1).",
                    param="keep_alive",
                ) from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if math.isnan(seconds):
        raise InvalidRequestError("keep_alive must be a number of seconds, not NaN.", param="keep_alive")
    return math.inf if seconds < 0 else seconds
