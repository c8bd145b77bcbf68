"""Async client for the audited model: any OpenAI-compatible chat-completions endpoint.

One ``httpx.AsyncClient`` (HTTP/1.1 keep-alive pool sized to the runner's concurrency) per run.
``chat()`` never raises for transport trouble: connection errors, timeouts, HTTP 5xx/429 and
unparsable bodies are retried with exponential backoff and full jitter (the AWS Architecture
Blog's "Exponential Backoff And Jitter" scheme), and when retries run out it returns a
:class:`Response` with ``error`` set: a transport error, never a refusal. Only ``probe()`` (at the
start of a run) raises, :class:`EndpointUnreachableError`, so a dead endpoint is one clear message.

An endpoint outside this machine (and an external judge, :mod:`haven.audit.scoring.judge`) gets its prompts
through :class:`OutboundRedaction`: the chat layer's :class:`~haven.chat.redacting.RedactingBackend` masks
personal data and secrets before they leave and restores the placeholders in the answer, so what is stored
and scored is what the user would have seen, while the endpoint only saw ``[EMAIL_1]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from haven.audit.records import Response, SuiteItem
from haven.chat.backend import (
    ChatEvent,
    ChatRequest,
    ChatStream,
    Embeddings,
    EmbedRequest,
    Final,
    Message,
    ModelCard,
    ModelDetails,
    ReasoningDelta,
    TextDelta,
    TextRequest,
    Usage,
    collect,
)
from haven.chat.redacting import CountsReporter, RedactingBackend
from haven.engine.reasoning import split_reasoning
from haven.errors import EndpointUnreachableError, ModelNotFoundError

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
REPRO_FIELDS = ("seed", "cache_prompt")
"""Request fields for reproducibility that a strict server may reject; dropped (and recorded) when it does."""
NOT_SENT = frozenset({"seed_base", "seed_scheme", "rejected_by_endpoint", "redaction"})
"""Keys of a run's sampling record that describe the seeding (and the masking), not request fields."""

Send = Callable[[str], Awaitable[tuple[str, str]]]
"""Sends one (masked) prompt by the caller's own transport; returns (content, reasoning) or raises."""


class _Answer:
    """A finished answer as a chat stream, so RedactingBackend's restorer runs over it."""

    def __init__(self, content: str, reasoning: str) -> None:
        self._events: list[ChatEvent] = [ReasoningDelta(reasoning), TextDelta(content), Final("stop", Usage())]

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatEvent]:
        for event in self._events:
            yield event

    async def aclose(self) -> None:
        return None


class _OneExchange:
    """A ChatBackend for one prompt: ``chat`` hands the masked prompt to ``send`` and streams back its answer.

    Only ``chat`` is ever called (by :class:`OutboundRedaction`); the audit's transport, retries and parsing
    stay in its clients, and the masking stays in the one place chats are masked."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def chat(self, request: ChatRequest) -> ChatStream:
        content, reasoning = await self._send(request.messages[-1].content)
        return _Answer(content, reasoning)

    async def complete(self, request: TextRequest) -> ChatStream:
        raise NotImplementedError("an audit exchange is a chat")

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise NotImplementedError("an audit exchange is a chat")

    def models(self) -> Sequence[ModelCard]:
        return ()

    def model(self, name: str) -> ModelDetails:
        raise NotImplementedError("an audit exchange is a chat")


class OutboundRedaction:
    """Masks prompts bound for an endpoint outside this machine, restores the answers (HAVEN_REDACT=outbound).

    ``on_counts`` receives (model, {type: count}) for each prompt that had something masked: the security
    log's record, never the values."""

    def __init__(self, on_counts: CountsReporter | None = None) -> None:
        self.on_counts = on_counts

    async def exchange(self, model: str, prompt: str, send: Send) -> tuple[str, str]:
        """(content, reasoning) of ``send``'s answer to ``prompt`` masked, with the placeholders restored."""
        backend = RedactingBackend(_OneExchange(send), on_counts=self.on_counts)
        result = await collect(await backend.chat(ChatRequest(model=model, messages=(Message("user", prompt),))))
        return result.content, result.reasoning


class _Unanswered(Exception):
    """The endpoint gave no answer after its retries (the failed Response travels back to the caller)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.error)
        self.response = response


def item_seed(seed_base: int, item_id: str, sample_index: int) -> int:
    """A fixed seed per (item, sample): the same on every rerun, different between items and samples (31 bits)."""
    digest = hashlib.sha256(f"{seed_base}:{item_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def api_base(endpoint: str) -> str:
    """'http://h:p', 'http://h:p/v1' or '…/v1/chat/completions' → 'http://h:p/v1'."""
    url = endpoint.rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    if not url.endswith("/v1"):
        url += "/v1"
    return url


@dataclass(frozen=True)
class EndpointInfo:
    model: str
    model_hash: str | None
    models: tuple[str, ...]


def _hash_of(entry: dict[str, Any]) -> str | None:
    for key in ("digest", "sha256", "hash", "model_hash"):
        value = entry.get(key)
        if isinstance(value, str) and value:
            return value
    meta = entry.get("meta") or entry.get("details")
    if isinstance(meta, dict):
        return _hash_of(meta)
    return None


class EndpointClient:
    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 4,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20.0,
        redaction: OutboundRedaction | None = None,
    ) -> None:
        self.base = api_base(endpoint)
        self.model = model
        self.redaction = redaction
        """Set for an endpoint outside this machine: prompts are masked, answers restored."""
        self.rejected_fields: set[str] = set()
        """Reproducibility fields this endpoint refused with HTTP 400 (then sent without them)."""
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            http1=True,
            http2=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> EndpointClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def probe(self, *, require_listed: bool = False) -> EndpointInfo:
        """Check the endpoint answers and resolve the model name and, where offered, its hash."""
        try:
            resp = await self._http.get(f"{self.base}/models", timeout=15.0)
        except httpx.HTTPError as exc:
            raise EndpointUnreachableError(f"Cannot reach {self.base} ({type(exc).__name__}: {exc}).") from exc
        entries: list[dict[str, Any]] = []
        if resp.status_code == 200:
            try:
                data = resp.json().get("data")
                entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
            except ValueError:
                entries = []
        elif resp.status_code in (401, 403):
            raise EndpointUnreachableError(f"{self.base} refused the API key (HTTP {resp.status_code}).")
        names = tuple(str(e.get("id")) for e in entries if e.get("id"))
        model = self.model or (names[0] if names else None)
        if model is None:
            raise EndpointUnreachableError(f"{self.base} lists no models; name one with --model.")
        if model not in names and f"{model}:latest" in names:
            model = f"{model}:latest"  # Haven and Ollama list tagged names; the bare name means :latest
        if require_listed and names and model not in names:
            raise ModelNotFoundError(f"Model {model!r} is not served at {self.base}; it serves: {', '.join(names)}.")
        self.model = model
        entry = next((e for e in entries if e.get("id") == model), {})
        model_hash = _hash_of(entry) or await self._ollama_digest(model)
        return EndpointInfo(model=model, model_hash=model_hash, models=names)

    async def _ollama_digest(self, model: str) -> str | None:
        """Haven and Ollama list a digest per model under /api/tags."""
        root = self.base[: -len("/v1")]
        try:
            resp = await self._http.get(f"{root}/api/tags", timeout=5.0)
            if resp.status_code != 200:
                return None
            for entry in resp.json().get("models", []):
                if entry.get("name") == model or entry.get("model") == model:
                    digest = entry.get("digest")
                    return str(digest) if digest else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return None

    def _delay(self, attempt: int) -> float:
        # Full jitter: uniform in [0, min(cap, base·2^attempt)], so retrying workers spread out.
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))

    def _body(self, prompt: str, item: SuiteItem, sample_index: int, sampling: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": False,
            **{k: v for k, v in sampling.items() if k not in NOT_SENT},
        }
        if "seed_base" in sampling:
            body["seed"] = item_seed(int(sampling["seed_base"]), item.item_id, sample_index)
        for name in {*self.rejected_fields, *sampling.get("rejected_by_endpoint", ())}:
            body.pop(name, None)
        return body

    def _rejected_field(self, resp: httpx.Response, body: dict[str, Any]) -> str | None:
        """The reproducibility field a 400 names (e.g. OpenAI's 'Unrecognized request argument: cache_prompt')."""
        if resp.status_code not in (400, 422):
            return None
        text = resp.text[:2000]
        return next((f for f in REPRO_FIELDS if f in body and f in text), None)

    async def chat(self, item: SuiteItem, sample_index: int, sampling: dict[str, Any]) -> Response:
        """The answer to one item (retried as needed); masked and restored when the endpoint is external."""
        if self.redaction is None:
            return await self._ask(item.prompt, item, sample_index, sampling)
        answered: list[Response] = []

        async def send(masked: str) -> tuple[str, str]:
            response = await self._ask(masked, item, sample_index, sampling)
            if response.error:
                raise _Unanswered(response)
            answered.append(response)
            return response.content, response.reasoning

        try:
            content, reasoning = await self.redaction.exchange(self.model or "", item.prompt, send)
        except _Unanswered as failed:
            return failed.response
        return dataclasses.replace(answered[-1], content=content, reasoning=reasoning)

    async def _ask(self, prompt: str, item: SuiteItem, sample_index: int, sampling: dict[str, Any]) -> Response:
        error = "no attempt"
        status: int | None = None
        started = time.perf_counter()
        attempt = 0
        while attempt <= self.max_retries:
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1))
            attempt += 1
            body = self._body(prompt, item, sample_index, sampling)
            t0 = time.perf_counter()
            try:
                resp = await self._http.post(f"{self.base}/chat/completions", json=body)
            except httpx.HTTPError as exc:
                error, status = f"{type(exc).__name__}: {exc}".strip(": "), None
                continue
            status = resp.status_code
            rejected = self._rejected_field(resp, body)
            if rejected is not None:
                # A strict server refuses the field: send without it (recorded in the run), at no attempt's cost.
                self.rejected_fields.add(rejected)
                attempt -= 1
                continue
            if status != 200:
                error = f"HTTP {status}: {resp.text[:200]}"
                if status in RETRY_STATUSES:
                    continue
                break  # 4xx: asking again will not help
            parsed = _parse_completion(resp)
            if isinstance(parsed, str):
                error = parsed
                continue
            content, reasoning, finish, usage = parsed
            return Response(
                item_id=item.item_id,
                sample_index=sample_index,
                content=content,
                reasoning=reasoning,
                finish_reason=finish,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=time.perf_counter() - t0,
                http_status=status,
            )
        return Response(
            item_id=item.item_id,
            sample_index=sample_index,
            content="",
            latency_s=time.perf_counter() - started,
            error=f"{error} (after {self.max_retries + 1} attempts)",
            http_status=status,
        )


def _parse_completion(resp: httpx.Response) -> tuple[str, str, str | None, dict[str, Any]] | str:
    """(content, reasoning, finish_reason, usage), or a string saying why the body is garbage."""
    try:
        data = resp.json()
        choice = data["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return f"unparsable response body: {resp.text[:120]!r}"
    if not isinstance(message, dict):
        return "unparsable response body: message is not an object"
    content = message.get("content") or ""
    if not isinstance(content, str):
        return "unparsable response body: content is not a string"
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    if not reasoning and "</think>" in content:
        reasoning, content = split_reasoning(content, opened="<think>" not in content)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return content.strip(), str(reasoning).strip(), choice.get("finish_reason"), usage
