"""A lean HTTP/1.1 transport for plain-http upstreams: httpx's transport API over an asyncio protocol and httptools.

Haven sits in front of a model server on the same network, and every request's time to first token pays for
the proxy's own HTTP client. httpx's default transport (httpcore over anyio, h11 in pure Python) cost about
1 ms a request here. This transport keeps httpx's client, its exceptions and its timeouts, and replaces only
the wire: keep-alive connections per host, the C parser uvicorn uses fed straight from the socket, one write
per request. ``https`` (and anything this one does not speak) goes to httpx's own transport.

Bounds: the response head is at most ``MAX_HEAD_BYTES``; a slow consumer holds at most ``MAX_BUFFERED`` body
bytes before TCP pushes back; waiting for the answer and every read have the request's read timeout, and
connecting its connect timeout; at most ``max_connections`` are open at once (a request waits ``pool`` seconds
for one). A kept-alive connection the upstream closed while idle is not reused, and a request that finds one
closed before any byte of its answer is sent once more on a new connection (nothing was processed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httptools
import httpx

from haven.chat.waiting import Waiter

MAX_HEAD_BYTES = 64 << 10
MAX_BUFFERED = 256 << 10
"""Body bytes held for a slow consumer before the connection stops reading (TCP flow control)."""
MAX_IDLE_PER_HOST = 64


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    t = request.extensions.get("timeout", {})
    return t.get("connect"), t.get("read"), t.get("pool")


def _head(request: httpx.Request, body_length: int) -> bytes:
    """The request line and headers, validated (a header may not smuggle a line break)."""
    lines = [request.method.encode("ascii") + b" " + request.url.raw_path + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
            raise httpx.LocalProtocolError(f"invalid header {name!r}", request=request)
        lines.append(name + b": " + value)
    if body_length and "content-length" not in request.headers:
        lines.append(b"Content-Length: " + str(body_length).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Wire(asyncio.Protocol):
    """One connection, as an asyncio protocol feeding httptools directly (no stream buffer in between);
    httptools calls the ``on_*`` methods. The consumer waits in :meth:`wait` (one timer per connection, not
    per read: see :mod:`haven.chat.waiting`)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self.eof = False
        self.error: httpx.TransportError | None = None
        self._waiter = Waiter()
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.delimited = False  # by a length or chunked encoding (else by the connection closing)
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.messages = 0

    # --- asyncio protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))
        if not self.head_done and self.received > MAX_HEAD_BYTES:
            self._fail(httpx.RemoteProtocolError("the upstream's response head is too large"))
        if self.buffered > MAX_BUFFERED and not self._paused and self.transport is not None:
            self._paused = True  # a consumer slower than the upstream: let TCP push back
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.reusable = False
        if exc is not None and self.error is None:
            self.error = httpx.ReadError(f"the connection to the upstream broke: {exc}")
        self._wake()

    # --- httptools callbacks ---------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.messages += 1
        if self.messages > 1:  # bytes nobody asked for after the answer: do not trust the connection again
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = self.parser.get_status_code()
        names = {name.lower(): value.lower() for name, value in self.headers}
        self.delimited = b"content-length" in names or b"chunked" in names.get(b"transfer-encoding", b"")
        if not self.parser.should_keep_alive():
            self.reusable = False

    def on_body(self, body: bytes) -> None:
        self.body.append(bytes(body))
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # --- the consumer's side -------------------------------------------------------------------------------
    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.close()

    def _wake(self) -> None:
        self._waiter.wake()

    async def wait(self, timeout: float | None) -> None:
        """Until something arrives (data, the end, an error) or ``timeout`` seconds pass (ReadTimeout)."""
        if await self._waiter.wait(timeout):
            raise httpx.ReadTimeout("the upstream sent nothing within the read timeout")

    def take_body(self) -> list[bytes]:
        chunks, self.body, self.buffered = self.body, [], 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunks

    @property
    def idle_usable(self) -> bool:
        return self.reusable and not self.eof and self.transport is not None and not self.transport.is_closing()

    async def read_head(self, timeout: float | None) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            if self.eof:
                raise httpx.RemoteProtocolError("the upstream closed the connection without an answer")
            await self.wait(timeout)

    def close(self) -> None:
        self.reusable = False
        self._waiter.close()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    def __init__(self, transport: LeanTransport, key: tuple[str, int], wire: _Wire, read_timeout: float | None) -> None:
        self._transport = transport
        self._key = key
        self._wire = wire
        self._read_timeout = read_timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        wire = self._wire
        try:
            while True:
                if wire.body:
                    for chunk in wire.take_body():
                        yield chunk
                    # More may have arrived, and the message completed, while a chunk was with the consumer:
                    # look again before deciding the body is over.
                    continue
                if wire.complete:
                    break
                if wire.error is not None:
                    raise wire.error
                if wire.eof:
                    if wire.delimited:
                        raise httpx.RemoteProtocolError("the upstream closed the connection mid-answer")
                    wire.reusable = False  # the body ends where the connection does
                    break
                await wire.wait(self._read_timeout)
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    def _finish(self, *, reuse: bool) -> None:
        if self._done:
            return
        self._done = True
        self._transport._release(self._key, self._wire, reuse=reuse and self._wire.complete)

    async def aclose(self) -> None:
        self._finish(reuse=False)  # before its end the connection has unread bytes: not reusable


class LeanTransport(httpx.AsyncBaseTransport):
    """``http://`` over pooled asyncio connections; everything else through ``fallback``."""

    def __init__(self, fallback: httpx.AsyncBaseTransport | None = None, *, max_connections: int = 256) -> None:
        self._fallback = fallback or httpx.AsyncHTTPTransport(trust_env=False)
        self._idle: dict[tuple[str, int], list[_Wire]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self.connections_opened = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http" or request.method == "HEAD":  # a HEAD answer's length describes no body
            return await self._fallback.handle_async_request(request)
        connect_t, read_t, pool_t = _timeouts(request)
        body = await request.aread()
        message = _head(request, len(body)) + body
        key = (url.host, url.port or 80)
        try:
            async with asyncio.timeout(pool_t):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection was free within the pool timeout") from None
        try:
            wire = await self._exchange(key, message, connect_t, read_t)
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(
            wire.status,
            headers=wire.headers,
            stream=_Body(self, key, wire, read_t),
            extensions={"http_version": b"HTTP/1.1"},
            request=request,
        )

    async def _exchange(
        self, key: tuple[str, int], message: bytes, connect_t: float | None, read_t: float | None
    ) -> _Wire:
        while True:
            wire, reused = self._idle_wire(key), True
            if wire is None:
                wire, reused = await self._connect(key, connect_t), False
            try:
                assert wire.transport is not None
                # The body is bounded by the server's request limit: the transport buffers what the socket does not
                # take at once, and the read timeout bounds the wait for an answer.
                wire.transport.write(message)
                await wire.read_head(read_t)
                return wire
            except (httpx.RemoteProtocolError, httpx.ReadError):
                wire.close()
                if reused and wire.received == 0:
                    continue  # closed by the upstream while idle, before it read this request: a new connection
                raise
            except BaseException:
                wire.close()
                raise

    def _idle_wire(self, key: tuple[str, int]) -> _Wire | None:
        idle = self._idle.get(key)
        while idle:
            wire = idle.pop()
            if wire.idle_usable:
                wire._reset()
                return wire
            wire.close()
        return None

    async def _connect(self, key: tuple[str, int], timeout: float | None) -> _Wire:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, wire = await loop.create_connection(_Wire, key[0], key[1])
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {key[0]}:{key[1]} failed: {exc}") from None
        self.connections_opened += 1
        return wire

    def _release(self, key: tuple[str, int], wire: _Wire, *, reuse: bool) -> None:
        self._slots.release()
        idle = self._idle.setdefault(key, [])
        if reuse and wire.idle_usable and len(idle) < MAX_IDLE_PER_HOST:
            idle.append(wire)
        else:
            wire.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for wire in idle:
                wire.close()
        self._idle.clear()
        await self._fallback.aclose()
