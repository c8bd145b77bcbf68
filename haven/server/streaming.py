"""Server-Sent Events keep-alive, shared by every SSE endpoint (chat completions, completions, responses).

:func:`with_keepalive` sends an SSE comment after KEEPALIVE_SECONDS without an event, so a vanished client
is noticed (the write fails) even while a request waits in the queue, and the slot is freed; closing
the wrapper closes the stream underneath, which cancels the generation.

One task pumps the frames into a short buffer for the whole stream, and the wait for the next frame has
one timer per stream (:class:`~haven.chat.waiting.Waiter`): a task and a timed ``asyncio.wait`` per frame
were most of Haven's own CPU per streamed chunk in front of an upstream.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from haven.chat.waiting import Waiter

KEEPALIVE_SECONDS = 2.0
PING = b": keep-alive\n\n"
MAX_BUFFERED_FRAMES = 64
"""Frames pumped ahead of a slow client before the pump waits (the source is not drained into memory)."""


class _Pump:
    """Reads ``frames`` in its own task into ``buffer``; the consumer waits on ``wait``."""

    def __init__(self, frames: AsyncIterator[bytes]) -> None:
        self.loop = asyncio.get_running_loop()
        self.iterator = frames.__aiter__()
        self.buffer: deque[bytes] = deque()
        self.done = False
        self.error: Exception | None = None
        self._waiter = Waiter()
        self._room: asyncio.Future[None] | None = None
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            async for frame in self.iterator:
                self.buffer.append(frame)
                self._wake()
                if len(self.buffer) >= MAX_BUFFERED_FRAMES:
                    self._room = self.loop.create_future()
                    await self._room
        except Exception as exc:  # the consumer raises it where the stream is read
            self.error = exc
        finally:
            self.done = True
            self._wake()

    def _wake(self) -> None:
        self._waiter.wake()

    def take(self) -> bytes:
        frame = self.buffer.popleft()
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        return frame

    async def wait(self) -> bool:
        """Until a frame or the end arrives (False) or KEEPALIVE_SECONDS of silence pass (True)."""
        return await self._waiter.wait(KEEPALIVE_SECONDS)

    async def close(self) -> None:
        self._waiter.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.iterator.aclose()  # type: ignore[attr-defined]


async def with_keepalive(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yields ``PING`` whenever ``frames`` is silent for KEEPALIVE_SECONDS; closes ``frames`` on exit."""
    pump = _Pump(frames)
    try:
        while True:
            if pump.buffer:
                yield pump.take()
                continue
            if pump.done:
                if pump.error is not None:
                    raise pump.error
                return
            if await pump.wait():
                yield PING
    finally:
        await pump.close()
