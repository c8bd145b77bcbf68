"""The bounded wait with one timer per waiter (haven/chat/waiting.py), on a real event loop."""

from __future__ import annotations

import asyncio

from haven.chat.waiting import Waiter


async def test_a_wake_ends_the_wait_and_silence_ends_it_at_the_deadline() -> None:
    waiter = Waiter()
    asyncio.get_running_loop().call_later(0.01, waiter.wake)
    assert await waiter.wait(5.0) is False
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await waiter.wait(0.05) is True
    assert 0.04 <= loop.time() - started < 1.0
    waiter.close()


async def test_a_shorter_timeout_after_a_longer_one_is_kept() -> None:
    # The timer armed for the first wait's 60 s deadline must not hide the second wait's 0.05 s one.
    waiter = Waiter()
    asyncio.get_running_loop().call_later(0.01, waiter.wake)
    assert await waiter.wait(60.0) is False
    assert await asyncio.wait_for(waiter.wait(0.05), 2.0) is True
    waiter.close()


async def test_no_timeout_waits_for_the_wake_even_with_a_timer_armed() -> None:
    waiter = Waiter()
    asyncio.get_running_loop().call_later(0.01, waiter.wake)
    assert await waiter.wait(0.02) is False  # woken first; its timer is still armed
    asyncio.get_running_loop().call_later(0.1, waiter.wake)
    assert await waiter.wait(None) is False  # the old timer fired meanwhile without ending this wait
    waiter.close()
