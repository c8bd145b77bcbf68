"""Batch layout for per-sequence KV streams: ascending ids, contiguous slots, bridged holes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from haven.engine.llama_backend import Batch
from haven.engine.packing import bridge_gaps, count_runs, holes_after
from tests.support.engine_run import generate, tiny_engine, wide_drafts


@pytest.mark.parametrize(
    ("seq_ids", "runs"),
    [([0], 1), ([0, 1, 2, 3], 1), ([3, 1, 2, 0], 1), ([0, 2], 2), ([0, 1, 3, 5, 6], 3), ([], 0)],
)
def test_count_runs_counts_consecutive_ranges(seq_ids: list[int], runs: int) -> None:
    assert count_runs(seq_ids) == runs


def test_holes_after_counts_idle_ids_inside_the_busy_range() -> None:
    assert holes_after([1, 2], 3) == 0
    assert holes_after([1, 2], 0) == 0
    assert holes_after([1, 2], 5) == 2
    assert holes_after([0, 4], 2) == 2
    assert holes_after([2], 2) == 0


def test_bridge_gaps_fills_short_holes_of_idle_slots_only() -> None:
    always = lambda seq: True  # noqa: E731
    assert bridge_gaps([0, 1, 2], always) == []
    assert bridge_gaps([0, 2], always) == [1]
    assert bridge_gaps([0, 3, 5], always) == [1, 2, 4]
    assert bridge_gaps([0, 4], always) == []  # a hole of 3: another pass is cheaper than 3 tokens
    assert bridge_gaps([0, 4], always, max_gap=3) == [1, 2, 3]
    assert bridge_gaps([0, 3], lambda seq: seq != 2) == []  # one id in the hole cannot take a token
    assert bridge_gaps([7], always) == []


def _record_batches(engine: object) -> list[list[tuple[int, int, bool]]]:
    """Wrap the backend's decode to keep (seq id, position, wants logits) of every batch entry."""
    backend = engine.backend  # type: ignore[attr-defined]
    seen: list[list[tuple[int, int, bool]]] = []
    decode = backend.decode

    def spy(batch: Batch) -> int:
        raw = batch.raw
        seen.append([(raw.seq_id[i][0], raw.pos[i], bool(raw.logits[i])) for i in range(batch.n)])
        return decode(batch)

    backend.decode = spy
    return seen


async def test_fresh_slots_are_taken_so_every_step_is_one_pass(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(), parallel=4, batch_size=64)
    try:
        # Slot 0 holds a finished chat; the next four requests share no prefix with it.
        await generate(engine, engine.tokenize("A first conversation"), temperature=0, max_tokens=4)
        batches = _record_batches(engine)
        prompts = [engine.tokenize(f"Request number {i} asks something else") for i in range(4)]
        await asyncio.gather(*(generate(engine, p, temperature=0, max_tokens=12) for p in prompts))
        assert batches
        for entries in batches:
            seqs = [seq for seq, _, _ in entries]
            assert seqs == sorted(seqs), "entries must be in ascending sequence id"
            assert count_runs(seqs) == 1, f"a step touched non-consecutive sequences {sorted(set(seqs))}"
    finally:
        await engine.close()


async def test_an_idle_slot_between_busy_ones_is_bridged_and_left_intact(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model(), parallel=3, batch_size=64)
    try:
        chats = [engine.tokenize(text) for text in ("First chat about rivers", "Second chat", "Third chat on cities")]
        # Fill the three slots (one request each, concurrently), so each holds one chat's tokens.
        firsts = await asyncio.gather(*(generate(engine, p, temperature=0, max_tokens=6) for p in chats))
        slots = engine.scheduler.slots
        owner = {tuple(slot.tokens[: len(chat)]): slot.seq_id for slot in slots for chat in chats}
        middle = next(i for i, chat in enumerate(chats) if owner[tuple(chat)] == 1)
        outer = [i for i in range(3) if i != middle]
        middle_tokens = list(slots[1].tokens)

        # Follow-ups of the two outer chats reuse slots 0 and 2 and run together; slot 1 idles.
        follow = [chats[i] + firsts[i].token_ids + engine.tokenize(" and more") for i in outer]
        alone = []
        for prompt in follow:  # reference: each on its own (reuse keeps them in the same slots)
            alone.append(await generate(engine, prompt, temperature=0, max_tokens=10))
        batches = _record_batches(engine)
        together = await asyncio.gather(*(generate(engine, p, temperature=0, max_tokens=10) for p in follow))
        for a, b in zip(alone, together, strict=True):
            assert a.token_ids == b.token_ids
            assert b.finished.usage.cached_tokens > 0

        bridged = [e for entries in batches for e in entries if e[0] == 1]
        assert bridged, "slot 1 was never bridged"
        assert all(not wants_logits for _, _, wants_logits in bridged)
        # At the slot's next free position (and after it when the step verifies drafts: every row of a
        # step has the same width, see speculative).
        assert min(pos for _, pos, _ in bridged) == len(middle_tokens)
        assert all(pos >= len(middle_tokens) for _, pos, _ in bridged)
        # The bridge token was removed again: slot 1's KV and tokens are what its chat left.
        assert slots[1].tokens == middle_tokens
        assert engine.backend.seq_pos_max(1) == len(middle_tokens) - 1
        again = await generate(engine, chats[middle] + firsts[middle].token_ids, temperature=0, max_tokens=4)
        assert again.finished.usage.cached_tokens == len(middle_tokens)
    finally:
        await engine.close()


async def test_slot_choice_prefers_prefix_then_contiguity_then_least_held(
    make_test_model: Callable[..., Path],
) -> None:
    engine = tiny_engine(make_test_model(), parallel=4, batch_size=64)
    try:
        scheduler = engine.scheduler
        slots = scheduler.slots
        slots[0].work = object()  # type: ignore[assignment]  # busy
        slots[1].tokens = [5, 6, 7, 8, 9]
        slots[2].tokens = [5, 6, 7]
        slots[3].tokens = [1]
        free = slots[1:]
        # No shared prefix anywhere: slot 1 keeps the busy range contiguous, though it holds the most.
        assert scheduler._pick_slot(free, [42, 43]) == (slots[1], 0)
        # A shared prefix beats contiguity.
        assert scheduler._pick_slot(free, [1, 2]) == (slots[3], 1)
        slots[0].work = None
        # Nothing busy: the slot holding the least is the cheapest to lose.
        assert scheduler._pick_slot(slots, [42]) == (slots[0], 0)
    finally:
        for slot in engine.scheduler.slots:
            slot.work = None
            slot.tokens = []
        await engine.close()


async def test_steps_that_verify_drafts_give_every_row_the_same_width(make_test_model: Callable[..., Path]) -> None:
    """llama.cpp's split_equal takes the same number of tokens from every sequence of a micro-batch: rows of
    unequal width would cost extra passes, so drafting rows pad the others to the step's width."""
    engine = wide_drafts(tiny_engine(make_test_model(), parallel=3, batch_size=64, speculative="ngram"))
    try:
        batches = _record_batches(engine)
        prompts = [engine.tokenize(t) for t in ("one two one two one two", "Hello there", "a b c a b c a b")]
        # The middle request is penalised so its drafts fail: rows with different draft lengths share steps.
        await asyncio.gather(
            generate(engine, prompts[0], temperature=0, max_tokens=20),
            generate(engine, prompts[1], temperature=0, max_tokens=20, presence_penalty=1.0),
            generate(engine, prompts[2], temperature=0, max_tokens=20),
        )
        prompt_len = {
            slot.seq_id: next(len(p) for p in prompts if slot.tokens[: len(p)] == p) for slot in engine.scheduler.slots
        }
        wide = 0
        for entries in batches:
            per_seq: dict[int, list[int]] = {}
            for seq, pos, _ in entries:
                per_seq.setdefault(seq, []).append(pos)
            decoding = [len(ps) for seq, ps in per_seq.items() if min(ps) >= prompt_len[seq]]
            assert len(set(decoding)) <= 1, f"decoding rows of different widths in one step: {per_seq}"
            wide += bool(decoding) and decoding[0] > 1
        assert wide > 0, "no step verified drafts"
    finally:
        await engine.close()
