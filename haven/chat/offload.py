"""Per-message Python work moved off the event loop when a conversation is long.

Converting, walking or re-shaping 10,000 messages takes a pure-Python loop tens of milliseconds, during which
an event loop that ran it would answer no one (issue 11: ``/health`` within 100 ms while a huge chat is
refused). In a worker thread the same loop yields the GIL every few milliseconds, so the event loop keeps
serving; for a short conversation the thread hop would cost more than the work, so it runs inline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sized
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

MAX_MESSAGES = 10_000
"""The most messages a chat request may carry on any API (a context-tied limit refuses most before this)."""

LONG_CONVERSATION = 256
"""Above this many items, per-item work runs in a worker thread."""


async def off_loop_if_long(items: Sized | None, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, in a worker thread when ``items`` has more than LONG_CONVERSATION entries."""
    if items is not None and len(items) > LONG_CONVERSATION:
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)
