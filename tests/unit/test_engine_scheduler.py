"""Scheduler behaviour on the tiny model: cancellation, prefix reuse, admission limits, bad requests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from haven.engine.engine import LlamaEngine, load_engine
from haven.engine.protocol import Finished, GenerationRequest, SamplingParams, TextDelta, Usage
from haven.engine.slots import Handle, deliver
from haven.errors import ContextLengthExceededError, EngineError, InvalidRequestError, QueueFullError
from haven.server.engine_config import engine_config
from haven.settings import Settings
from tests.support.engine_run import generate, tiny_engine


def _forced(engine: LlamaEngine, max_tokens: int) -> SamplingParams:
    """Sampling that never ends early: one ordinary token forced, so only max_tokens stops it."""
    token = engine.tokenize("hello", add_special=False)[0]
    return SamplingParams(temperature=0, logit_bias={token: 100.0}, max_tokens=max_tokens)


def _all_empty(engine: LlamaEngine) -> bool:
    return all(engine.backend.seq_pos_max(s.seq_id) == -1 for s in engine.scheduler.slots)


async def test_cancel_frees_the_slot_within_one_step_and_trims_kv(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), parallel=1, context_length=2048)
    try:
        prompt = engine.tokenize("Tell me a very long story")
        handle = await engine.submit(GenerationRequest(prompt, _forced(engine, 2000)))
        events = handle.events()
        await events.__anext__()
        steps_at_cancel = engine.step_timings().steps
        await handle.cancel()
        rest = [event async for event in events]
        finished = rest[-1]
        assert isinstance(finished, Finished) and finished.reason == "cancelled"
        assert engine.step_timings().steps - steps_at_cancel <= 1
        assert 1 <= finished.usage.completion_tokens < 2000
        assert engine.stats().slots_in_use == 0
        # Generated KV entries are gone; the prompt's stay for reuse.
        assert engine.backend.seq_pos_max(0) == len(prompt) - 1
        again = await generate(engine, prompt, temperature=0, max_tokens=2)
        assert again.finished.usage.cached_tokens == len(prompt) - 1
    finally:
        await engine.close()


async def test_cancel_of_a_queued_request(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), parallel=1, context_length=2048)
    try:
        prompt = engine.tokenize("Hello")
        running = await engine.submit(GenerationRequest(prompt, _forced(engine, 2000)))
        queued = await engine.submit(GenerationRequest(prompt, _forced(engine, 5)))
        await queued.cancel()
        events = [e async for e in queued.events()]
        assert len(events) == 1 and isinstance(events[0], Finished)
        assert events[0].reason == "cancelled" and events[0].usage.completion_tokens == 0
        await running.cancel()
        assert [e async for e in running.events()][-1].reason == "cancelled"  # type: ignore[union-attr]
    finally:
        await engine.close()


async def test_second_turn_reuses_the_first_turns_prefix(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        turn1 = engine.tokenize(engine.render_chat([{"role": "user", "content": "Hi, who are you?"}]).text)
        first = await generate(engine, turn1, temperature=0, logit_bias={engine.tokenize("ok")[0]: 100.0}, max_tokens=8)
        assert first.finished.reason == "length" and first.finished.usage.cached_tokens == 0
        turn2 = turn1 + first.token_ids + engine.tokenize(" And what can you do?", add_special=False)
        second = await generate(engine, turn2, temperature=0, max_tokens=4)
        # Everything decoded before is reused: the prompt and all generated tokens but the last
        # (the last sampled token was never fed back into the model).
        assert second.finished.usage.cached_tokens == len(turn1) + 8 - 1
        assert second.finished.usage.prompt_tokens == len(turn2)
        assert engine.stats().cached_tokens_total == len(turn1) + 8 - 1
    finally:
        await engine.close()


async def test_prefix_cache_disabled_reuses_nothing(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), prefix_cache=False)
    try:
        prompt = engine.tokenize("The same prompt twice")
        await generate(engine, prompt, temperature=0, max_tokens=3)
        assert _all_empty(engine)
        again = await generate(engine, prompt, temperature=0, max_tokens=3)
        assert again.finished.usage.cached_tokens == 0
    finally:
        await engine.close()


async def test_full_queue_is_refused_with_retry_after(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), parallel=1, max_queue=1, context_length=2048)
    try:
        prompt = engine.tokenize("Hello")
        running = await engine.submit(GenerationRequest(prompt, _forced(engine, 2000)))
        waiting = await engine.submit(GenerationRequest(prompt, _forced(engine, 2)))
        with pytest.raises(QueueFullError) as info:
            await engine.submit(GenerationRequest(prompt, _forced(engine, 2)))
        assert info.value.retry_after > 0
        assert "max_queue 1" in str(info.value)
        await running.cancel()
        assert [e async for e in running.events()][-1].reason == "cancelled"  # type: ignore[union-attr]
        done = [e async for e in waiting.events()][-1]
        assert isinstance(done, Finished) and done.reason == "length"
        # Space again: a new request is accepted and served.
        assert (await generate(engine, prompt, temperature=0, max_tokens=2)).finished.reason in ("length", "stop")
    finally:
        await engine.close()


async def test_prompt_longer_than_context_is_refused_before_allocation(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model(), context_length=256)
    try:
        assert engine.info.context_length == 256
        long_prompt = engine.tokenize("word " * 400)
        assert len(long_prompt) > 256
        with pytest.raises(ContextLengthExceededError, match=f"The prompt has {len(long_prompt)} tokens"):
            await engine.submit(GenerationRequest(long_prompt, SamplingParams(max_tokens=4)))
        stats = engine.stats()
        assert (stats.slots_in_use, stats.queue_depth, stats.prompt_tokens_total) == (0, 0, 0)
        assert _all_empty(engine)
        assert engine.step_timings().steps == 0
        ok = await generate(engine, engine.tokenize("short"), temperature=0, max_tokens=2)
        assert ok.finished.usage.prompt_tokens == len(engine.tokenize("short"))
    finally:
        await engine.close()


async def test_bad_prompts_are_clear_errors_and_the_engine_keeps_serving(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model())
    try:
        with pytest.raises(InvalidRequestError, match="The prompt is empty"):
            await engine.submit(GenerationRequest([]))
        with pytest.raises(InvalidRequestError, match="not in this model's vocabulary"):
            await engine.submit(GenerationRequest([1, 2, engine.info.vocab_size]))
        with pytest.raises(InvalidRequestError, match="not in this model's vocabulary"):
            await engine.submit(GenerationRequest([-1]))
        assert _all_empty(engine) and engine.stats().queue_depth == 0
        prompt = engine.tokenize("Hello")
        running = await engine.submit(GenerationRequest(prompt, _forced(engine, 50), request_id="dup"))
        with pytest.raises(InvalidRequestError, match="already running"):
            await engine.submit(GenerationRequest(prompt, _forced(engine, 5), request_id="dup"))
        done = [e async for e in running.events()][-1]
        assert isinstance(done, Finished) and done.usage.completion_tokens == 50
    finally:
        await engine.close()


async def test_step_timings_account_for_every_step(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        await generate(engine, engine.tokenize("Hello"), temperature=0, logit_bias={5: 100.0}, max_tokens=10)
        t = engine.step_timings()
        # One prefill step that samples the first token, then one decode step per further token.
        assert t.steps == 10 and t.sampled_tokens == 10
        assert 0 < t.decode_seconds < t.step_seconds and t.python_seconds > 0
    finally:
        await engine.close()


async def test_close_finishes_requests_in_flight_as_cancelled(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), parallel=1, context_length=2048)
    prompt = engine.tokenize("Hello")
    running = await engine.submit(GenerationRequest(prompt, _forced(engine, 2000)))
    params = _forced(engine, 5)
    queued = await engine.submit(GenerationRequest(prompt, params))
    await engine.close()
    for handle in (running, queued):
        last = [e async for e in handle.events()][-1]
        assert isinstance(last, Finished) and last.reason == "cancelled"
    with pytest.raises(EngineError, match="shut down"):
        await engine.submit(GenerationRequest(prompt, params))
    with pytest.raises(EngineError, match="shut down"):
        engine.tokenize("Hello")


async def test_close_while_a_request_is_being_built_refuses_it(
    make_test_model: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request whose sampler chain is built while close() runs must not be queued after the scheduler
    thread has stopped (nothing would ever finish it, so its client would wait forever)."""
    from haven.engine import scheduler as scheduler_module

    engine = tiny_engine(make_test_model(), parallel=1, context_length=2048)
    prompt = engine.tokenize("Hello")
    real_build_chain = scheduler_module.build_chain

    def build_chain_then_close(*args: Any, **kwargs: Any) -> Any:
        chain = real_build_chain(*args, **kwargs)
        engine.scheduler.close()
        return chain

    monkeypatch.setattr(scheduler_module, "build_chain", build_chain_then_close)
    try:
        with pytest.raises(EngineError, match="shut down"):
            engine.scheduler.submit(GenerationRequest(prompt, _forced(engine, 5)), asyncio.get_running_loop())
        assert engine.stats().queue_depth == 0
    finally:
        await engine.close()


async def test_cached_conversation_survives_a_restart(make_test_model: Callable[..., Path], haven_env: Path) -> None:
    path = make_test_model()
    sha = "0123456789abcdef" * 4
    settings = {"context_length": 512, "parallel": 2, "batch_size": 128, "threads": 1, "kv_state_files": True}
    first_engine = load_engine(str(path), name="tiny", sha256=sha, config=engine_config(Settings(**settings)))
    turn1 = first_engine.tokenize("A long first question about many things " * 4)
    bias = {first_engine.tokenize("ok")[0]: 100.0}
    first = await generate(first_engine, turn1, temperature=0, logit_bias=bias, max_tokens=8)
    await first_engine.close()
    saved = sorted(p.name for p in (haven_env / "kv-state" / sha).iterdir())
    assert saved == ["slot-0.kv"]

    engine = load_engine(str(path), name="tiny", sha256=sha, config=engine_config(Settings(**settings)))
    try:
        turn2 = turn1 + first.token_ids + engine.tokenize(" And then?", add_special=False)
        second = await generate(engine, turn2, temperature=0, max_tokens=2)
        assert second.finished.usage.cached_tokens == len(turn1) + 8 - 1
    finally:
        await engine.close()
    # Without prefix caching nothing is restored (and a mismatched file is not trusted).
    cold_config = engine_config(Settings(**settings, prefix_cache=False))
    cold = load_engine(str(path), name="tiny", sha256=sha, config=cold_config)
    try:
        again = await generate(cold, turn2, temperature=0, max_tokens=2)
        assert again.finished.usage.cached_tokens == 0
    finally:
        await cold.close()


async def test_handle_delivers_many_events_per_wakeup_to_a_slow_consumer() -> None:
    """Pure logic, no model: the scheduler thread pushes faster than the consumer reads."""
    loop = asyncio.get_running_loop()
    handle = Handle("r1", loop, lambda _request_id: None)
    wakeups = 0
    original_wake = handle._wake

    def counting_wake() -> None:
        nonlocal wakeups
        wakeups += 1
        original_wake()

    handle._wake = counting_wake  # type: ignore[method-assign]

    def producer() -> None:
        for i in range(200):
            handle.push([TextDelta(str(i % 10), (i,))])
        handle.push([Finished("length", Usage(prompt_tokens=1, completion_tokens=200))])

    thread = threading.Thread(target=producer)
    thread.start()
    thread.join()  # everything is pushed before the consumer runs at all
    events = [e async for e in handle.events()]
    assert [e.token_ids[0] for e in events if isinstance(e, TextDelta)] == list(range(200))
    assert isinstance(events[-1], Finished) and handle.finished is events[-1]
    await asyncio.sleep(0)  # let the one scheduled wakeup run
    assert wakeups == 1


async def test_a_steps_events_for_many_requests_cost_one_wakeup_of_their_loop() -> None:
    """Each call_soon_threadsafe is a self-pipe write and a GIL hand-off: one per step, not one per stream."""
    loop = asyncio.get_running_loop()
    handles = [Handle(f"r{i}", loop, lambda _request_id: None) for i in range(8)]
    scheduled = 0
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal scheduled
        scheduled += 1
        return original(callback, *args, **kwargs)

    streams = [handle.events() for handle in handles]
    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:

        def scheduler_step(step: int) -> None:
            deliver([(h, [TextDelta(f"{i}:{step}", (step,))]) for i, h in enumerate(handles)])

        for step in range(3):  # the consumers read between steps, so every step needs its wakeup
            thread = threading.Thread(target=scheduler_step, args=(step,))
            thread.start()
            thread.join()
            assert scheduled == step + 1
            for i, events in enumerate(streams):
                event = await events.__anext__()
                assert isinstance(event, TextDelta) and event.text == f"{i}:{step}"
            await asyncio.sleep(0)  # the step's one wakeup runs
    finally:
        loop.call_soon_threadsafe = original  # type: ignore[method-assign]
        for events in streams:
            await events.aclose()


async def test_no_kv_state_files_unless_opted_in(make_test_model: Callable[..., Path], haven_env: Path) -> None:
    """Issue 10: KV state holds prompt tokens in clear, so by default nothing is written to disk."""
    engine = load_engine(
        str(make_test_model()),
        name="tiny",
        sha256="ab" * 32,
        config=engine_config(Settings(context_length=512, parallel=1, batch_size=128, threads=1)),
    )
    await generate(engine, engine.tokenize("a private question"), temperature=0, max_tokens=4)
    await engine.close()
    assert not (haven_env / "kv-state").exists()
