"""How much n-gram speculation *could* gain on a model here: a bound, computed offline, for bench_speedups.

Speculation trades one step of ``w`` tokens for up to ``w`` emitted tokens, so what it can gain is set by
two facts of the machine and the text: what a ``w``-token step costs against a 1-token one (on two CPU
cores a 2-token step of SmolLM2 costs about 1.8×) and how long the runs of correct drafts are. This
module measures both without a server:

1. greedy answers to the editing prompts, decoded one token at a time with the engine's backend;
2. the step cost of every width 1 … 33 at the end of each answer's context (median of repeats);
3. a replay of each answer under a width policy: at every position the request's own
   :class:`~haven.engine.speculative.NgramDrafter` proposes its draft, the answer says how many of its
   tokens come true, the policy picks the width, and the step costs what was measured.

Two policies: the **oracle** knows how many drafts come true and takes the width that minimises the
step's time per emitted token (no rule that only sees the past can beat it by more than noise), and
**Haven's rule** (:func:`~haven.engine.speculative.choose_width` with the acceptance tracker, fed the same
measured costs). The result is the decoding-phase speedup over plain decoding: tokens after the first
over the time after it, the quantity ``bench_speedups``' decoding rows measure end to end.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WIDTHS = range(1, 34)
"""Step widths measured: one token plus up to 32 drafts (``DRAFT_MAX_LIMIT``)."""


@dataclass(frozen=True)
class Answer:
    prompt: list[int]
    output: list[int]


@dataclass(frozen=True)
class Measured:
    answers: list[Answer]
    cost: dict[int, float]
    """Seconds of a decoding step of ``w`` tokens of one sequence."""


def chat_tokens(model: Path, prompts: Sequence[str], threads: int) -> list[list[int]]:
    """The chat-templated prompt tokens, rendered by the engine exactly as a request's."""
    from haven.engine.engine import load_engine
    from haven.server.engine_config import engine_config
    from haven.settings import Settings

    settings = Settings(threads=threads, parallel=1, context_length=4096, batch_size=512, prefill_chunk=512)
    engine = load_engine(str(model), name="bound", sha256="", config=engine_config(settings))
    try:
        return [list(engine.prepare_chat([{"role": "user", "content": p}]).tokens) for p in prompts]
    finally:
        asyncio.run(engine.close())


def measure(model: Path, prompts: Sequence[str], max_tokens: int, threads: int, repeats: int = 3) -> Measured:
    """Greedy answers (until EOG or ``max_tokens``) and the cost of each width, on one backend."""
    from haven.engine.llama_backend import Batch, LlamaBackend

    token_prompts = chat_tokens(model, prompts, threads)
    backend = LlamaBackend(model, context_length=4096, parallel=1, batch_size=512, threads=threads)
    batch = Batch(512)
    samples: dict[int, list[float]] = {w: [] for w in WIDTHS}
    answers = []
    try:
        for prompt in token_prompts:
            backend.seq_rm(0, 0, -1)
            for start in range(0, len(prompt), 512):
                batch.clear()
                for i, token in enumerate(prompt[start : start + 512]):
                    batch.add(token, start + i, 0, start + i == len(prompt) - 1)
                if backend.decode(batch) != 0:
                    raise RuntimeError("prompt decode failed")
            output = [int(np.argmax(backend.logits_row(batch.n - 1)))]
            pos = len(prompt)
            while len(output) < max_tokens and not backend.is_eog(output[-1]):
                batch.clear()
                batch.add(output[-1], pos, 0, True)
                if backend.decode(batch) != 0:
                    raise RuntimeError("decode failed")
                pos += 1
                output.append(int(np.argmax(backend.logits_row(0))))
            answers.append(Answer(prompt, output))
            for _ in range(repeats):
                for width in WIDTHS:
                    batch.clear()
                    for i in range(width):
                        batch.add(output[i % len(output)], pos + i, 0, True)
                    t0 = time.perf_counter()
                    if backend.decode(batch) != 0:
                        raise RuntimeError("width decode failed")
                    samples[width].append(time.perf_counter() - t0)
                    backend.seq_rm(0, pos, -1)
    finally:
        batch.free()
        backend.close()
    return Measured(answers, {w: statistics.median(v) for w, v in samples.items()})


Policy = Callable[[list[int], int, Callable[[int], float]], int]
"""(draft, how many of its tokens come true, cost) → width; stateful policies are classes."""


def replay(measured: Measured, make_policy: Callable[[], Policy], draft_max: int) -> float:
    """Decoding-phase speedup of ``make_policy``'s widths over plain decoding, over every answer."""
    from haven.engine.speculative import NgramDrafter

    cost = measured.cost
    plain = spent = 0.0
    for answer in measured.answers:
        out = answer.output
        drafter = NgramDrafter([*answer.prompt, out[0]])
        policy = make_policy()
        t = 1
        while t < len(out):
            draft = drafter.draft(min(draft_max, len(out) - t))
            true = 0
            while true < len(draft) and draft[true] == out[t + true]:
                true += 1
            width = policy(draft, true, cost.__getitem__)
            step = min(true, width - 1) + 1
            spent += cost[width]
            plain += step * cost[1]
            drafter.extend(out[t : t + step])
            t += step
    return plain / spent if spent else 1.0


def oracle() -> Policy:
    def choose(draft: list[int], true: int, cost: Callable[[int], float]) -> int:
        return max(range(1, true + 2), key=lambda w: w / cost(w))

    return choose


class HavensRule:
    """The scheduler's decision for one decoding row, on the measured costs (no exploration needed)."""

    def __init__(self, cost: dict[int, float]) -> None:
        from haven.engine.speculative import AcceptanceTracker, StepCostModel

        self.tracker = AcceptanceTracker()
        self.model = StepCostModel()
        for width, seconds in cost.items():
            for _ in range(StepCostModel.MIN_SEEN):  # every width measured, as on a long-running server
                self.model.observe(width, seconds)

    def __call__(self, draft: list[int], true: int, cost: Callable[[int], float]) -> int:
        from haven.engine.speculative import DraftCandidate, choose_width

        if not draft:
            self.tracker.idle()
            return 1
        width = choose_width([DraftCandidate(len(draft), self.tracker.rate)], decoding=1, rows=1, other_tokens=0,
                             cost=self.model, max_width=len(draft) + 1)  # fmt: skip
        if width > 1:
            self.tracker.record(width - 1, min(true, width - 1))
        else:
            self.tracker.shadow(true >= 1)
        return width


def bound(model: Path, prompts: Sequence[str], max_tokens: int, threads: int, draft_max: int) -> dict[str, float]:
    measured = measure(model, prompts, max_tokens, threads)
    return {
        "oracle": replay(measured, oracle, draft_max),
        "haven": replay(measured, lambda: HavensRule(measured.cost), draft_max),
        "cost2": measured.cost[2] / measured.cost[1],
        "cost8": measured.cost[8] / measured.cost[1],
        "tokens": float(sum(len(a.output) for a in measured.answers)),
    }
