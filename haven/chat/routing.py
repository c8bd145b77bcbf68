"""Routing chats across upstreams: health, circuit breakers, least-outstanding choice and session affinity.

:class:`UpstreamPool` holds one :class:`~haven.chat.remote.RemoteChatBackend` per configured upstream and a
:class:`Breaker` for each. :class:`RoutingChatBackend` is the backend the server uses: a model Haven serves
itself goes to the local backend; any other goes to an upstream that serves it, chosen

* by *affinity* when the request belongs to a stored conversation (the ``conversation_id`` the recording
  middleware found, set with :func:`conversation_affinity`) or else carries an ``affinity_key`` (OpenAI's
  ``user``): rendezvous hashing over the healthy candidates, so the same conversation keeps landing on the
  same upstream (and its prefix cache) while that upstream is up, and only the conversations of a failed
  upstream move when it fails. The conversation wins over ``user``: one user's conversations spread, each
  staying put. Nothing else is used as a key (a service key shared by every client would pin all traffic
  on one upstream);
* otherwise by *least outstanding requests* per unit of weight, with the load an upstream publishes in its
  metrics (vLLM's ``vllm:num_requests_running`` + ``vllm:num_requests_waiting``, Haven's queue) added in.

A request that fails before its first byte (``UpstreamUnavailableError``) is retried once on another
healthy upstream; after the first byte the failure reaches the client as an error event.

Breakers: ``failures`` consecutive failures (connection errors, timeouts, 5xx; active health checks count
too) open a breaker; after ``cooldown`` seconds it half-opens and lets one trial request (or health check)
through, which closes it on success and re-opens it on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from haven.chat.backend import (
    ChatBackend,
    ChatRequest,
    ChatStream,
    Embeddings,
    EmbedRequest,
    ModelCard,
    ModelDetails,
    TextRequest,
    Usage,
)
from haven.chat.http1 import LeanTransport
from haven.chat.local import GenerationObserver
from haven.chat.redacting import CountsReporter, RedactingBackend
from haven.chat.remote import Finished, RemoteChatBackend
from haven.chat.upstreams import Upstream
from haven.errors import ModelNotFoundError, UpstreamUnavailableError

BreakerState = Literal["closed", "open", "half-open"]

_conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar("haven_conversation", default=None)


@contextlib.contextmanager
def conversation_affinity(conversation_id: str | None) -> Iterator[None]:
    """Chats started inside this block belong to ``conversation_id`` (their affinity key; None: none)."""
    token = _conversation.set(conversation_id)
    try:
        yield
    finally:
        _conversation.reset(token)


def affinity_key_of(request: ChatRequest) -> str | None:
    """The conversation the request belongs to, else its own ``affinity_key`` (OpenAI's ``user``)."""
    conversation = _conversation.get()
    return f"conversation:{conversation}" if conversation else request.affinity_key


@dataclass
class Breaker:
    failures: int = 3
    cooldown: float = 10.0
    clock: Callable[[], float] = time.monotonic
    consecutive: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allows(self) -> bool:
        """May a request go to this upstream now? (A half-open breaker admits one trial at a time.)"""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def record(self, ok: bool) -> None:
        self.trial_in_flight = False
        if ok:
            self.consecutive = 0
            self.opened_at = None
            return
        self.consecutive += 1
        if self.consecutive >= self.failures or self.opened_at is not None:
            self.opened_at = self.clock()


@dataclass
class Member:
    backend: RemoteChatBackend
    breaker: Breaker
    front: ChatBackend | None = None
    """What chats go through: the backend itself, or a RedactingBackend over it (HAVEN_REDACT=outbound)."""
    reported_load: float = 0.0
    """Requests the upstream says it is running or queueing (from its /metrics), 0 when unknown."""
    requests: int = 0
    errors: int = 0
    first_event_seconds: float = 0.0
    """Summed time from sending a chat to its first event (time to first token through this upstream)."""

    @property
    def name(self) -> str:
        return self.backend.upstream.name

    def score(self) -> float:
        return (self.backend.outstanding + self.reported_load) / self.backend.upstream.weight


_METRIC = re.compile(r"^(vllm:num_requests_(?:running|waiting)|sglang:num_(?:running|queue)_reqs|"
                     r"llamacpp:requests_(?:processing|deferred)|haven_queue_depth|haven_slots_in_use)"
                     r"(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", re.MULTILINE)


def load_from_metrics(text: str) -> float | None:
    """Running + waiting requests from a Prometheus text page (vLLM, SGLang, llama-server, Haven names)."""
    values = [float(v) for _, v in _METRIC.findall(text)]
    return sum(values) if values else None


@dataclass
class UpstreamPool:
    members: list[Member] = field(default_factory=list)
    client: httpx.AsyncClient | None = None
    health_interval: float = 10.0
    observer: GenerationObserver | None = None
    """Told of remote generations as of local ones: time to first token, and tokens at the end (the server's
    metrics, which also charge the client's rate-limit token bucket)."""
    _task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, upstreams: Sequence[Upstream], *, failures: int = 3, cooldown: float = 10.0,
              health_interval: float = 10.0, transport: httpx.AsyncBaseTransport | None = None,
              environ: dict[str, str] | None = None, redact: bool = False,
              on_redacted: CountsReporter | None = None,
              observer: GenerationObserver | None = None) -> UpstreamPool:
        # No redirects: an upstream that redirects is misconfigured, and following one could leave the allowlist.
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        if transport is None:  # plain http on a lean wire (time to first token), https through httpx's own
            transport = LeanTransport(httpx.AsyncHTTPTransport(limits=limits, trust_env=False), max_connections=256)
        client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False, limits=limits)
        pool = cls(client=client, health_interval=health_interval, observer=observer)
        finished: Finished | None = None
        if observer is not None:
            def finished(model: str, reason: str, usage: Usage) -> None:
                observer.finished(model, reason, usage, None)  # decode time is the upstream's to measure
        for upstream in upstreams:
            breaker = Breaker(failures=failures, cooldown=cooldown)
            backend = RemoteChatBackend(upstream, client, outcome=breaker.record, environ=environ,
                                        finished=finished)
            front = RedactingBackend(backend, on_counts=on_redacted) if redact else backend
            pool.members.append(Member(backend, breaker, front))
        return pool

    def serving(self, model: str) -> list[Member]:
        return [m for m in self.members if m.backend.resolve(model) is not None]

    def choose(self, model: str, *, affinity_key: str | None = None, exclude: Sequence[str] = ()) -> Member:
        candidates = [m for m in self.serving(model) if m.name not in exclude]
        if not candidates:
            raise ModelNotFoundError(f"model {model} is not served here or by any upstream (see /v1/models)")
        if affinity_key:
            ranked = sorted(candidates, key=lambda m: _rendezvous(affinity_key, m), reverse=True)
        else:
            ranked = sorted(candidates, key=Member.score)
        for member in ranked:
            if member.breaker.allows():
                return member
        raise UpstreamUnavailableError(f"every upstream serving {model} is failing; retry shortly")

    async def check(self, member: Member) -> str | None:
        """One active health check: list models (and read load where published). None when healthy."""
        try:
            await member.backend.refresh_models()
        except Exception as exc:  # any failure of the check is the finding
            member.breaker.record(False)
            return getattr(exc, "message", None) or str(exc) or type(exc).__name__
        member.breaker.record(True)
        assert self.client is not None
        root = member.backend.upstream.base_url.removesuffix("/v1")
        with contextlib.suppress(httpx.HTTPError):
            response = await self.client.get(root + "/metrics", timeout=2.0)
            if response.status_code == 200 and len(response.content) < (4 << 20):
                member.reported_load = load_from_metrics(response.text) or 0.0
        return None

    async def check_all(self) -> dict[str, str | None]:
        results = await asyncio.gather(*(self.check(m) for m in self.members))
        return {m.name: r for m, r in zip(self.members, results, strict=True)}

    def start(self) -> None:
        if self._task is None and self.members:
            self._task = asyncio.get_running_loop().create_task(self._check_forever())

    async def _check_forever(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.health_interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.client is not None:
            await self.client.aclose()


def _rendezvous(key: str, member: Member) -> float:
    digest = hashlib.blake2b(f"{key}\x00{member.name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") * member.backend.upstream.weight


class RoutingChatBackend:
    """Local models first, then upstreams; the one backend the server's adapters see."""

    def __init__(self, local: ChatBackend | None, pool: UpstreamPool) -> None:
        self.local = local
        self.pool = pool

    def _is_local(self, model: str) -> bool:
        if self.local is None:
            return False
        try:
            self.local.model(model)
        except ModelNotFoundError:
            return False
        return True

    async def chat(self, request: ChatRequest) -> ChatStream:
        if self._is_local(request.model):
            assert self.local is not None
            return await self.local.chat(request)
        affinity = affinity_key_of(request)
        first = self.pool.choose(request.model, affinity_key=affinity)
        try:
            return await self._send(first, request)
        except UpstreamUnavailableError as failure:
            try:  # failed before the first byte: once more, elsewhere
                second = self.pool.choose(request.model, affinity_key=affinity, exclude=[first.name])
            except (ModelNotFoundError, UpstreamUnavailableError):
                raise UpstreamUnavailableError(f"{failure.message}, and no other healthy upstream serves "
                                               f"{request.model}") from None
            return await self._send(second, request)

    async def _send(self, member: Member, request: ChatRequest) -> ChatStream:
        member.requests += 1
        started = time.monotonic()
        try:
            stream = await (member.front or member.backend).chat(request)
        except Exception:
            member.errors += 1
            raise
        seconds = time.monotonic() - started
        member.first_event_seconds += seconds
        if self.pool.observer is not None:
            self.pool.observer.first_token(request.model, seconds)
        return stream

    async def complete(self, request: TextRequest) -> ChatStream:
        if self._is_local(request.model) or not self.pool.serving(request.model):
            if self.local is None:
                raise ModelNotFoundError(f"model {request.model} is not served here")
            return await self.local.complete(request)
        return await self.pool.choose(request.model).backend.complete(request)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        if self._is_local(request.model) or not self.pool.serving(request.model):
            if self.local is None:
                raise ModelNotFoundError(f"model {request.model} is not served here")
            return await self.local.embed(request)
        return await self.pool.choose(request.model).backend.embed(request)

    def models(self) -> Sequence[ModelCard]:
        local = list(self.local.models()) if self.local is not None else []
        names = {c.name for c in local}
        served_by: dict[str, list[ModelCard]] = {}
        for member in self.pool.members:
            for card in member.backend.models():
                if card.name not in names:
                    served_by.setdefault(card.name, []).append(card)
        # A model served by several upstreams is listed once, naming them all ("upstream:gpu1+gpu2").
        remote = [dataclasses.replace(cards[0], owned_by="upstream:" + "+".join(
            c.owned_by.removeprefix("upstream:") for c in cards)) for cards in served_by.values()]
        return [*local, *remote]

    def model(self, name: str) -> ModelDetails:
        if self._is_local(name):
            assert self.local is not None
            return self.local.model(name)
        serving = self.pool.serving(name)
        if not serving:
            raise ModelNotFoundError(f"model {name} is not served here or by any upstream")
        return serving[0].backend.model(name)
