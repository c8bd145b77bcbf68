"""Scheduling policy under load: who gets the next free slot, and how a step's prompt budget is shared.

Pure functions over small records, so the rules are unit-tested without a model; the scheduler
(:mod:`~haven.engine.scheduler`) applies them every step. Why each rule exists is in
docs/engine.md ("Scheduling under load"). In short:

* **bounded prefill** — while any stream is decoding, a step adds at most as many prompt tokens in
  total (not per request) as fit the step-time target on this machine, and never more than
  ``prefill_chunk``, so the inter-token latency of the streams already answering is bounded in
  seconds whatever arrives (see :func:`prefill_budget`); with nobody decoding, a prompt may fill
  the whole batch;
* **shortest prompt first, with ageing** — the budget goes first to the prefilling request with
  the fewest prompt tokens left (a 40-token question gets its first token in one step instead of
  waiting behind a 1,500-token document), but every step a request waits lowers its rank by
  ``AGEING_TOKENS``, so a long prompt is never starved by a stream of short ones;
* **fair share between clients** — a free slot goes to the queued request whose client (user or
  API key) holds the fewest slots; among equals, to the client admitted least recently (round
  robin), then the oldest request. One client's burst of requests cannot keep everyone else in
  the queue; anonymous requests share one key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

AGEING_TOKENS = 64
"""Prompt tokens a waiting request's rank improves per step it gets no prefill."""

MIN_PREFILL = 8
"""Prompt tokens a step adds while others decode even when their decoding alone overruns the target:
a prompt always progresses."""


def prefill_budget(
    *, chunk: int, target_s: float, decode_s: float, prompt_token_s: float, floor: int = MIN_PREFILL
) -> int:
    """Prompt tokens a step may add while streams decode.

    ``decode_s`` is the predicted cost of the step's decoding rows alone and ``prompt_token_s`` the
    measured cost of one more prompt token; the step should take at most ``target_s``. A token count
    alone (``chunk``) does not bound latency: 256 prompt tokens are 20 ms on a GPU and a second on a
    two-core laptop, so the count that fits is computed from this machine's own step times.
    ``target_s <= 0`` leaves the count bound alone.
    """
    if target_s <= 0 or prompt_token_s <= 0:
        return chunk
    fits = int((target_s - decode_s) / prompt_token_s)
    return max(min(floor, chunk), min(chunk, fits))


@dataclass(frozen=True)
class Queued:
    client_key: str
    order: int
    """Arrival order (smaller = earlier)."""


def pick_next(
    queued: Sequence[Queued], active_per_client: Counter[str], last_admitted: Mapping[str, int] | None = None
) -> int:
    """Index in ``queued`` of the request that gets the next free slot.

    Fewest slots held by its client first, then the client admitted least recently (``last_admitted``:
    client → admission counter; never admitted counts as oldest), then arrival order.
    """
    if not queued:
        raise ValueError("nothing is queued")
    last = last_admitted or {}

    def rank(i: int) -> tuple[int, int, int]:
        key = queued[i].client_key
        return active_per_client[key], last.get(key, -1), queued[i].order

    return min(range(len(queued)), key=rank)


@dataclass(frozen=True)
class Prefilling:
    remaining: int
    """Prompt tokens not yet in the KV cache."""
    waited: int
    """Consecutive steps this request got no prompt tokens while prefilling."""
    order: int


def plan_prefill(items: Sequence[Prefilling], budget: int) -> list[int]:
    """Prompt tokens each of ``items`` adds this step (same order as ``items``), at most ``budget`` in all."""
    plan = [0] * len(items)
    ranked = sorted(
        range(len(items)), key=lambda i: (items[i].remaining - AGEING_TOKENS * items[i].waited, items[i].order)
    )
    left = budget
    for i in ranked:
        if left <= 0:
            break
        n = min(items[i].remaining, left)
        plan[i] = n
        left -= n
    return plan
