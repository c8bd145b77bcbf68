"""Rate limits (a pure ASGI middleware): token buckets per client on requests and on generated tokens,
a cap on concurrent generations per client, and a read timeout on request bodies.

A *client* is identified by :func:`client_key`, its address (``addr:<ip>``; behind a reverse proxy,
uvicorn's ``--forwarded-allow-ips`` makes that the real client). Accounts plug in through two hooks:
``identify(scope) -> key`` (a verified user or API key) and ``limits_for(key) -> Limits`` (a per-user
plan), without touching this module.

* requests: a bucket of ``requests_per_minute`` refilled continuously (burst: a sixth of a minute);
* generated tokens: a bucket of ``tokens_per_minute`` charged after each generation by
  :func:`charge_generated_tokens` (the generation code calls it; the client's key travels in a
  contextvar); a client in debt gets 429 on its next generation request until the bucket refills;
* concurrent generations: at most ``max_generations`` generation requests in flight per client.

Refusals are 429 with ``Retry-After`` (seconds) in the API's error shape. A body that stalls for more than
``body_timeout`` seconds between chunks is answered with 408 (slow-client protection).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.errors import HavenError, QueueFullError
from haven.server.errors import haven_error_response

GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"})
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
MAX_TRACKED_CLIENTS = 100_000  # least recently seen clients are forgotten beyond this (memory bound)


class RateLimitedError(QueueFullError):
    """Over a rate limit (HTTP 429 with Retry-After)."""

    code = "rate_limit_exceeded"
    error_type = "rate_limit_error"


class RequestTimeoutError(HavenError):
    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


@dataclass(frozen=True)
class Limits:
    """Per-client limits; 0 disables one."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    max_generations: int = 0


class TokenBucket:
    """``capacity`` tokens refilled at ``rate`` per second; ``take`` may overdraw (for after-the-fact charges)."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.level, self.stamp = rate, capacity, capacity, now

    def _refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self, amount: float, now: float) -> float:
        """0 when ``amount`` was taken, else the seconds until it could be."""
        self._refill(now)
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate

    def charge(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def debt_wait(self, now: float) -> float:
        """Seconds until the level is positive again (0 when it is)."""
        self._refill(now)
        return 0.0 if self.level > 0 else (1e-9 - self.level) / self.rate


@dataclass
class _Client:
    requests: TokenBucket | None
    tokens: TokenBucket | None
    generations: int = 0


_current: contextvars.ContextVar[_Client | None] = contextvars.ContextVar("haven_rate_client", default=None)


def charge_generated_tokens(count: int) -> None:
    """Charge ``count`` generated tokens to the client of the current request (a no-op outside one)."""
    client = _current.get()
    if client is not None and client.tokens is not None and count > 0:
        client.tokens.charge(count, time.monotonic())


def client_key(scope: Scope) -> str:
    """The client's address. Not the bearer token: this runs before authentication, and an unverified
    token would let a client mint fresh buckets at will. Accounts pass ``identify`` to key by user."""
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Limits,
        body_timeout: float = 0.0,
        limits_for: Callable[[str], Limits] | None = None,
        identify: Callable[[Scope], str] = client_key,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.limits_for = limits_for or (lambda key: limits)
        self.identify = identify
        self.body_timeout = body_timeout
        self.clock = clock
        self.clients: OrderedDict[str, _Client] = OrderedDict()

    def _client(self, key: str, now: float) -> _Client:
        client = self.clients.get(key)
        if client is None:
            limits = self.limits_for(key)
            rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
            client = _Client(
                TokenBucket(rpm / 60, max(1.0, rpm / 6), now) if rpm else None,
                TokenBucket(tpm / 60, max(1.0, float(tpm)), now) if tpm else None,
            )
            self.clients[key] = client
            while len(self.clients) > MAX_TRACKED_CLIENTS:
                oldest, state = next(iter(self.clients.items()))
                if state.generations:
                    break  # never forget a client with requests in flight
                del self.clients[oldest]
        self.clients.move_to_end(key)
        return client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        key = self.identify(scope)
        now = self.clock()
        client = self._client(key, now)
        limits = self.limits_for(key)
        generation = scope["method"] == "POST" and scope["path"] in GENERATION_PATHS
        wait = client.requests.try_take(1, now) if client.requests is not None else 0.0
        if wait:
            await self._refuse(scope, receive, send, "too many requests", wait)
            return
        if generation and client.tokens is not None:
            wait = client.tokens.debt_wait(now)
            if wait:
                await self._refuse(scope, receive, send, "too many generated tokens", wait)
                return
        if generation and limits.max_generations and client.generations >= limits.max_generations:
            await self._refuse(
                scope, receive, send, f"more than {limits.max_generations} generations at once", 1.0
            )
            return
        if generation:
            client.generations += 1
        token = _current.set(client)
        try:
            if self.body_timeout:
                await self._call_with_body_timeout(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            _current.reset(token)
            if generation:
                client.generations -= 1

    async def _call_with_body_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        """On a stalled body: answer 408 ourselves, tell the app the client left, drop what it sends."""
        started = timed_out = body_done = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        async def timed_receive() -> Message:
            nonlocal timed_out, body_done
            if body_done or timed_out:  # after the body, receive() waits for a disconnect: no deadline
                return await receive() if not timed_out else {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                if not started:
                    error = RequestTimeoutError(
                        f"the request body did not arrive within {self.body_timeout:g} s; send it faster."
                    )
                    await haven_error_response(scope["path"], error, headers={"Connection": "close"})(
                        scope, receive, send
                    )
                timed_out = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, what: str, wait: float) -> None:
        seconds = max(1, math.ceil(wait))
        exc = RateLimitedError(f"rate limit: {what}; retry in {seconds} s.", retry_after=seconds)
        await haven_error_response(scope["path"], exc)(scope, receive, send)
