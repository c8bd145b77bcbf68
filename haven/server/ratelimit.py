"""Rate limits (a pure ASGI middleware): token buckets per client on requests and on generated tokens,
a cap on concurrent generations per client, and a read timeout on request bodies.

A *client* is its API key once that key has been verified, else its address (:func:`client_key`,
``addr:<ip>``; behind a reverse proxy, uvicorn's ``--forwarded-allow-ips`` makes that the real client).
This middleware runs before authentication, so a bearer token it has not yet seen accepted counts against
the address (an unverified token must not mint fresh buckets); when authentication accepts it (the
principal the auth middleware leaves in ``scope["state"]``), that first request is charged to the key's
bucket as well and later ones to the key alone (keyed by a digest of the token, never the token). So a key's
limit holds however many addresses or instances it comes through. ``identify(scope) -> key`` replaces the
address and ``limits_for(key) -> Limits`` gives per-key plans, without touching this module.

* requests: a bucket of ``requests_per_minute`` refilled continuously (burst: a sixth of a minute);
* generated tokens: a bucket of ``tokens_per_minute`` charged with each generation's tokens, local or
  remote (the chat layer's observer calls :func:`charge_generated_tokens`; the request's tally travels in
  a contextvar and is charged when the response ends); a client in debt gets 429 on its next generation
  request until the bucket refills;
* concurrent generations: at most ``max_generations`` generation requests in flight per client, counted
  in this process (a count in a shared table would stay stuck when an instance dies mid-request).

Where the buckets live is a :class:`BucketStore`: :class:`MemoryBuckets` (one process, no I/O: the
default on SQLite) or :class:`haven.accounts.shared_limits.DatabaseBuckets` (a table every instance on one
PostgreSQL updates atomically, so N requests a minute means N across all of them).

If the store fails (a database outage) requests are let through and the failure logged, once a minute.

Refusals are 429 with ``Retry-After`` (seconds) in the API's error shape. A body that stalls for more than
``body_timeout`` seconds between chunks is answered with 408 (slow-client protection).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.errors import HavenError, QueueFullError
from haven.server.errors import haven_error_response

GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate"})
EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
MAX_TRACKED_CLIENTS = 100_000  # least recently seen clients are forgotten beyond this (memory bound)
log = logging.getLogger("haven.server.ratelimit")


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


class BucketStore(Protocol):
    """Token buckets by key; ``blocking`` stores (a database) are called from a worker thread."""

    blocking: bool

    def try_take(self, key: str, rate: float, capacity: float, amount: float) -> float: ...

    def charge(self, key: str, rate: float, capacity: float, amount: float) -> None: ...

    def debt_wait(self, key: str, rate: float, capacity: float) -> float: ...


class MemoryBuckets:
    """This process's buckets, least recently used forgotten past ``max_keys`` (memory bound)."""

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_TRACKED_CLIENTS) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, key: str, rate: float, capacity: float, now: float) -> TokenBucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, capacity, now)
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        self.buckets.move_to_end(key)
        return bucket

    def try_take(self, key: str, rate: float, capacity: float, amount: float) -> float:
        now = self.clock()
        return self._bucket(key, rate, capacity, now).try_take(amount, now)

    def charge(self, key: str, rate: float, capacity: float, amount: float) -> None:
        now = self.clock()
        self._bucket(key, rate, capacity, now).charge(amount, now)

    def debt_wait(self, key: str, rate: float, capacity: float) -> float:
        now = self.clock()
        return self._bucket(key, rate, capacity, now).debt_wait(now)


@dataclass
class _Tally:
    """Tokens generated during one request (charged to the client's bucket when the response ends)."""

    tokens: int = 0


_current: contextvars.ContextVar[_Tally | None] = contextvars.ContextVar("haven_rate_tally", default=None)


def charge_generated_tokens(count: int) -> None:
    """Count ``count`` generated tokens against the client of the current request (a no-op outside one)."""
    tally = _current.get()
    if tally is not None and count > 0:
        tally.tokens += count


def _request_bucket(limits: Limits) -> tuple[float, float]:
    rpm = limits.requests_per_minute
    return rpm / 60, max(1.0, rpm / 6)  # burst: a sixth of a minute


def _token_bucket(limits: Limits) -> tuple[float, float]:
    tpm = limits.tokens_per_minute
    return tpm / 60, max(1.0, float(tpm))


def bearer_digest(scope: Scope) -> str | None:
    """A short digest of the request's ``Authorization: Bearer`` token (None without one)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            token = token.strip()
            if scheme.lower() == b"bearer" and token:
                return hashlib.blake2b(token, digest_size=16).hexdigest()
            return None
    return None


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
        buckets: BucketStore | None = None,
    ) -> None:
        self.app = app
        self.limits_for = limits_for or (lambda key: limits)
        self.identify = identify
        self.body_timeout = body_timeout
        self.buckets: BucketStore = buckets if buckets is not None else MemoryBuckets(clock)
        self.generations: dict[str, int] = {}  # in flight, per client, in this process
        # Digests of bearer tokens authentication accepted here (least recent forgotten; a cache, not state:
        # the counts live in the buckets, and an unseen key is charged to its bucket after its first request).
        self.verified: OrderedDict[str, None] = OrderedDict()
        self._quiet_until = 0.0  # store failures are logged at most once a minute

    async def _store(self, method: Callable[..., float | None], *args: object) -> float:
        """A bucket operation; 0 (let it through) when the store fails: a database outage must not turn every
        request into a 500 here (fail open, logged; authentication, which needs the database too, still decides)."""
        try:
            if self.buckets.blocking:
                return await anyio.to_thread.run_sync(lambda: method(*args)) or 0.0
            return method(*args) or 0.0
        except Exception:  # noqa: BLE001 - any store failure: fail open, say so
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + 60.0
                log.exception("rate-limit store failed; requests are let through until it answers again")
            return 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        bearer = bearer_digest(scope)
        verified = bearer is not None and bearer in self.verified
        key = f"key:{bearer}" if verified else self.identify(scope)
        if verified:
            self.verified.move_to_end(bearer)  # type: ignore[arg-type]
        limits = self.limits_for(key)
        generation = scope["method"] == "POST" and scope["path"] in GENERATION_PATHS
        if limits.requests_per_minute:
            wait = await self._store(self.buckets.try_take, f"req:{key}", *_request_bucket(limits), 1.0)
            if wait:
                await self._refuse(scope, receive, send, "too many requests", wait)
                return
        if generation and limits.tokens_per_minute:
            wait = await self._store(self.buckets.debt_wait, f"tok:{key}", *_token_bucket(limits))
            if wait:
                await self._refuse(scope, receive, send, "too many generated tokens", wait)
                return
        in_flight = self.generations.get(key, 0)
        if generation and limits.max_generations and in_flight >= limits.max_generations:
            await self._refuse(
                scope, receive, send, f"more than {limits.max_generations} generations at once", 1.0
            )
            return
        if generation:
            self.generations[key] = in_flight + 1
        tally = _Tally()
        token = _current.set(tally)
        state = scope.setdefault("state", {})  # shared with the auth middleware below, which sets "principal"
        try:
            if self.body_timeout:
                await self._call_with_body_timeout(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            _current.reset(token)
            if generation:
                left = self.generations[key] - 1
                if left:
                    self.generations[key] = left
                else:
                    del self.generations[key]
            charge_to = key
            if bearer is not None and not verified and getattr(state.get("principal"), "via", None) == "bearer":
                charge_to = self._verified(bearer)
            with anyio.CancelScope(shield=True):  # a disconnected client still pays for what it got
                if charge_to != key and limits.requests_per_minute:
                    await self._store(self.buckets.charge, f"req:{charge_to}", *_request_bucket(limits), 1.0)
                if tally.tokens and limits.tokens_per_minute:
                    tokens = float(tally.tokens)
                    await self._store(self.buckets.charge, f"tok:{charge_to}", *_token_bucket(limits), tokens)

    def _verified(self, bearer: str) -> str:
        self.verified[bearer] = None
        while len(self.verified) > MAX_TRACKED_CLIENTS:
            self.verified.popitem(last=False)
        return f"key:{bearer}"

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
