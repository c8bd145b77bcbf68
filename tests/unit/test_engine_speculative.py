"""Speculative decoding (n-gram drafts): pure drafting/acceptance logic, and on the tiny model that the
output is exactly what plain decoding gives — greedy token for token, alone and batched, seeded sampling
draw for draw — with drafts trimmed from the KV cache wherever a request ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from haven.engine.engine import LlamaEngine
from haven.engine.protocol import GenerationRequest, SamplingParams
from haven.engine.speculative import (
    AcceptanceTracker,
    DraftCandidate,
    NgramDrafter,
    StepCostModel,
    accept_or_resample,
    choose_width,
    expected_extra,
    widths_to_explore,
)
from haven.errors import InvalidRequestError
from tests.support.engine_run import Result, fixed_cost, generate, tiny_engine, wide_drafts

# --- pure logic -------------------------------------------------------------------------------------


def test_ngram_drafter_proposes_what_followed_the_latest_match() -> None:
    drafter = NgramDrafter([1, 2, 3, 4, 5, 9, 2, 3, 7, 8])
    drafter.extend([1, 2, 3])  # suffix (1, 2, 3): the 3-gram matched at the start, not the later (2, 3)
    assert drafter.draft(4) == [4, 5, 9, 2]
    assert drafter.draft(2) == [4, 5]
    assert drafter.draft(12) == [4, 5, 9, 2, 3, 7, 8, 1, 2, 3, 4, 5]
    drafter.append(6)  # (2, 3, 6) and (3, 6) never occurred: nothing to propose
    assert drafter.draft(4) == []
    assert drafter.draft(0) == []


def test_ngram_drafter_never_matches_the_suffix_itself() -> None:
    drafter = NgramDrafter([5, 6])
    assert drafter.draft(3) == []
    drafter.extend([5, 6])
    assert drafter.draft(5) == [5, 6, 5, 6, 5]  # past the end of the history the period repeats
    drafter = NgramDrafter([7, 7, 7])
    assert drafter.draft(4) == [7, 7, 7, 7]


def test_ngram_drafter_follows_the_occurrence_with_the_longest_agreeing_context() -> None:
    # Two lines that differ in their last token, alternating: the latest occurrence of the line's start
    # is the other line, the one before it agrees with what came before and predicts the right ending.
    first, second = [10, 11, 12, 13, 1], [10, 11, 12, 13, 2]
    drafter = NgramDrafter([*first, *second, *first, *second, *first, 10, 11, 12, 13])
    assert drafter.draft(6) == [2, 10, 11, 12, 13, 1]
    chosen = [start for start in drafter._index[4][(10, 11, 12, 13)] if drafter.tokens[start] == 2][-1]
    assert 4 + drafter._agreement(chosen, 4) >= 8  # the 4-gram and at least the line before it
    # Nothing agrees beyond the n-gram itself: the latest occurrence wins the tie.
    drafter = NgramDrafter([7, 1, 2, 3, 4, 5, 8, 1, 2, 3, 4, 6, 9, 1, 2, 3, 4])
    assert drafter.draft(1) == [6]
    assert [drafter._agreement(start, 4) for start in drafter._index[4][(1, 2, 3, 4)]] == [0, 0]
    drafter.append(99)
    assert drafter.draft(3) == []


def test_ngram_drafter_compares_only_recent_occurrences_and_bounded_context() -> None:
    drafter = NgramDrafter([5] * 500)
    kept = [len(starts) for index in drafter._index.values() for starts in index.values()]
    assert max(kept) <= 2 * NgramDrafter.CANDIDATES
    assert drafter.draft(3) == [5, 5, 5]
    n = drafter.n_max
    latest = drafter._index[n][(5,) * n][-1]
    assert n + drafter._agreement(latest, n) == NgramDrafter.CONTEXT_MAX  # compared no further back


def test_expected_extra_tokens() -> None:
    assert expected_extra(1.0, 4) == 4
    assert expected_extra(0.0, 4) == 0
    assert expected_extra(0.5, 2) == pytest.approx(0.75)


def test_choose_width_drafts_when_acceptance_pays_and_stops_when_it_does_not() -> None:
    memory_bound = StepCostModel(base=0.05, per_token=0.001)  # a pass costs 50 tokens' worth
    good = [DraftCandidate(8, 0.9)]
    assert choose_width(good, decoding=1, rows=1, other_tokens=0, cost=memory_bound, max_width=9) == 9
    assert choose_width(good, decoding=1, rows=1, other_tokens=0, cost=memory_bound, max_width=4) == 4
    assert (
        choose_width([DraftCandidate(8, 0.01)], decoding=1, rows=1, other_tokens=0, cost=memory_bound, max_width=9) == 1
    )
    compute_bound = StepCostModel(base=0.001, per_token=0.01)
    assert (
        choose_width([DraftCandidate(8, 0.5)], decoding=8, rows=8, other_tokens=0, cost=compute_bound, max_width=9) == 1
    )
    assert choose_width([], decoding=4, rows=4, other_tokens=0, cost=memory_bound, max_width=9) == 1


def _drafts(tracker: AcceptanceTracker, cost: StepCostModel) -> bool:
    rows = [DraftCandidate(8, tracker.rate)] * 4
    return choose_width(rows, decoding=4, rows=4, other_tokens=0, cost=cost, max_width=9) > 1


def test_tracker_stops_drafting_after_failures_and_resumes_when_unverified_drafts_come_true() -> None:
    tracker = AcceptanceTracker()
    cost = StepCostModel(base=0.02, per_token=0.002)  # a token costs a tenth of a pass
    assert _drafts(tracker, cost)  # the prior: worth a try
    for _ in range(6):
        tracker.record(drafted=4, accepted=0)
    assert tracker.rate < 0.15
    assert not _drafts(tracker, cost)
    for _ in range(40):  # the text goes on as before: unverified drafts keep missing, drafting stays off
        tracker.shadow(False)
    assert not _drafts(tracker, cost)
    for _ in range(12):  # the text turns repetitive: each unverified draft equals the sampled token
        tracker.shadow(True)
    assert tracker.rate > 0.6
    assert _drafts(tracker, cost)
    assert (tracker.drafted, tracker.accepted) == (24, 0)  # the counters count verified drafts only
    for _ in range(200):
        tracker.idle()  # nothing to draft for a long spell: back towards the prior
    assert 0.4 < tracker.rate < 0.6


def test_choose_width_needs_a_margin_to_leave_plain_decoding() -> None:
    # Expected tokens per second 2 % above plain decoding's: not worth a wider step for every row.
    cost = StepCostModel(base=0.01, per_token=0.01)  # cost(1) = 0.02, cost(2) = 0.03
    assert choose_width([DraftCandidate(1, 0.53)], decoding=1, rows=1, other_tokens=0, cost=cost, max_width=2) == 1
    assert choose_width([DraftCandidate(1, 0.6)], decoding=1, rows=1, other_tokens=0, cost=cost, max_width=2) == 2


def test_cost_model_learns_base_and_per_token_cost() -> None:
    model = StepCostModel()
    for tokens in [1, 8, 64, 2, 128, 4] * 10:
        model.observe(tokens, 0.030 + 0.0005 * tokens)
    assert model.base == pytest.approx(0.030, rel=1e-3)
    assert model.per_token == pytest.approx(0.0005, rel=1e-3)


def test_cost_model_follows_a_curve_that_is_not_a_line() -> None:
    """llama.cpp's CPU kernels take columns in blocks of 4: 4 tokens cost little more than 3, and a
    2-token step nearly twice a 1-token one. The measured sizes are what the width is chosen from."""
    model = StepCostModel()
    assert model.untried([2, 4, 8]) == 2
    measured = {1: 0.013, 2: 0.023, 3: 0.030, 4: 0.033, 8: 0.058}
    for _ in range(40):
        for tokens, seconds in measured.items():
            model.observe(tokens, seconds)
    for tokens, seconds in measured.items():
        assert model.cost(tokens) == pytest.approx(seconds, rel=0.05)
    assert model.untried([2, 4, 8]) is None
    assert model.untried([2, 5]) == 5
    # With 90 % acceptance, 4 tokens per step beat 2 and 3 (a line through the points would pick 3).
    good = [DraftCandidate(8, 0.9)]
    assert choose_width(good, decoding=1, rows=1, other_tokens=0, cost=model, max_width=4) == 4


def test_a_fresh_server_explores_a_doubling_grid_of_widths_up_to_the_chosen_one() -> None:
    """Measuring every width up to 1 + draft_max cost a fresh server 48 steps; the costs between the grid's
    sizes are interpolated."""
    assert widths_to_explore(17, 17) == [2, 4, 8, 16, 17]
    assert widths_to_explore(33, 33) == [2, 4, 8, 16, 32, 33]
    assert widths_to_explore(5, 33) == [2, 4]
    assert widths_to_explore(3, 3) == [2, 3]
    assert widths_to_explore(2, 2) == [2]


def test_cost_model_interpolates_between_measured_sizes_and_is_optimistic_past_them() -> None:
    model = StepCostModel()
    assert model.cost(8) == pytest.approx(model.base + 8 * model.per_token)  # nothing measured: the prior line
    for _ in range(3):
        model.observe(1, 0.010)
        model.observe(4, 0.040)
    assert model.cost(2) == pytest.approx(0.020)
    assert model.cost(16) == pytest.approx(0.040)  # the widest measured price, until 16 is measured
    assert model.measured_max() == 4
    model.observe(16, 0.070)
    assert model.measured_max() == 4  # measured once: not yet trusted for steps that cannot measure
    assert model.cost(10) == pytest.approx(0.055)


def _explore(true_cost: Callable[[int], float], rate: float, draft_len: int, steps: int) -> StepCostModel:
    """A fresh server's single stream: the rule's width or, while it drafts, the next unmeasured grid width."""
    good = [DraftCandidate(draft_len, rate)]
    model = StepCostModel()
    model.observe(1, true_cost(1))
    for _ in range(steps):
        width = choose_width(good, decoding=1, rows=1, other_tokens=0, cost=model, max_width=draft_len + 1)
        if width > 1:
            width = model.untried(widths_to_explore(width, draft_len + 1)) or width
        model.observe(width, true_cost(width))
    return model


def test_with_a_dear_2_token_step_measured_first_drafting_survives() -> None:
    """SmolLM2 on 2 cores: 2 tokens cost 1.9× one, 4 tokens 3.2×; a request at 90 % acceptance keeps drafting."""
    known = {1: 0.0113, 2: 0.0219, 3: 0.0277, 4: 0.036, 5: 0.0457}
    model = _explore(lambda w: known.get(w, 0.0113 + 0.0062 * w), 0.9, 16, 12)
    assert choose_width([DraftCandidate(16, 0.9)], decoding=1, rows=1, other_tokens=0, cost=model, max_width=17) > 1


def test_kernels_that_amortise_wide_steps_are_found_after_a_dear_narrow_one() -> None:
    """The 0.5B q8_0 on 2 cores (step costs in 1-token steps): 2 tokens 2.4×, 4 tokens 3.7×, but 16 tokens 6.6×.
    A line through the first measured sizes priced 32 tokens at 28× (12× measured) and the request stopped
    drafting for good; the grid measures the wide steps and the request drafts 16 wide."""
    ratio = {1: 1.0, 2: 2.43, 4: 3.65, 8: 4.27, 16: 6.63, 32: 12.1, 33: 13.0}
    model = _explore(lambda w: 0.03 * ratio.get(w, 1.0 + 0.4 * w), 0.95, 32, 30)
    width = choose_width([DraftCandidate(32, 0.95)], decoding=1, rows=1, other_tokens=0, cost=model, max_width=33)
    assert width >= 16


def test_several_rows_past_the_measured_sizes_are_priced_from_one_rows_costs() -> None:
    """SmolLM2: one row's 33-token step measured at 147 ms; four rows 33 wide (132 tokens) are not that cheap."""
    model = StepCostModel()
    for _ in range(3):
        for tokens, seconds in {1: 0.008, 4: 0.020, 16: 0.068, 33: 0.147}.items():
            model.observe(tokens, seconds)
    assert model.step(1, 33) == pytest.approx(0.147)
    assert model.step(4, 4) == pytest.approx(0.068)  # measured: the table answers
    assert model.step(4, 33) == pytest.approx(0.020 * 0.147 / 0.008)
    assert model.step(1, 64) == pytest.approx(0.147)  # one row past the widest: optimistic, so it gets measured
    # Four rows at 90 % acceptance: at one row's flat price for 132 tokens, 33 wide looked best.
    rows = [DraftCandidate(32, 0.9)] * 4
    assert choose_width(rows, decoding=4, rows=4, other_tokens=0, cost=model, max_width=33) <= 2


def test_prompt_tokens_are_priced_apart_from_the_decoding_rows() -> None:
    model = StepCostModel()
    for _ in range(3):
        for width, seconds in {1: 0.010, 2: 0.020, 4: 0.025, 8: 0.030}.items():
            model.observe(width, seconds)
    def width(rate: float, **prompt: Any) -> int:
        return choose_width([DraftCandidate(8, rate)], decoding=1, rows=1, cost=model, max_width=8, **prompt)

    assert width(0.9, other_tokens=0) == 8
    assert width(0.9, other_tokens=512, prompt_token_s=0.001) == 8
    # 512 prompt tokens at 1 ms each cost the same whatever the width; a 5 % draft does not pay for its rows.
    # (Priced as one step of 513+ tokens, past every measured size and so at one optimistic price, it looked free.)
    assert width(0.05, other_tokens=512, prompt_token_s=0.001) == 1
    assert width(0.05, other_tokens=0) == 1


def test_cost_model_bounds_a_descheduled_step() -> None:
    model = StepCostModel()
    for _ in range(20):
        model.observe(1, 0.010)
    model.observe(1, 1.0)  # the OS took the CPU away for a second
    assert model.cost(1) < 0.0125


def test_accept_or_resample_yields_the_target_distribution() -> None:
    """The draft-model rule: emitted tokens follow ``target`` whatever ``draft`` is.

    Bound: with N = 40,000 draws over 5 outcomes the total-variation distance of the empirical
    distribution from the truth has standard deviation below 0.004; 0.02 is > 5 sigma.
    """
    rng = np.random.default_rng(1234)
    target = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    draft = np.array([0.05, 0.05, 0.1, 0.3, 0.5])
    counts = np.zeros(5)
    kept = 0
    n = 40_000
    for _ in range(n):
        proposed = int(rng.choice(5, p=draft))
        ok, token = accept_or_resample(target, draft, proposed, rng)
        kept += ok
        counts[token] += 1
    assert 0.5 * np.abs(counts / n - target).sum() < 0.02
    # Acceptance rate of the rule is sum(min(p, q)) = 0.05+0.05+0.1+0.1+0.05 = 0.35.
    assert abs(kept / n - 0.35) < 0.02


# --- on the tiny model ------------------------------------------------------------------------------


def _wide(engine: LlamaEngine) -> LlamaEngine:
    return wide_drafts(engine)


PROMPTS = [
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps",
    "def add(a, b):\n    return a + b\n\ndef add(a, b):",
    "你好，世界。你好，世界。你好",
    "one two three four five one two three four five one two",
]


@pytest.fixture(params=["f32", "q8_0"])
def engine(request: pytest.FixtureRequest, make_test_model: Callable[..., Path]) -> Iterator[LlamaEngine]:
    eng = _wide(tiny_engine(make_test_model(quant=request.param), parallel=4, batch_size=64, context_length=512))
    yield eng
    asyncio.run(eng.close())


async def _run_all(engine: LlamaEngine, mode: str, *, together: bool, **sampling: Any) -> list[Result]:
    prompts = [engine.tokenize(p) for p in PROMPTS]
    if together:
        return list(await asyncio.gather(*(generate(engine, p, speculative=mode, **sampling) for p in prompts)))
    return [await generate(engine, p, speculative=mode, **sampling) for p in prompts]


def _kv_consistent(engine: LlamaEngine) -> bool:
    """Every slot's KV stream holds exactly its cached tokens: no drafted entry left behind."""
    return all(engine.backend.seq_pos_max(s.seq_id) == len(s.tokens) - 1 for s in engine.scheduler.slots)


# The tiny random model's plain greedy output repeats one token (every draft accepted, numpy argmax
# path); a presence penalty makes it wander (drafts rejected part-way, llama.cpp sampler path).
GREEDY = [{"temperature": 0}, {"temperature": 0, "presence_penalty": 1.0}]


@pytest.mark.parametrize("greedy", GREEDY, ids=["argmax", "penalised"])
async def test_greedy_output_is_identical_alone_and_batched(engine: LlamaEngine, greedy: dict[str, Any]) -> None:
    plain = await _run_all(engine, "off", together=False, max_tokens=48, **greedy)
    alone = await _run_all(engine, "ngram", together=False, max_tokens=48, **greedy)
    batched = await _run_all(engine, "ngram", together=True, max_tokens=48, **greedy)
    for p, a, b in zip(plain, alone, batched, strict=True):
        assert a.token_ids == p.token_ids and b.token_ids == p.token_ids
        assert a.text == p.text and b.text == p.text
        assert a.finished.reason == p.finished.reason == b.finished.reason
        assert a.finished.usage.completion_tokens == p.finished.usage.completion_tokens
        assert p.finished.usage.drafted_tokens == 0
    # Speculation really ran, with accepted runs and wide steps (and rejections when penalised).
    drafted = sum(r.finished.usage.drafted_tokens for r in alone)
    accepted = sum(r.finished.usage.accepted_tokens for r in alone)
    assert accepted > (40 if "presence_penalty" not in greedy else 3)
    if "presence_penalty" in greedy:
        assert accepted < drafted
    assert max(engine.scheduler.speculation.widths) > 3
    stats = engine.stats()
    assert stats.drafted_tokens_total >= stats.accepted_tokens_total > 0
    assert 0 < stats.acceptance_rate <= 1
    assert _kv_consistent(engine)


async def test_a_request_starts_drafting_once_its_unverified_drafts_come_true(
    make_test_model: Callable[..., Path],
) -> None:
    """A step of 2 tokens costs 1.7× one of 1 here, so the prior acceptance (50 %) does not pay for
    drafting; the tiny model's greedy output repeats one token, so every draft the scheduler offers
    and does not verify is checked against the sampled token and comes true, and drafting starts."""
    engine = fixed_cost(tiny_engine(make_test_model(quant="q8_0"), parallel=1), base=0.5, per_token=1.0)
    try:
        prompt = engine.tokenize(PROMPTS[3])
        plain = await generate(engine, prompt, speculative="off", temperature=0, max_tokens=48)
        spec = await generate(engine, prompt, speculative="ngram", temperature=0, max_tokens=48)
        assert spec.token_ids == plain.token_ids
        assert spec.finished.usage.accepted_tokens > 20
        assert _kv_consistent(engine)
    finally:
        await engine.close()


async def test_seeded_sampling_is_draw_for_draw_identical(engine: LlamaEngine) -> None:
    """Temperature > 0: sampling the target at each drafted position and keeping the draft only when the
    sample equals it is the speculative-sampling rule for a point-mass draft, and consumes one random
    number per emitted token — so with the same seed the tokens are the same as without speculation."""
    prompt = engine.tokenize(PROMPTS[3])
    sampling = {"temperature": 0.15, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "max_tokens": 24}
    same = accepted = rejected = 0
    for seed in range(12):
        plain = await generate(engine, prompt, speculative="off", seed=seed, **sampling)
        spec = await generate(engine, prompt, speculative="ngram", seed=seed, **sampling)
        same += plain.token_ids == spec.token_ids
        accepted += spec.finished.usage.accepted_tokens
        rejected += spec.finished.usage.drafted_tokens - spec.finished.usage.accepted_tokens
    assert same == 12
    assert accepted > 0 and rejected > 0
    assert _kv_consistent(engine)


async def test_sampled_token_distribution_is_unchanged(make_test_model: Callable[..., Path]) -> None:
    """Independent seeds with and without speculation: the statistic a wrong acceptance rule distorts
    first — how often a token repeats the previous one (n-gram drafts propose repeats) — agrees.

    Bound: 160 generations × 15 adjacent pairs per arm; the difference of the two repeat rates must be
    within 4 standard errors of a difference of proportions (false alarm < 1e-4). Keeping every draft
    instead of sampling the target roughly doubles the rate here.
    """
    engine = _wide(tiny_engine(make_test_model(quant="q8_0"), parallel=4, batch_size=64, context_length=256))
    try:
        prompt = engine.tokenize(PROMPTS[3])
        sampling = {"temperature": 0.15, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "max_tokens": 16}

        async def arm(mode: str, seeds: range) -> tuple[int, int, int]:
            repeats = pairs = accepted = 0
            for start in range(seeds.start, seeds.stop, 4):
                results = await asyncio.gather(
                    *(generate(engine, prompt, speculative=mode, seed=s, **sampling) for s in range(start, start + 4))
                )
                for r in results:
                    ids = r.token_ids
                    repeats += sum(a == b for a, b in zip(ids, ids[1:], strict=False))
                    pairs += max(0, len(ids) - 1)
                    accepted += r.finished.usage.accepted_tokens
            return repeats, pairs, accepted

        r_plain, n_plain, _ = await arm("off", range(0, 160))
        r_spec, n_spec, accepted = await arm("ngram", range(10_000, 10_160))
        assert accepted > 20
        p1, p2 = r_plain / n_plain, r_spec / n_spec
        pooled = (r_plain + r_spec) / (n_plain + n_spec)
        se = (pooled * (1 - pooled) * (1 / n_plain + 1 / n_spec)) ** 0.5
        assert abs(p1 - p2) < 4 * se, (p1, p2, se)
    finally:
        await engine.close()


@pytest.mark.parametrize("greedy", GREEDY, ids=["argmax", "penalised"])
async def test_stop_string_inside_a_drafted_run_stops_at_the_same_place(
    engine: LlamaEngine, greedy: dict[str, Any]
) -> None:
    prompt = engine.tokenize(PROMPTS[3])
    plain = await generate(engine, prompt, speculative="off", max_tokens=40, **greedy)
    text = plain.text
    assert len(text) > 30
    # Repetitive output: the stop is the first 21 characters, completed in the middle of a run of accepted
    # drafts (steps of 9); varied output: a few characters from its middle.
    stop = text[:21] if "presence_penalty" not in greedy else text[20:24]
    a = await generate(engine, prompt, speculative="off", max_tokens=40, stop=[stop], **greedy)
    b = await generate(engine, prompt, speculative="ngram", max_tokens=40, stop=[stop], **greedy)
    if "presence_penalty" not in greedy:
        assert b.finished.usage.accepted_tokens > 0
    assert a.text == b.text and a.token_ids == b.token_ids
    assert a.finished.stop_string == b.finished.stop_string == stop
    assert a.finished.usage.completion_tokens == b.finished.usage.completion_tokens
    assert _kv_consistent(engine)


async def test_max_tokens_inside_a_drafted_run(engine: LlamaEngine) -> None:
    prompt = engine.tokenize(PROMPTS[2])
    for max_tokens in (1, 2, 7):
        a = await generate(engine, prompt, speculative="off", temperature=0, max_tokens=max_tokens)
        b = await generate(engine, prompt, speculative="ngram", temperature=0, max_tokens=max_tokens)
        assert a.token_ids == b.token_ids
        assert b.finished.usage.completion_tokens == max_tokens
    assert _kv_consistent(engine)


async def test_cancel_trims_drafted_tokens(make_test_model: Callable[..., Path]) -> None:
    engine = _wide(tiny_engine(make_test_model(quant="q8_0"), parallel=1, context_length=2048, speculative="ngram"))
    try:
        prompt = engine.tokenize(PROMPTS[3])
        handle = await engine.submit(
            GenerationRequest(prompt, SamplingParams(temperature=0, max_tokens=1500, ignore_eos=True))
        )
        events = handle.events()
        await events.__anext__()
        while engine.stats().accepted_tokens_total == 0:
            await events.__anext__()
        await handle.cancel()
        rest = [event async for event in events]
        assert rest[-1].reason == "cancelled"  # type: ignore[union-attr]
        assert engine.backend.seq_pos_max(0) == len(prompt) - 1
        assert engine.scheduler.slots[0].tokens == prompt
    finally:
        await engine.close()


async def test_grammar_constrained_requests_do_not_draft(engine: LlamaEngine) -> None:
    prompt = engine.tokenize(PROMPTS[3])
    grammar = 'root ::= ("one " | "two ")+ "."'
    result = await generate(engine, prompt, speculative="ngram", temperature=0, max_tokens=30, grammar=grammar)
    assert result.finished.usage.completion_tokens > 0
    assert result.finished.usage.drafted_tokens == 0
    schema = await generate(
        engine, prompt, speculative="ngram", temperature=0, max_tokens=30, json_schema={"type": "object"}
    )
    assert schema.finished.usage.drafted_tokens == 0


async def test_server_setting_off_and_per_request_override(make_test_model: Callable[..., Path]) -> None:
    engine = _wide(tiny_engine(make_test_model(quant="q8_0"), speculative="off"))
    try:
        prompt = engine.tokenize(PROMPTS[3])
        default = await generate(engine, prompt, temperature=0, max_tokens=30)
        forced = await generate(engine, prompt, temperature=0, max_tokens=30, speculative="ngram")
        short = await generate(
            engine, prompt, temperature=0, max_tokens=30, speculative="ngram", speculative_draft_max=1
        )
        assert default.finished.usage.drafted_tokens == 0
        assert forced.finished.usage.accepted_tokens > 0
        assert default.token_ids == forced.token_ids == short.token_ids
        # One token per step at most: drafted ≤ steps with a draft.
        assert short.finished.usage.drafted_tokens <= short.finished.usage.completion_tokens
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("speculative", "medusa"),
        ("speculative_draft_max", 0),
        ("speculative_draft_max", 33),
        ("speculative_draft_max", True),
    ],
)
async def test_out_of_range_speculation_settings_name_the_field(
    make_test_model: Callable[..., Path], field: str, value: object
) -> None:
    engine = tiny_engine(make_test_model())
    try:
        with pytest.raises(InvalidRequestError) as info:
            await engine.submit(GenerationRequest([1, 2, 3], SamplingParams(**{field: value})))  # type: ignore[arg-type]
        assert info.value.param == field
        assert field in str(info.value)
        assert engine.stats().slots_in_use == 0
    finally:
        await engine.close()
