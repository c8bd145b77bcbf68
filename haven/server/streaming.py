"""Server-Sent Events keep-alive, shared by every SSE endpoint (chat completions, completions, responses).

:func:`with_keepalive` sends an SSE comment after KEEPALIVE_SECONDS without an event, so a vanished client
is noticed (the write fails) even while a request waits in the queue, and the slot is freed; closing
the wrapper closes the stream underneath, which cancels the generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

KEEPALIVE_SECONDS = 2.0
PING = b": keep-alive\n\n"


async def with_keepalive(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yields ``PING`` whenever ``frames`` is silent for KEEPALIVE_SECONDS; closes ``frames`` on exit."""
    iterator = frames.__aiter__()
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE_SECONDS)
            if not done:
                yield PING
                continue
            try:
                frame = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield frame
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await iterator.aclose()  # type: ignore[attr-defined]
