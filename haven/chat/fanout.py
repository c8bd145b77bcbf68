"""Several generations for one request (OpenAI's ``n``, several prompts): start, merge, collect.

Starting is all or nothing (if one is refused - queue full - the ones already queued are cancelled);
merged events arrive as ``(index, event)`` in arrival order; collecting runs every stream to its end and
cancels the others when one fails or the caller goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from haven.chat.backend import ChatEvent, ChatResult, ChatStream, collect, failure


async def start_all(starts: Sequence[Callable[[], Awaitable[ChatStream]]]) -> list[ChatStream]:
    started: list[ChatStream] = []
    try:
        for start in starts:
            started.append(await start())
    except BaseException:
        for stream in started:
            await stream.aclose()
        raise
    return started


async def merge(streams: Sequence[ChatStream]) -> AsyncGenerator[tuple[int, ChatEvent], None]:
    """Events of several streams as (index, event); closing the merge closes (cancels) them all."""
    if len(streams) == 1:
        try:
            async for event in streams[0]:
                yield 0, event
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue[tuple[int, ChatEvent | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: ChatStream) -> None:
        try:
            async for event in stream:
                await queue.put((index, event))
            await queue.put((index, None))
        except Exception as exc:
            await queue.put((index, exc))
        finally:
            await stream.aclose()

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                remaining -= 1
                continue
            yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _collected(stream: ChatStream) -> ChatResult:
    result = await collect(stream)
    error = failure(result.final)
    if error is not None:
        raise error
    return result


async def collect_all(streams: Sequence[ChatStream]) -> list[ChatResult]:
    """Every stream's whole answer; the first failure is raised and the other streams are cancelled."""
    tasks = [asyncio.ensure_future(_collected(s)) for s in streams]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
