"""Batch layout for llama.cpp's per-sequence KV streams: which sequence ids one step touches.

Haven's context keeps one KV stream per slot (``kv_unified = False``). llama.cpp then cuts a
batch into micro-batches whose sequences have *consecutive* ids, in batch order
(``llama_batch_allocr::split_equal`` with ``sequential = true``): the streams of one micro-batch
must form a contiguous range. Each extra micro-batch is another full pass over the weights, so
a step that decodes sequences ``[1, 2, 3, 0]`` in that order costs two passes (``[1, 2, 3]``,
then ``[0]``) — measured 143 ms against 86 ms for ``[0, 1, 2, 3]`` with the 0.5B model on two
cores. Three rules keep a step to one pass:

1. entries are written in ascending sequence id;
2. a new request takes, among slots with an equally long reusable prefix, the one that leaves
   the fewest holes in the range of busy slots (:func:`holes_after`);
3. a short hole between busy sequences (an idle slot) is bridged with one throwaway token that
   the scheduler removes from that slot's KV right after the decode (:func:`bridge_gaps`).
   One extra token costs one more column in each matrix product; an extra micro-batch costs a
   whole pass, so bridging pays for holes up to :data:`MAX_BRIDGED_GAP` ids even on a
   compute-bound CPU, and always on a memory-bound one.

Pure functions over sequence ids, so they are unit-tested without a model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

MAX_BRIDGED_GAP = 2
"""Longest run of idle sequence ids bridged with throwaway tokens; longer holes split the step."""


def count_runs(seq_ids: Iterable[int]) -> int:
    """Micro-batches llama.cpp makes of one token per sequence in ``seq_ids`` (written sorted)."""
    ordered = sorted(set(seq_ids))
    return sum(1 for i, s in enumerate(ordered) if i == 0 or s != ordered[i - 1] + 1)


def holes_after(busy: Collection[int], candidate: int) -> int:
    """Idle ids inside the range spanned by ``busy`` plus ``candidate``."""
    ids = set(busy) | {candidate}
    return max(ids) - min(ids) + 1 - len(ids)


def bridge_gaps(
    selected: Collection[int], can_bridge: Callable[[int], bool], max_gap: int = MAX_BRIDGED_GAP
) -> list[int]:
    """The idle sequence ids to give a throwaway token so ``selected`` decodes in fewer passes.

    A hole between two selected ids is bridged when it is at most ``max_gap`` long and every id
    in it ``can_bridge`` (an idle slot with room for one more KV cell).
    """
    ordered = sorted(set(selected))
    bridges: list[int] = []
    for low, high in zip(ordered, ordered[1:], strict=False):
        hole = range(low + 1, high)
        if 0 < len(hole) <= max_gap and all(can_bridge(s) for s in hole):
            bridges.extend(hole)
    return bridges
