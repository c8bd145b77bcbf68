"""Speculative decoding without a draft model: prompt-lookup (n-gram) drafts and when to verify them.

A sequence that repeats its own text — correcting the spelling of a quoted paragraph, adding type
hints to a pasted function, translating names inside otherwise unchanged text — spends most of its
steps writing tokens that already occur in its prompt or its own output. :class:`NgramDrafter`
finds the most recent earlier occurrence of the sequence's last ``n`` tokens (longest ``n`` first)
and proposes the tokens that followed it. The scheduler puts the draft into the same
``llama_decode`` as every other sequence's token (continuous batching stays), samples each drafted
position with the request's own sampler chain, keeps the drafts up to the first one the target
model disagrees with, and trims the rest from the KV cache (``llama_memory_seq_rm``).

Why the output does not change:

* greedy: a draft token is kept only when it is the argmax of the target's logits at that
  position, so the tokens are the ones plain decoding produces from the same logits. A multi-token
  batch may compute them with other CPU kernels (bit-identical on the tiny test model; on real
  Q4_1 weights the last digits move, which flips a choice only at a near-tie, as plain batching
  does — measured in docs/engine.md);
* temperature > 0: the standard speculative-sampling rule (Leviathan et al. 2023; Chen et al.
  2023) accepts a drafted token ``d`` with probability ``min(1, p(d) / q(d))`` and on rejection
  samples from ``norm(max(0, p − q))``. An n-gram draft is deterministic (``q = δ_d``), so the rule
  reduces to: accept with probability ``p(d)``; on rejection sample from ``p`` without ``d``. Drawing
  one token ``t ~ p`` with the request's chain and keeping the draft iff ``t == d`` does exactly
  that in one draw (``P(t = d) = p(d)``, and ``t`` given ``t ≠ d`` is ``p`` restricted to the other
  tokens), and uses one random number per emitted token as plain decoding does — so a seeded
  request produces the same tokens with or without speculation. :func:`accept_or_resample` is the
  general rule for a draft *model* (``q`` a distribution), used when one is configured (see
  docs/engine.md).

When to draft is a cost decision. llama.cpp decodes a batch with per-sequence KV streams in one
pass only when every sequence contributes the same number of tokens (``split_equal``), so a step
that verifies drafts gives every decoding row the same width (shorter drafts are padded with
throwaway tokens). :func:`choose_width` picks the width that maximises expected tokens per second
from each sequence's measured acceptance rate (:class:`AcceptanceTracker`) and a table of step costs
measured online (:class:`StepCostModel`): free generation, whose drafts keep failing, stops
drafting and pays only for a dictionary lookup per step.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SPECULATIVE_MODES = ("off", "ngram")
DRAFT_MAX_LIMIT = 32
"""Largest draft a request or the server may configure (a wider step is rarely worth its cost)."""
DRAFT_MARGIN = 1.05
"""A drafting step is chosen only when its expected tokens per second beat plain decoding's by 5 %."""
NGRAM_MIN = 2
NGRAM_MAX = 4
"""N-gram sizes looked up, longest first: a 4-token match predicts better than a 2-token one; a
single token matches almost anywhere and predicts nothing."""


class NgramDrafter:
    """Prompt-lookup drafts over one sequence's tokens (prompt + output), updated incrementally.

    For every ``n`` in ``NGRAM_MIN..NGRAM_MAX`` a dictionary maps each n-gram that has a successor to
    the indices just after its latest ``CANDIDATES`` occurrences. A lookup takes the longest ``n`` that
    matches the sequence's suffix and, among that n-gram's occurrences, the one whose preceding tokens
    agree longest with the text before the suffix (the latest on a tie): text that alternates — a
    loop of two lines that differ in one word, a table whose rows share their first cells — then
    continues from the occurrence it is actually repeating, where the latest occurrence would propose
    the other line. Appending a token is O(``NGRAM_MAX``), a lookup at most ``CANDIDATES`` slice
    comparisons of up to ``CONTEXT_MAX`` tokens, so drafting costs nothing measurable even for a
    32k-token prompt.
    """

    CANDIDATES = 8
    """Occurrences of an n-gram compared by their context (the latest ones)."""
    CONTEXT_MAX = 64
    """Tokens of agreement beyond which two occurrences count as equally good."""
    CONTEXT_MARGIN = 4
    """Tokens of agreement by which an older occurrence must beat a later one to be chosen: one or two
    agreeing tokens are chance, and a sequence that starts a new loop repeats its latest text."""

    def __init__(self, tokens: Sequence[int] = (), *, n_min: int = NGRAM_MIN, n_max: int = NGRAM_MAX) -> None:
        self.n_min, self.n_max = n_min, n_max
        self.tokens: list[int] = []
        self._index: dict[int, dict[tuple[int, ...], list[int]]] = {n: {} for n in range(n_min, n_max + 1)}
        self.extend(tokens)

    def append(self, token: int) -> None:
        tokens = self.tokens
        end = len(tokens)  # index of the token being appended: the successor of the n-grams ending before it
        for n, index in self._index.items():
            if end >= n:
                starts = index.setdefault(tuple(tokens[end - n : end]), [])
                starts.append(end)
                if len(starts) > 2 * self.CANDIDATES:  # amortised trim: only the latest are ever compared
                    del starts[: -self.CANDIDATES]
        tokens.append(token)

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.append(token)

    def _agreement(self, start: int, n: int) -> int:
        """How many tokens before the occurrence ending at ``start`` equal those before the suffix."""
        tokens, end = self.tokens, len(self.tokens) - n
        a, b = start - n, end  # exclusive ends of the two stretches compared backwards
        limit = min(self.CONTEXT_MAX - n, a)
        agreed, block = 0, 8
        while agreed < limit:
            step = min(block, limit - agreed)
            if tokens[a - agreed - step : a - agreed] == tokens[b - agreed - step : b - agreed]:
                agreed += step
                continue
            for i in range(1, step + 1):  # the block differs somewhere: find where, from its near end
                if tokens[a - agreed - i] != tokens[b - agreed - i]:
                    return agreed + i - 1
        return agreed

    def draft(self, max_len: int) -> list[int]:
        """``max_len`` tokens that followed the best earlier occurrence of the longest matching suffix
        (or none when no suffix of ``NGRAM_MIN``..``NGRAM_MAX`` tokens occurred before)."""
        if max_len <= 0:
            return []
        tokens = self.tokens
        length = len(tokens)
        for n in range(self.n_max, self.n_min - 1, -1):
            if length < n:
                continue
            starts = self._index[n].get(tuple(tokens[length - n :]))
            if not starts:
                continue
            start = starts[-1]
            agreed = self._agreement(start, n)
            for candidate in reversed(starts[-self.CANDIDATES : -1]):
                if n + agreed >= self.CONTEXT_MAX:
                    break
                got = self._agreement(candidate, n)
                if got >= agreed + self.CONTEXT_MARGIN:
                    start, agreed = candidate, got
            # The match says the text repeats with period ``length - start``; past the end of the
            # history the draft keeps repeating it (a loop, a table row, a repeated line).
            period = length - start
            return [tokens[start + i % period] for i in range(max_len)]
        return []


@dataclass
class AcceptanceTracker:
    """Per-sequence estimate of the chance that the next drafted token is accepted.

    Counts decay (``decay`` per verification, ``shadow_decay`` per unverified draft checked against
    the sampled token, ``idle_decay`` per step with no draft at all) towards the prior, so a request
    whose drafts keep failing stops drafting, and one whose text turns repetitive again (a code block
    after prose, a loop) starts again as soon as its unverified drafts start coming true.
    """

    prior: float = 0.5
    prior_weight: float = 1.0
    decay: float = 0.8
    idle_decay: float = 0.97
    shadow_decay: float = 0.9
    hits: float = 0.0
    trials: float = 0.0
    drafted: int = 0
    accepted: int = 0

    @property
    def rate(self) -> float:
        return (self.hits + self.prior * self.prior_weight) / (self.trials + self.prior_weight)

    def record(self, drafted: int, accepted: int) -> None:
        """One verification: ``accepted`` of ``drafted`` tokens kept (a prefix, so at most one failure)."""
        self.drafted += drafted
        self.accepted += accepted
        self.hits = self.hits * self.decay + accepted
        self.trials = self.trials * self.decay + accepted + (1 if accepted < drafted else 0)

    def idle(self) -> None:
        self.hits *= self.idle_decay
        self.trials *= self.idle_decay

    def shadow(self, hit: bool) -> None:
        """A draft that was offered but not verified, checked for free against the token the step sampled
        (its first token is kept exactly when it equals that token). Without this a sequence that stopped
        drafting never learns that its text turned repetitive, and one whose first tries failed never
        drafts again; with it, drafting follows the text at no cost."""
        self.hits = self.hits * self.shadow_decay + (1.0 if hit else 0.0)
        self.trials = self.trials * self.shadow_decay + 1.0


def expected_extra(rate: float, k: int) -> float:
    """Expected accepted drafts out of ``k`` when each is kept with probability ``rate`` given the previous."""
    total, p = 0.0, 1.0
    for _ in range(k):
        p *= rate
        total += p
    return total


@dataclass
class StepCostModel:
    """What a decoding step of ``tokens`` rows costs, learned from the steps themselves.

    A table keeps an exponentially weighted mean per batch size seen, because llama.cpp's CPU kernels
    are not linear in the batch — on 2 cores a 2-token step of SmolLM2 costs 1.8–2× a 1-token one
    while a 4-token step costs 2.4–3×, and the 0.5B's 8-, 16- and 32-token steps cost 4.3×, 6.6× and
    12× (an 8-token step less than a 7-token one). :meth:`cost` answers from the table: a measured
    size its mean, a size between two measured ones the straight line between them, and a size past
    the widest measured one that one's cost — an optimistic guess on purpose, so that a width is
    measured (see :func:`widths_to_explore`) before it is written off. A line fitted through the first
    sizes extrapolated the 0.5B's 1- and 4-token steps to 28× for 32 tokens (12× measured), and the
    scheduler never drafted again. The line ``base + per_token × tokens`` (fitted over the table's
    sizes, each size one point) only answers before anything is measured.
    """

    base: float = 0.02
    per_token: float = 0.001
    weight: float = 0.1
    """Weight of a new observation in its size's mean (after the first few, which average evenly)."""
    _table: dict[int, tuple[float, int]] = field(default_factory=dict)
    _sizes: list[int] = field(default_factory=list)
    """The table's sizes in ascending order, kept with it (:meth:`cost` runs for every width of every step)."""
    _sums: list[float] = field(default_factory=lambda: [0.0] * 5)
    """Weighted sums over the table's points (w, w·x, w·y, w·x², w·x·y), kept up to date per observation."""

    MIN_SEEN = 3

    def observe(self, tokens: int, seconds: float) -> None:
        old = self._table.get(tokens)
        mean, seen = old if old is not None else (seconds, 0)
        if old is not None:
            self._add_point(tokens, mean, seen, -1.0)
            # A step the OS descheduled says nothing about the batch size: bound its pull on the mean.
            seconds = min(seconds, 2.0 * mean)
        seen += 1
        mean += max(self.weight, 1.0 / seen) * (seconds - mean)
        if old is None:
            bisect.insort(self._sizes, tokens)
        self._table[tokens] = (mean, seen)
        self._add_point(tokens, mean, seen, 1.0)
        self._fit()

    def _add_point(self, tokens: int, mean: float, seen: int, sign: float) -> None:
        w, x = sign * min(seen, 8), float(tokens)
        sums = self._sums
        sums[0] += w
        sums[1] += w * x
        sums[2] += w * mean
        sums[3] += w * x * x
        sums[4] += w * x * mean

    def _fit(self) -> None:
        sw, sx, sy, sxx, sxy = self._sums
        var = sw * sxx - sx * sx
        if len(self._table) < 2 or var <= 1e-9 * sxx * sw:
            # One size seen so far: keep the slope's prior, move the intercept to the observations.
            self.base = max(1e-6, sy / sw - self.per_token * sx / sw)
            return
        slope = (sw * sxy - sx * sy) / var
        intercept = (sy - slope * sx) / sw
        if slope > 0:
            self.per_token = slope
            self.base = max(1e-6, intercept)

    def untried(self, sizes: Sequence[int]) -> int | None:
        """The first of ``sizes`` seen fewer than ``MIN_SEEN`` times (None: all are known).

        The scheduler tries such a width when it drafts anyway, so the choice rests on measured steps
        (the curve is not smooth: on CPUs llama.cpp computes columns in blocks of 4, so 8 tokens may cost
        less than 7). It costs a few steps per size, once per loaded model."""
        for size in sizes:
            if self._table.get(size, (0.0, 0))[1] < self.MIN_SEEN:
                return size
        return None

    def cost(self, tokens: int) -> float:
        table = self._table
        known = table.get(tokens)
        if known is not None:
            return known[0]
        line = self.base + self.per_token * tokens
        if not table:
            return line
        sizes = self._sizes
        i = bisect.bisect_left(sizes, tokens)
        if i == len(sizes):
            return table[sizes[-1]][0]  # past the widest measured step: optimistic until measured
        if i == 0:
            return min(line, table[sizes[0]][0])
        lo, hi = sizes[i - 1], sizes[i]
        c_lo, c_hi = table[lo][0], table[hi][0]
        return c_lo + (c_hi - c_lo) * (tokens - lo) / (hi - lo)

    def step(self, rows: int, width: int) -> float:
        """A decoding step of ``rows`` rows ``width`` tokens wide. Past the widest measured size, priced as the
        measured ``rows``-token step times what ``width`` tokens cost one row (both from the table): a first
        step of four rows 33 wide must not look as cheap as one row 33 wide. On SmolLM2 that flat price had
        every new row count try 64- and 132-token steps (3 × 220 ms and more) that never paid."""
        tokens = rows * width
        if rows <= 1 or width <= 1 or not self._sizes or tokens <= self._sizes[-1]:
            return self.cost(tokens)
        return max(self.cost(tokens), self.cost(rows) * self.cost(width) / self.cost(1))

    def measured_max(self) -> int:
        """The widest step measured ``MIN_SEEN`` times (0: none)."""
        return max((size for size, (_, seen) in self._table.items() if seen >= self.MIN_SEEN), default=0)


@dataclass
class PromptTokenCost:
    """Seconds one more prompt token adds to a step, an exponentially weighted mean over steps with prompts.

    Each observation is what a step took beyond the predicted cost of its other rows, divided by its
    prompt tokens. The prior (1 ms) is a GPU's order of magnitude; a CPU corrects it within a few steps.
    """

    seconds: float = 0.001
    weight: float = 0.2
    _seen: int = 0

    def observe(self, prompt_tokens: int, extra_seconds: float) -> None:
        if prompt_tokens < 4 or extra_seconds <= 0:  # too few tokens to separate from the step's noise
            return
        sample = extra_seconds / prompt_tokens
        self._seen += 1
        # The first samples replace the prior instead of averaging with it.
        w = max(self.weight, 1.0 / self._seen)
        self.seconds += w * (sample - self.seconds)


@dataclass(frozen=True)
class DraftCandidate:
    """One decoding row's offer for this step: its draft and its acceptance rate."""

    draft_len: int
    rate: float


def choose_width(
    candidates: Sequence[DraftCandidate],
    *,
    decoding: int,
    rows: int,
    other_tokens: int,
    cost: StepCostModel,
    max_width: int,
    prompt_token_s: float = 0.0,
) -> int:
    """Tokens per row for this step (1 = no drafting) that maximise expected emitted tokens per second.

    ``decoding`` sequences emit at least one token each; ``rows`` counts every row that must be padded
    to the width (decoding sequences and bridged idle slots); ``other_tokens`` the step's prompt
    tokens, which cost the same whatever the width: ``prompt_token_s`` each (the scheduler's measured
    price; ``cost`` is fitted on decoding steps only, and a step of hundreds of tokens lies past every
    size it measured, where its price is one optimistic guess).
    """
    if not candidates or max_width <= 1:
        return 1

    def step_cost(width: int) -> float:
        return cost.step(rows, width) + prompt_token_s * other_tokens

    n_decoding = decoding
    # Drafting must beat plain decoding by DRAFT_MARGIN: the estimates carry error, and a wider step
    # delays the token of every row whose draft is not kept.
    best_width, best_rate = 1, DRAFT_MARGIN * n_decoding / step_cost(1)
    longest = max(c.draft_len for c in candidates)
    # Each candidate's expected_extra(rate, min(width - 1, draft_len)), grown one width at a time.
    survive = [1.0] * len(candidates)
    gain = 0.0
    for width in range(2, min(max_width, longest + 1) + 1):
        for i, c in enumerate(candidates):
            if width - 1 <= c.draft_len:
                survive[i] *= c.rate
                gain += survive[i]
        rate = (n_decoding + gain) / step_cost(width)
        if rate > best_rate * 1.0001:  # ties keep the narrower step
            best_width, best_rate = width, rate
    return best_width


def widths_to_explore(chosen: int, max_width: int) -> list[int]:
    """The widths a step may try instead of ``chosen`` while their costs are unmeasured, in the order to
    try them: 2, 4, 8, … below ``max_width``, and ``max_width`` itself, up to ``chosen``.

    A doubling grid because :meth:`StepCostModel.cost` interpolates between measured sizes: five or six
    sizes per row count (three steps each, once per loaded model) price every width up to 33, where
    measuring every width had a fresh server spend 48 steps, a sixth of the 0.5B's first editing
    requests, on widths far wider than any that paid. Up to ``chosen`` because a width beyond the widest
    measured one is priced optimistically: the step that would draft ``chosen`` wide measures the next
    grid size instead, and drafting widens only as far as measured costs keep paying."""
    grid: list[int] = []
    width = 2
    while width < max_width:
        grid.append(width)
        width *= 2
    grid.append(max_width)
    return [w for w in grid if w <= chosen]


@dataclass
class SpeculationStats:
    """Engine-wide counters (``EngineStats``; ``/metrics``)."""

    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    """Steps that verified at least one draft."""
    widths: dict[int, int] = field(default_factory=dict)


def accept_or_resample(
    target: npt.NDArray[np.float64], draft: npt.NDArray[np.float64], token: int, rng: np.random.Generator
) -> tuple[bool, int]:
    """The speculative-sampling rule for a draft *model*: keep ``token`` (drawn from ``draft``) with
    probability ``min(1, p/q)``, else draw from ``norm(max(0, p − q))``. Returns (kept, token).

    The emitted token is then distributed exactly as ``target``. With a point-mass ``draft`` (an
    n-gram proposal) this is "accept with probability p(token)", which the scheduler realises by
    sampling the target with the request's own chain (see the module docstring).
    """
    p, q = float(target[token]), float(draft[token])
    if q <= 0.0:
        raise ValueError("the drafted token has zero probability under the draft distribution")
    if rng.random() < min(1.0, p / q):
        return True, token
    residual = np.maximum(target - draft, 0.0)
    total = float(residual.sum())
    if total <= 0.0:  # p == q everywhere (then acceptance is certain); guard rounding
        residual, total = target, float(target.sum())
    return False, int(rng.choice(len(target), p=residual / total))
