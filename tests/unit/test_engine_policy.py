"""Scheduling under load: fair share between clients, bounded prefill, shortest prompt first with ageing.

The rules are pure functions (haven.engine.policy) tested directly; the engine tests check that the
scheduler applies them on the tiny model (recording every batch it decodes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from haven.engine.engine import LlamaEngine
from haven.engine.llama_backend import Batch
from haven.engine.policy import (
    AGEING_TOKENS,
    MIN_PREFILL,
    Prefilling,
    Queued,
    pick_next,
    plan_prefill,
    prefill_budget,
)
from haven.engine.protocol import EngineEvent, Finished, GenerationHandle, GenerationRequest, SamplingParams
from haven.engine.speculative import PromptTokenCost
from tests.support.engine_run import tiny_engine


def test_a_free_slot_goes_to_the_client_holding_the_fewest() -> None:
    queued = [Queued("alice", 1), Queued("alice", 2), Queued("bob", 3), Queued("", 4)]
    assert pick_next(queued, Counter({"alice": 2})) == 2  # bob holds none
    assert pick_next(queued, Counter({"alice": 1, "bob": 1, "": 1})) == 0  # all equal: first come
    assert pick_next(queued, Counter({"alice": 1, "bob": 1})) == 3  # anonymous requests share one key
    assert pick_next(queued, Counter()) == 0
    # Equal shares: round robin, the client admitted least recently goes first.
    assert pick_next(queued, Counter(), {"alice": 7, "bob": 5, "": 6}) == 2
    assert pick_next(queued, Counter(), {"alice": 7, "bob": 5}) == 3  # never admitted: oldest


def test_two_users_bursts_are_interleaved_slot_by_slot() -> None:
    # alice queues six requests, then bob three; two slots, each finishing request frees its slot.
    queue = [Queued("user:alice", i) for i in range(6)] + [Queued("user:bob", 6 + i) for i in range(3)]
    active: Counter[str] = Counter()
    running: list[str] = []
    last: dict[str, int] = {}
    admitted: list[str] = []
    while queue:
        while len(running) < 2 and queue:
            picked = queue.pop(pick_next(queue, active, last))
            active[picked.client_key] += 1
            last[picked.client_key] = len(admitted)
            admitted.append(picked.client_key)
            running.append(picked.client_key)
        done = running.pop(0)  # the oldest running request finishes
        active[done] -= 1
    short = [key.removeprefix("user:")[0] for key in admitted]
    # bob's first request does not wait for alice's burst: the slots alternate while both have work.
    assert short == ["a", "b", "a", "b", "a", "b", "a", "a", "a"], short


def test_prefill_budget_goes_to_the_shortest_prompt_first() -> None:
    items = [Prefilling(remaining=1500, waited=0, order=1), Prefilling(remaining=40, waited=0, order=2)]
    assert plan_prefill(items, 256) == [216, 40]
    assert plan_prefill(items, 30) == [0, 30]
    assert plan_prefill(items, 0) == [0, 0]
    assert sum(plan_prefill([Prefilling(100, 0, i) for i in range(5)], 256)) == 256


def test_a_long_prompt_is_not_starved_by_a_stream_of_short_ones() -> None:
    long = Prefilling(remaining=1000, waited=0, order=1)
    steps = 0
    while plan_prefill([long, Prefilling(remaining=64, waited=0, order=100 + steps)], 64)[0] == 0:
        steps += 1
        long = Prefilling(long.remaining, long.waited + 1, long.order)
    # Each waiting step improves its rank by AGEING_TOKENS: it is served within remaining / AGEING_TOKENS steps.
    assert 0 < steps <= 1000 // AGEING_TOKENS


def _record_batches(engine: object) -> list[list[tuple[int, int]]]:
    backend = engine.backend  # type: ignore[attr-defined]
    seen: list[list[tuple[int, int]]] = []
    decode = backend.decode

    def spy(batch: Batch) -> int:
        raw = batch.raw
        seen.append([(raw.seq_id[i][0], raw.pos[i]) for i in range(batch.n)])
        return decode(batch)

    backend.decode = spy
    return seen


async def _first_token(handle: object) -> float:
    loop = asyncio.get_running_loop()
    async for _ in handle.events():  # type: ignore[attr-defined]
        return loop.time()
    raise AssertionError("no event")


async def _endless_stream(
    engine: LlamaEngine,
) -> tuple[GenerationHandle, AsyncIterator[EngineEvent], list[list[tuple[int, int]]]]:
    """A greedy stream that never ends by itself, already decoding, and the batches recorded from then on."""
    token = engine.tokenize("hello", add_special=False)[0]
    endless = SamplingParams(temperature=0, logit_bias={token: 100.0}, max_tokens=400, speculative="off")
    stream = await engine.submit(GenerationRequest(engine.tokenize("Stream"), endless))
    events = stream.events()
    await events.__anext__()  # decoding now
    return stream, events, _record_batches(engine)


async def test_decoding_streams_get_a_bounded_prefill_and_a_short_prompt_overtakes_a_long_one(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model(), parallel=3, batch_size=256, prefill_chunk=16, context_length=1024)
    try:
        stream, events, batches = await _endless_stream(engine)
        long_prompt = engine.tokenize(" ".join(["word"] * 300))
        short_prompt = engine.tokenize("Hi there")
        quick = SamplingParams(temperature=0, max_tokens=1)
        long = await engine.submit(GenerationRequest(long_prompt, quick))
        short = await engine.submit(GenerationRequest(short_prompt, quick))
        t_long, t_short = await asyncio.gather(_first_token(long), _first_token(short))
        assert t_short < t_long  # shortest prompt first: it did not wait behind 300 tokens
        await stream.cancel()
        async for _ in events:
            pass
        # While the stream decoded, no step added more than prefill_chunk prompt tokens in total.
        stream_seq = 0
        for entries in batches:
            seqs = {seq for seq, _ in entries}
            if stream_seq in seqs and len(seqs) > 1:
                prompt_tokens = sum(1 for seq, _ in entries if seq != stream_seq)
                assert prompt_tokens <= 16 + 2  # + at most one bridged slot's token
        assert any(len({s for s, _ in e}) > 1 for e in batches)
    finally:
        await engine.close()


def test_the_prompt_tokens_a_step_adds_fit_the_step_time_target() -> None:
    # Decoding rows take 10 ms, a prompt token 3.5 ms (a two-core laptop): 50 ms leaves room for 11 tokens.
    assert prefill_budget(chunk=512, target_s=0.05, decode_s=0.01, prompt_token_s=0.0035) == 11
    # A GPU: 0.05 ms a token, so the token bound is the tighter one.
    assert prefill_budget(chunk=512, target_s=0.05, decode_s=0.01, prompt_token_s=0.00005) == 512
    # Decoding alone overruns the target: the prompt still progresses by MIN_PREFILL a step...
    assert prefill_budget(chunk=512, target_s=0.05, decode_s=0.08, prompt_token_s=0.0035) == MIN_PREFILL
    # ...but never beyond the token bound.
    assert prefill_budget(chunk=3, target_s=0.05, decode_s=0.08, prompt_token_s=0.0035) == 3
    # No target: the token bound alone.
    assert prefill_budget(chunk=256, target_s=0.0, decode_s=0.02, prompt_token_s=0.0035) == 256


def test_the_price_of_a_prompt_token_is_learned_from_the_steps() -> None:
    cost = PromptTokenCost()
    cost.observe(100, 0.35)  # the first sample replaces the 1 ms prior
    assert abs(cost.seconds - 0.0035) < 1e-9
    cost.observe(2, 5.0)  # two tokens cannot be told from a step's noise: ignored
    cost.observe(50, -0.01)  # the other rows' prediction overshot: no information
    assert abs(cost.seconds - 0.0035) < 1e-9
    for _ in range(40):
        cost.observe(64, 64 * 0.001)
    assert abs(cost.seconds - 0.001) < 1e-5  # it follows the machine when steps get cheaper


async def test_with_a_step_time_target_decoding_streams_get_only_the_prompt_tokens_that_fit(
    make_test_model: Callable[..., Path],
) -> None:
    # A target no step can meet: every step beside a decoding stream adds MIN_PREFILL prompt tokens, not 64.
    engine = tiny_engine(make_test_model(), parallel=2, batch_size=256, prefill_chunk=64, itl_target_ms=0.001,
                         context_length=1024)  # fmt: skip
    try:
        stream, events, batches = await _endless_stream(engine)
        long_prompt = engine.tokenize(" ".join(["word"] * 100))
        long = await engine.submit(GenerationRequest(long_prompt, SamplingParams(temperature=0, max_tokens=1)))
        await _first_token(long)
        await stream.cancel()
        async for _ in events:
            pass
        beside = [sum(1 for seq, _ in e if seq != 0) for e in batches if {seq for seq, _ in e} >= {0, 1}]
        assert beside and max(beside) <= MIN_PREFILL + 1  # + at most one bridged slot's token
        assert sum(beside) >= len(long_prompt) - MIN_PREFILL  # the prompt went in beside the stream
    finally:
        await engine.close()


async def test_a_burst_from_one_client_does_not_hold_the_others_in_the_queue(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model(), parallel=1, max_queue=8)
    try:
        prompt = engine.tokenize("Hello")
        params = SamplingParams(temperature=0, max_tokens=3)
        order: list[str] = []

        async def run(name: str, client: str) -> None:
            handle = await engine.submit(GenerationRequest(prompt, params, request_id=name, client_key=client))
            async for event in handle.events():
                if isinstance(event, Finished):
                    order.append(name)

        tasks = [asyncio.create_task(run(f"a{i}", "alice")) for i in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(run("b0", "bob")))
        await asyncio.gather(*tasks)
        # alice's first request took the slot; bob's went next, not after her whole burst.
        assert order == ["a0", "b0", "a1", "a2", "a3"], order
    finally:
        await engine.close()
