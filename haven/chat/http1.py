"""A lean HTTP/1.1 transport for plain-http upstreams: httpx's transport API over asyncio streams and httptools.

Haven sits in front of a model server on the same network, and every request's time to first token pays for
the proxy's own HTTP client. httpx's default transport (httpcore over anyio, h11 in pure Python) cost about
0.6 ms a request here against plain asyncio streams. This transport keeps httpx's client, its exceptions and
its timeouts, and replaces only the wire: keep-alive connections per host, the C parser uvicorn uses, one
write per request. ``https`` (and anything this one does not speak) goes to httpx's own transport.

Bounds: the response head is at most ``MAX_HEAD_BYTES``; every read, write and connect has the request's
timeout; at most ``max_connections`` are open at once (the request waits ``pool`` seconds for one). A kept-alive
connection the upstream closed while idle is not reused, and a request that finds one closed before any byte of
its answer is sent once more on a new connection (nothing was processed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httptools
import httpx

MAX_HEAD_BYTES = 64 << 10
READ_SIZE = 64 << 10
MAX_IDLE_PER_HOST = 64


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None, float | None]:
    t = request.extensions.get("timeout", {})
    return t.get("connect"), t.get("read"), t.get("write"), t.get("pool")


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


class _Wire:
    """One connection and the response being read on it (httptools calls the ``on_*`` methods)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reusable = True
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.delimited = False  # by a length or chunked encoding (else by the connection closing)
        self.body: list[bytes] = []
        self.received = 0
        self.messages = 0

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

    def on_message_complete(self) -> None:
        self.complete = True

    # --- reading ------------------------------------------------------------------------------------------
    @property
    def idle_usable(self) -> bool:
        return self.reusable and not self.reader.at_eof() and not self.writer.is_closing()

    async def read(self, timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream sent nothing within the read timeout") from None
        except OSError as exc:
            raise httpx.ReadError(f"reading from the upstream failed: {exc}") from None
        self.received += len(data)
        return data

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpx.RemoteProtocolError("the upstream switched protocols") from None
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"the upstream's answer is not valid HTTP/1.1 ({exc})") from None

    async def read_head(self, timeout: float | None) -> None:
        while not self.head_done:
            data = await self.read(timeout)
            if not data:
                raise httpx.RemoteProtocolError("the upstream closed the connection without an answer")
            self.feed(data)  # one read is at most READ_SIZE: the bound below holds within one read's slack
            if self.received > MAX_HEAD_BYTES and not self.head_done:
                raise httpx.RemoteProtocolError("the upstream's response head is too large")

    def close(self) -> None:
        self.reusable = False
        if not self.writer.is_closing():
            self.writer.close()


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
                    chunks, wire.body = wire.body, []
                    for chunk in chunks:
                        yield chunk
                if wire.complete:
                    break
                data = await wire.read(self._read_timeout)
                if not data:
                    if wire.delimited:
                        raise httpx.RemoteProtocolError("the upstream closed the connection mid-answer")
                    wire.reusable = False  # the body ends where the connection does
                    break
                wire.feed(data)
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
        connect_t, read_t, write_t, pool_t = _timeouts(request)
        body = await request.aread()
        message = _head(request, len(body)) + body
        key = (url.host, url.port or 80)
        try:
            async with asyncio.timeout(pool_t):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no upstream connection was free within the pool timeout") from None
        try:
            wire = await self._exchange(key, message, connect_t, read_t, write_t)
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
        self, key: tuple[str, int], message: bytes, connect_t: float | None, read_t: float | None,
        write_t: float | None,
    ) -> _Wire:  # fmt: skip
        while True:
            wire, reused = self._idle_wire(key), True
            if wire is None:
                wire, reused = await self._connect(key, connect_t), False
            try:
                wire.writer.write(message)
                try:
                    async with asyncio.timeout(write_t):
                        await wire.writer.drain()
                except TimeoutError:
                    raise httpx.WriteTimeout("the upstream did not take the request within the write timeout") from None
                except OSError as exc:
                    raise httpx.WriteError(f"writing to the upstream failed: {exc}") from None
                await wire.read_head(read_t)
                return wire
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
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
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(key[0], key[1], limit=READ_SIZE)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {key[0]}:{key[1]} failed: {exc}") from None
        self.connections_opened += 1
        return _Wire(reader, writer)

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
