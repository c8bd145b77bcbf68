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
