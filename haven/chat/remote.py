"""A :class:`~haven.chat.backend.ChatBackend` over one remote OpenAI-compatible upstream.

Translation, not reimplementation: a :class:`ChatRequest` becomes a ``/v1/chat/completions`` body in the
upstream's dialect (vLLM's ``repetition_penalty`` / ``min_tokens`` / ``chat_template_kwargs``, llama-server's
``repeat_penalty`` / ``grammar``), and each streamed chunk becomes events. Reasoning arrives as ``reasoning``
(vLLM), ``reasoning_content`` (DeepSeek, older vLLM, llama-server) or inline ``<think>`` tags, and always
leaves as :class:`ReasoningDelta`; tool-call fragments and usage are carried through.

Failure is bounded and explicit. :meth:`RemoteChatBackend.chat` returns only once the upstream's first
event has arrived, so everything that goes wrong before the first byte raises (``UpstreamUnavailableError``
for what another upstream might serve — connection refused, timeouts, 5xx — which the router retries once
elsewhere; the upstream's own 4xx mapped to Haven's errors), and everything after it ends the stream with
``Final(finish_reason="error")``: never a silent truncation. Every read has a timeout, lines and bodies
have size caps, and garbage is a 502 (``UpstreamError``), never a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from haven.chat.backend import (
    ChatError,
    ChatEvent,
    ChatRequest,
    Embeddings,
    EmbedRequest,
    Final,
    Grammar,
    JsonObject,
    JsonSchema,
    Message,
    ModelCard,
    ModelDetails,
    ReasoningDelta,
    TextDelta,
    TextRequest,
    ToolCallDelta,
    Usage,
)
from haven.chat.upstreams import Upstream
from haven.engine.reasoning import ReasoningSplitter
from haven.errors import (
    HavenError,
    InvalidRequestError,
    ModelNotFoundError,
    QueueFullError,
    UpstreamError,
    UpstreamUnavailableError,
)

MAX_LINE_BYTES = 1 << 20
"""One SSE line (a chunk); vLLM's largest are a few KB."""
MAX_BODY_BYTES = 64 << 20
"""A whole non-streamed body (embeddings of a large batch are the biggest)."""

Outcome = Callable[[bool], None]
"""Told True when the upstream answered, False when it failed (passive health: the circuit breaker)."""
Finished = Callable[[str, str, Usage], None]
"""Told (model, finish reason, usage) once per stream, however it ended: its tokens go to the client's
rate-limit bucket, the security log's counts and /metrics like a local generation's."""


def request_body(request: ChatRequest, kind: str) -> dict[str, Any]:
    """The ``/v1/chat/completions`` body for ``request`` in the dialect of an upstream of ``kind``."""
    body: dict[str, Any] = {"model": request.model, "messages": [_message(m) for m in request.messages],
                            "stream": True, "stream_options": {"include_usage": True}}
    if request.tools:
        body["tools"] = [{"type": "function", "function": {
            k: v for k, v in {"name": t.name, "description": t.description, "parameters": t.parameters,
                              "strict": t.strict}.items() if v is not None}} for t in request.tools]
        choice = request.tool_choice
        body["tool_choice"] = choice if choice in ("auto", "none", "required") else {
            "type": "function", "function": {"name": choice}}
    output = request.output
    if isinstance(output, JsonObject):
        body["response_format"] = {"type": "json_object"}
    elif isinstance(output, JsonSchema):
        schema: dict[str, Any] = {"name": output.name, "schema": dict(output.schema)}
        if output.strict is not None:
            schema["strict"] = output.strict
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(output, Grammar):
        if kind not in ("llama-server", "haven", "vllm", "sglang"):
            raise InvalidRequestError("this model's upstream does not accept GBNF grammars", param="grammar")
        body["grammar" if kind in ("llama-server", "haven") else "guided_grammar"] = output.gbnf
    template_kwargs = dict(request.template_kwargs)
    if request.reasoning.enabled is not None:
        template_kwargs.setdefault("enable_thinking", request.reasoning.enabled)
        if kind == "haven" and not request.reasoning.enabled:
            body["reasoning_effort"] = "none"
    if request.reasoning.effort is not None:
        body["reasoning_effort"] = request.reasoning.effort
    if template_kwargs:
        body["chat_template_kwargs"] = template_kwargs
    s = request.sampling
    for key, value in (("temperature", s.temperature), ("top_p", s.top_p), ("top_k", s.top_k),
                       ("min_p", s.min_p), ("typical_p", s.typical_p), ("presence_penalty", s.presence_penalty),
                       ("frequency_penalty", s.frequency_penalty), ("seed", request.seed)):
        if value is not None:
            body[key] = value
    if s.repeat_penalty is not None:
        body["repeat_penalty" if kind == "llama-server" else "repetition_penalty"] = s.repeat_penalty
    if s.logit_bias:
        body["logit_bias"] = {str(token): bias for token, bias in s.logit_bias.items()}
    if s.ignore_eos:
        body["ignore_eos"] = True
    if not s.cache_prompt and kind in ("llama-server", "haven"):
        body["cache_prompt"] = False
    limits = request.limits
    if limits.max_tokens is not None:
        body["max_tokens"] = limits.max_tokens
    if limits.min_tokens:
        body["min_tokens"] = limits.min_tokens
    if limits.stop:
        body["stop"] = list(limits.stop)
    if limits.stop_token_ids:
        body["stop_token_ids"] = list(limits.stop_token_ids)
    if limits.include_stop:
        body["include_stop_str_in_output"] = True
    if request.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.logprobs
    return body


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role != "tool":
        out["name"] = message.name
    return out


@dataclass
class _ChunkReader:
    """Turns the upstream's SSE chunks into events, keeping reasoning, tool-call indices and usage straight."""

    inline_think: bool

    def __post_init__(self) -> None:
        self.splitter = ReasoningSplitter()
        self.usage = Usage()
        self.finish: str | None = None
        self.saw_tool_calls = False
        self.delta_chunks = 0
        """Chunks that carried output: the token count when an upstream sends no usage (about one each)."""

    def events(self, chunk: Mapping[str, Any]) -> list[ChatEvent]:
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, Mapping) else str(error)
            raise _InBandError(str(message or "the upstream reported an error"))
        out: list[ChatEvent] = []
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            details = usage.get("prompt_tokens_details") or {}
            self.usage = Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                               int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            if usage is None:
                raise UpstreamError("the upstream sent a chunk without choices")
            return out
        for choice in choices[:1]:  # Haven asks for one choice per request
            delta = choice.get("delta") or {}
            if not isinstance(delta, Mapping):
                raise UpstreamError("the upstream sent a malformed delta")
            if delta:
                self.delta_chunks += 1
            thinking = delta.get("reasoning") or delta.get("reasoning_content")
            if isinstance(thinking, str) and thinking:
                out.append(ReasoningDelta(thinking))
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self.inline_think:
                    out.extend(ReasoningDelta(t) if k == "reasoning" else TextDelta(t)
                               for k, t in self.splitter.push(content))
                else:
                    out.append(TextDelta(content))
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                self.saw_tool_calls = True
                out.append(ToolCallDelta(int(call.get("index", 0)), call.get("id"), function.get("name"),
                                         function.get("arguments") or ""))
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
        return out

    def charged_usage(self) -> Usage:
        """The usage to account: the upstream's, or the chunks that arrived when it sent none (a cut stream)."""
        if self.usage.completion_tokens >= self.delta_chunks:
            return self.usage
        return Usage(self.usage.prompt_tokens, self.delta_chunks, self.usage.cached_tokens)

    def final(self, started: float) -> list[ChatEvent]:
        tail: list[ChatEvent] = [ReasoningDelta(t) if k == "reasoning" else TextDelta(t)
                                 for k, t in self.splitter.flush()] if self.inline_think else []
        reason = "tool_calls" if self.finish == "tool_calls" or (self.saw_tool_calls and self.finish == "stop") \
            else "length" if self.finish == "length" else "stop"
        return [*tail, Final(reason, self.usage, timings={"total": time.monotonic() - started})]  # type: ignore[arg-type]


class _InBandError(Exception):
    pass


class RemoteStream:
    """The events of one upstream generation; closing it closes the HTTP response (the upstream cancels)."""

    def __init__(self, response: httpx.Response, lines: AsyncIterator[str], reader: _ChunkReader,
                 first: list[ChatEvent], outcome: Outcome, on_close: Callable[[], None],
                 model: str = "", finished: Finished | None = None) -> None:
        self._response = response
        self._model = model
        self._finished = finished
        self._reason = "cancelled"
        self._lines = lines
        self._reader = reader
        self._pending = list(first)
        self._outcome = outcome
        self._on_close = on_close
        self._started = time.monotonic()
        self._done = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ChatEvent]:
        try:
            while self._pending:
                event = self._pending.pop(0)
                if isinstance(event, Final):
                    self._reason = event.finish_reason
                yield event
                if isinstance(event, Final):
                    return
            async for chunk in _chunks(self._lines):
                if chunk is None:
                    await _drain(self._lines)  # before the Final: a consumer may stop iterating at it
                    break
                for event in self._reader.events(chunk):
                    yield event
            else:
                if self._reader.finish is None:  # a body that ended cleanly, but before the answer did
                    raise UpstreamError("the upstream ended the stream before finishing the answer; "
                                        "the answer is incomplete")
            for event in self._reader.final(self._started):
                if isinstance(event, Final):
                    self._reason = event.finish_reason
                yield event
            self._outcome(True)
        except (httpx.HTTPError, UpstreamError, _InBandError, UnicodeDecodeError) as exc:
            self._outcome(not isinstance(exc, httpx.TransportError))
            self._reason = "error"
            yield Final("error", self._reader.usage, ChatError("upstream_error", _describe(exc)))
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._response.aclose()
            self._on_close()
            if self._finished is not None:  # however it ended: a client that left still pays for what came
                self._finished(self._model, self._reason, self._reader.charged_usage())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the upstream stopped sending mid-answer (timed out); the answer is incomplete"
    if isinstance(exc, httpx.TransportError):
        return "the connection to the upstream broke mid-answer; the answer is incomplete"
    if isinstance(exc, HavenError):
        return exc.message
    return f"the upstream failed mid-answer: {exc}"


DRAIN_SECONDS = 0.5
"""How long to wait for the end of a body after ``[DONE]`` (it normally follows in the same packet)."""


async def _drain(lines: AsyncIterator[str]) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body), so the connection goes back to the pool:
    a response closed before its end closes its connection, and every request then paid a new TCP connect
    to the upstream (part of the time to first token Haven added). Bounded in time and size."""
    size = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            async for line in lines:
                size += len(line)
                if size > MAX_LINE_BYTES:
                    return
    except (TimeoutError, httpx.HTTPError):
        pass  # the connection is closed instead, as before


async def _chunks(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any] | None]:
    """Parsed ``data:`` payloads; None at ``[DONE]``. Garbage and oversized lines raise UpstreamError."""
    async for line in lines:
        if len(line) > MAX_LINE_BYTES:
            raise UpstreamError("the upstream sent an oversized stream line")
        if not line.startswith("data:"):
            continue  # blank separators, comments, "event:" lines
        payload = line[5:].strip()
        if payload == "[DONE]":
            yield None
            return
        try:
            data = json.loads(payload)
        except ValueError:
            raise UpstreamError("the upstream sent a stream chunk that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError("the upstream sent a stream chunk that is not a JSON object")
        yield data


class RemoteChatBackend:
    """One upstream. ``client`` is shared by the pool; ``outcome`` feeds the upstream's circuit breaker."""

    def __init__(self, upstream: Upstream, client: httpx.AsyncClient, *, outcome: Outcome | None = None,
                 environ: dict[str, str] | None = None, finished: Finished | None = None) -> None:
        self.upstream = upstream
        self._finished = finished
        self._client = client
        self._outcome = outcome or (lambda ok: None)
        self._environ = environ
        self._models: tuple[str, ...] = upstream.models
        self.outstanding = 0
        # Parsed and merged once: httpx's build_request re-parses the URL and merges the client's headers on
        # every call, a tenth of a millisecond of each chat's time to first token.
        self._chat_url = httpx.URL(upstream.base_url + "/chat/completions")
        self._client_headers = dict(client.headers)
        self._timeouts = self._timeout().as_dict()

    def _headers(self) -> dict[str, str]:
        key = self.upstream.api_key(self._environ)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _timeout(self) -> httpx.Timeout:
        u = self.upstream
        return httpx.Timeout(connect=u.connect_timeout, read=u.read_timeout, write=u.read_timeout,
                             pool=u.connect_timeout)

    async def chat(self, request: ChatRequest) -> RemoteStream:
        body = request_body(request, self.upstream.kind)
        body["model"] = self.resolve(request.model) or request.model
        self.outstanding += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.outstanding -= 1

        try:
            http_request = self._chat_request(body)
            response = await self._client.send(http_request, stream=True)
        except httpx.TransportError as exc:
            release()
            self._outcome(False)
            raise UpstreamUnavailableError(f"upstream {self.upstream.name} did not answer ({_kind(exc)})") from None
        try:
            if response.status_code != 200:
                await self._raise_for(response)
            lines = response.aiter_lines()
            reader = _ChunkReader(inline_think=self.upstream.kind != "haven")
            first: list[ChatEvent] = []
            started = time.monotonic()
            async for chunk in _chunks(lines):  # wait for the first event: failures until here are retryable
                if chunk is None:
                    await _drain(lines)
                    first.extend(reader.final(started))
                    break
                first.extend(reader.events(chunk))
                if first:
                    break
            else:
                raise UpstreamUnavailableError(f"upstream {self.upstream.name} closed the stream before answering")
        except httpx.TransportError as exc:
            await response.aclose()
            release()
            self._outcome(False)
            raise UpstreamUnavailableError(f"upstream {self.upstream.name} failed before answering "
                                           f"({_kind(exc)})") from None
        except (UpstreamError, _InBandError, UnicodeDecodeError) as exc:
            await response.aclose()
            release()
            self._outcome(True)  # it answered, badly: not a health problem of the connection
            raise UpstreamError(f"upstream {self.upstream.name}: {_describe(exc)}") from None
        except BaseException:
            await response.aclose()
            release()
            raise
        return RemoteStream(response, lines, reader, first, self._outcome, release, request.model, self._finished)

    def _chat_request(self, body: dict[str, Any]) -> httpx.Request:
        """What ``client.build_request(json=body)`` builds (the same JSON encoding and headers), from the parts
        prepared once."""
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        headers = {**self._client_headers, **self._headers(), "Content-Type": "application/json"}
        return httpx.Request("POST", self._chat_url, content=content, headers=headers,
                             extensions={"timeout": self._timeouts})

    async def _raise_for(self, response: httpx.Response) -> None:
        raw = await _read_capped(response, 64 << 10)
        await response.aclose()
        message = _error_message(raw) or f"HTTP {response.status_code}"
        status = response.status_code
        name = self.upstream.name
        if status >= 500:
            self._outcome(False)
            raise UpstreamUnavailableError(f"upstream {name} failed: {message}")
        self._outcome(True)
        if status == 404:
            raise ModelNotFoundError(f"upstream {name} does not serve this model: {message}")
        if status == 429:
            raise QueueFullError(f"upstream {name} is busy: {message}")
        if status in (401, 403):
            raise UpstreamError(f"upstream {name} refused Haven's credentials (check its api_key_env)")
        raise InvalidRequestError(f"upstream {name} refused the request: {message}")

    async def complete(self, request: TextRequest) -> RemoteStream:
        raise InvalidRequestError("raw completions are not forwarded to remote upstreams; use chat", param="prompt")

    async def embed(self, request: EmbedRequest) -> Embeddings:
        inputs = [list(i) if isinstance(i, tuple) else i for i in request.inputs]
        body: dict[str, Any] = {"model": self.resolve(request.model) or request.model, "input": inputs}
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        data = await self._get_json("POST", "/embeddings", body)
        try:
            rows = sorted(data["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (KeyError, TypeError, ValueError):
            raise UpstreamError(f"upstream {self.upstream.name} sent a malformed embeddings body") from None
        return Embeddings(vectors, tokens)

    async def _get_json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = await self._client.send(self._client.build_request(
                method, self.upstream.base_url + path, json=body, headers=self._headers(), timeout=self._timeout()),
                stream=True)
        except httpx.TransportError as exc:
            self._outcome(False)
            raise UpstreamUnavailableError(f"upstream {self.upstream.name} did not answer ({_kind(exc)})") from None
        try:
            if response.status_code != 200:
                await self._raise_for(response)
            raw = await _read_capped(response, MAX_BODY_BYTES)
        except httpx.TransportError as exc:
            self._outcome(False)
            raise UpstreamUnavailableError(f"upstream {self.upstream.name} failed ({_kind(exc)})") from None
        finally:
            await response.aclose()
        try:
            data = json.loads(raw)
        except ValueError:
            raise UpstreamError(f"upstream {self.upstream.name} answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.upstream.name} answered with a JSON value that is not an object")
        self._outcome(True)
        return data

    async def refresh_models(self) -> tuple[str, ...]:
        """Ask the upstream which models it serves (pinned models win: they are never replaced)."""
        if self.upstream.models:
            return self._models
        data = await self._get_json("GET", "/models")
        rows = data.get("data")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in rows):
            raise UpstreamError(f"upstream {self.upstream.name} sent a malformed model list")
        self._models = tuple(r["id"] for r in rows)
        return self._models

    def resolve(self, name: str) -> str | None:
        """The upstream's own spelling of ``name``: Ollama-style names match with or without ``:latest``."""
        for listed in self._models:
            if name == listed or listed == f"{name}:latest" or name == f"{listed}:latest":
                return listed
        return None

    def models(self) -> Sequence[ModelCard]:
        now = datetime.now(UTC)
        return [ModelCard(name=name, modified=now, owned_by=f"upstream:{self.upstream.name}") for name in self._models]

    def model(self, name: str) -> ModelDetails:
        listed = self.resolve(name)
        for card in self.models():
            if card.name == listed:
                return ModelDetails(card=card, capabilities=("completion", "tools"),
                                    metadata={"haven.upstream": self.upstream.name, "haven.remote": True})
        raise ModelNotFoundError(f"model {name} is not served by upstream {self.upstream.name}")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise UpstreamError("the upstream sent an oversized body")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:200].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or "")[:500]
        return str(error)[:500]
    return ""


def _kind(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    return type(exc).__name__
