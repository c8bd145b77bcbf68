"""SSE keep-alive: a silent stream (a request waiting in the queue) gets comment frames, and closing the
wrapper closes the stream underneath (which is what cancels the generation)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from haven.server import streaming as serving


async def test_silence_yields_pings_then_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "KEEPALIVE_SECONDS", 0.05)

    async def frames() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.18)
        yield b"data: 1\n\n"

    out = [frame async for frame in serving.with_keepalive(frames())]
    assert out[-1] == b"data: 1\n\n"
    assert set(out[:-1]) == {serving.PING} and 2 <= len(out) - 1 <= 4


async def test_closing_the_wrapper_closes_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serving, "KEEPALIVE_SECONDS", 0.05)
    closed = asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"data: first\n\n"
            await asyncio.sleep(60)
            yield b"never"
        finally:
            closed.set()

    wrapper = serving.with_keepalive(frames())
    assert await wrapper.__anext__() == b"data: first\n\n"
    assert await wrapper.__anext__() == serving.PING
    await wrapper.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()


async def test_a_slow_client_does_not_drain_the_source_into_memory() -> None:
    produced = 0

    async def frames() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield b"data: %d\n\n" % i

    wrapper = serving.with_keepalive(frames())
    assert await wrapper.__anext__() == b"data: 0\n\n"
    for _ in range(10):
        await asyncio.sleep(0)  # the pump runs ahead as far as it may
    assert produced <= serving.MAX_BUFFERED_FRAMES + 2
    rest = [frame async for frame in wrapper]
    assert rest == [b"data: %d\n\n" % i for i in range(1, 1000)]


async def test_an_error_in_the_source_reaches_the_reader_after_the_frames_before_it() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b"data: 1\n\n"
        raise RuntimeError("broken source")

    out: list[bytes] = []
    with pytest.raises(RuntimeError, match="broken source"):
        async for frame in serving.with_keepalive(frames()):
            out.append(frame)
    assert out == [b"data: 1\n\n"]
