"""One consumer waiting for a producer's signal, each wait bounded in time, with one timer per waiter.

A stream waits hundreds of times (for each chunk from an upstream, for each frame to send on), and a timer per
wait (``asyncio.timeout``, ``asyncio.wait(timeout=…)``) was a measurable share of Haven's CPU per chunk. Here
the deadline is a number moved on every wait, and the single timer is re-armed only when it fires early or
when a wait's deadline comes before it. Used by the upstream transport (:mod:`haven.chat.http1`) and the SSE
keep-alive (:mod:`haven.server.streaming`).
"""

from __future__ import annotations

import asyncio
import math


class Waiter:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[None] | None = None
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def wake(self) -> None:
        """End the current wait (if any) as signalled."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        """Until :meth:`wake` (False) or ``timeout`` seconds pass (True); ``None``: no time limit."""
        self._expired = False
        self._deadline = math.inf if timeout is None else self._loop.time() + timeout
        if self._deadline != math.inf and (self._timer is None or self._timer.when() > self._deadline):
            if self._timer is not None:  # armed for a later deadline (a longer timeout before this one)
                self._timer.cancel()
            self._timer = self._loop.call_at(self._deadline, self._check)
        future = self._future = self._loop.create_future()
        try:
            await future
        finally:
            self._future = None
        return self._expired

    def _check(self) -> None:
        self._timer = None
        future = self._future
        if future is None or future.done():
            return  # not waiting now: the next wait arms the timer again
        if self._loop.time() >= self._deadline:
            self._expired = True
            future.set_result(None)
        elif self._deadline != math.inf:
            self._timer = self._loop.call_at(self._deadline, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
