"""The lean upstream transport (haven/chat/http1.py) against real sockets: a scripted HTTP/1.1 server on loopback.

Each test's server answers the way a real or broken upstream does; the client is httpx's own, so what is checked
is what the routing layer sees: bodies, keep-alive reuse, and httpx's exception types for every failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from haven.chat.http1 import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request (head and Content-Length body); b"" when the client closed."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = await reader.readline()
        if not line:
            return b""
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + (await reader.readexactly(length) if length else b"")


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server calling ``handler`` per connection; yields its URL and the connections it accepted."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(len(accepted))
        try:
            await handler(reader, writer, accepted[-1])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()


@contextlib.asynccontextmanager
async def client(**kwargs: int) -> AsyncIterator[tuple[httpx.AsyncClient, LeanTransport]]:
    transport = LeanTransport(**kwargs)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(2.0)) as http:
        yield http, transport


async def test_a_chunked_stream_arrives_whole_and_its_connection_is_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        while request := await read_request(reader):
            assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
            assert request.endswith(b'\r\n\r\n{"a":1}')
            writer.write(STREAM_HEAD + chunked(b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"))
            await writer.drain()

    async with serving(handler) as (url, accepted), client() as (http, transport):
        for _ in range(3):
            async with http.stream("POST", url + "/v1/chat/completions", json={"a": 1}) as response:
                assert response.status_code == 200
                assert [line async for line in response.aiter_lines() if line] == [
                    "data: one", "data: two", "data: [DONE]"]  # fmt: skip
        assert transport.connections_opened == 1 and len(accepted) == 1


async def test_the_end_of_a_body_that_arrives_while_the_consumer_is_busy_is_not_lost() -> None:
    """The last chunks (usage, [DONE]) often arrive while the consumer is still writing the previous one to its
    own client: they must be read, not dropped because the message completed meanwhile."""
    consumer_busy = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + b"b\r\ndata: one\n\n\r\n")
        await writer.drain()
        await consumer_busy.wait()
        writer.write(b"b\r\ndata: two\n\n\r\n" + b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
        await writer.drain()
        while await read_request(reader):  # the connection is reused for the next request
            writer.write(STREAM_HEAD + chunked(b"data: [DONE]\n\n"))
            await writer.drain()

    async with serving(handler) as (url, _), client() as (http, transport):
        async with http.stream("POST", url, json={}) as response:
            received = []
            async for chunk in response.aiter_raw():
                received.append(chunk)
                if len(received) == 1:  # the rest arrives, and the message completes, during this await
                    consumer_busy.set()
                    await asyncio.sleep(0.2)
            assert b"".join(received) == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
        async with http.stream("POST", url, json={}):
            pass
        assert transport.connections_opened == 1  # read to its end, the connection was reused


async def test_length_and_close_delimited_bodies() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        request = await read_request(reader)
        if b"/length" in request:
            writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-upstream: yes\r\n\r\nhello")
            await writer.drain()
            await read_request(reader)  # keep the connection open for reuse
        else:  # no length, no chunks: the body ends with the connection
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end")
            await writer.drain()

    async with serving(handler) as (url, accepted), client() as (http, transport):
        response = await http.get(url + "/length")
        assert (response.status_code, response.text, response.headers["x-upstream"]) == (201, "hello", "yes")
        response = await http.get(url + "/close")
        assert response.text == "until the end"
        await http.get(url + "/length")  # the close-delimited connection is gone: a new one
        assert transport.connections_opened == 3


async def test_an_idle_connection_the_upstream_closed_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # then closes without a word, as servers do with idle keep-alive connections

    async with serving(handler) as (url, accepted), client() as (http, transport):
        assert (await http.get(url)).text == "ok"
        await asyncio.sleep(0.05)
        assert (await http.get(url)).text == "ok"
        assert transport.connections_opened == 2


async def test_a_request_on_a_connection_closed_before_any_answer_goes_once_more_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the second request on this connection: dropped unanswered (the race)

    async with serving(handler) as (url, accepted), client() as (http, transport):
        assert (await http.get(url)).text == "ok"
        assert (await http.get(url)).text == "ok"
        assert transport.connections_opened == 2


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (200 << 10) + b"\r\n\r\n", "too large"),
        (b"", "closed the connection without an answer"),
    ],
)
async def test_garbage_oversized_or_missing_heads_are_protocol_errors(answer: bytes, message: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()

    async with serving(handler) as (url, _), client() as (http, _transport):
        with pytest.raises(httpx.RemoteProtocolError, match=message):
            await http.get(url)


async def test_a_body_cut_mid_answer_is_an_error_not_a_short_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(STREAM_HEAD + b"b\r\ndata: one\n\n\r\n")  # one chunk, then the connection drops
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with serving(handler) as (url, _), client() as (http, _transport):
        async with http.stream("GET", url) as response:
            lines = []
            with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
                async for line in response.aiter_lines():
                    lines.append(line)
            assert lines == ["data: one", ""]
        with pytest.raises(httpx.RemoteProtocolError, match="mid-answer"):
            await http.get(url)


async def test_timeouts_and_refusals_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        await reader.read()  # answers nothing, until the client gives up and closes

    async with serving(silent) as (url, _), client() as (http, _transport):
        with pytest.raises(httpx.ReadTimeout):
            await http.get(url, timeout=httpx.Timeout(2.0, read=0.2))
    async with serving(silent) as (url, _):
        pass  # closed: nothing listens on that port any more
    async with client() as (http, _transport):
        with pytest.raises(httpx.ConnectError, match="failed"):
            await http.get(url)


async def test_a_reused_connection_keeps_each_requests_own_read_timeout() -> None:
    """A health check's 0.2 s read timeout on a connection a chat used with 60 s (the pool shares connections)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the second request: never answered
        await reader.read()

    async with serving(handler) as (url, _), client() as (http, transport):
        assert (await http.get(url, timeout=httpx.Timeout(60.0))).text == "ok"
        with pytest.raises(httpx.ReadTimeout):
            await asyncio.wait_for(http.get(url, timeout=httpx.Timeout(60.0, read=0.2)), 5)
        assert transport.connections_opened == 1


async def test_leaving_a_stream_early_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + b"b\r\ndata: one\n\n\r\n")
        await writer.drain()
        if n == 0:
            # the client left: its side closes and this read ends (that is how an upstream learns to cancel)
            assert await reader.read() == b""
            closed.set()
        else:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async with serving(handler) as (url, _), client() as (http, transport):
        async with http.stream("GET", url) as response:
            async for _line in response.aiter_lines():
                break
        await asyncio.wait_for(closed.wait(), 2)
        async with http.stream("GET", url) as response:
            assert [line async for line in response.aiter_lines()] == ["data: one", ""]
        assert transport.connections_opened == 2


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        received.append(await reader.read())

    async with serving(handler) as (url, _), client() as (http, _transport):
        with pytest.raises(httpx.LocalProtocolError, match="invalid header"):
            await http.get(url, headers={"authorization": "Bearer k\r\nx-injected: 1"})
    assert received == []  # not even a connection


async def test_more_requests_than_connections_wait_for_one_then_time_out() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        await writer.drain()
        await release.wait()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with (
        serving(handler) as (url, _),
        client(max_connections=1) as (http, _transport),
        http.stream("GET", url) as held,
    ):
        with pytest.raises(httpx.PoolTimeout):
            await http.get(url, timeout=httpx.Timeout(2.0, pool=0.1))
        release.set()
        await held.aread()


async def test_https_goes_to_the_fallback_transport() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="tls")

    transport = LeanTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get("https://gpu1.example/v1/models")).text == "tls"
    assert seen == ["https://gpu1.example/v1/models"] and transport.connections_opened == 0
