"""Continuous batching on one dedicated thread.

Each step (compare llama.cpp's ``server_context::update_slots``):

1. apply cancellations (the slot is freed and its generated KV trimmed with ``llama_memory_seq_rm``);
2. admit queued requests into free slots — the client holding the fewest slots first, round
   robin among equals (:mod:`.policy`) — choosing the slot whose cached tokens share the
   longest prefix with the prompt (prefix reuse) and trimming the rest of its KV;
3. pack one ``llama_batch`` in ascending sequence id: the next token of every decoding sequence
   with its speculative draft (every row of a step one width, see :mod:`.speculative`), and prompt
   tokens — at most ``prefill_chunk`` in total while anyone decodes, shortest prompt first with
   ageing (:mod:`.policy`) — bridging short holes of idle slots so llama.cpp needs one pass
   (see :mod:`.packing`);
4. one ``llama_decode``;
5. sample each sequence that produced logits (a drafted row: position by position while the
   sample equals the draft, then trim the rest from the KV cache), run its text pipeline, and
   hand the events to the request's :class:`~haven.engine.slots.Handle` (one event-loop wakeup per batch of events).

Requests join and leave between steps. An error in one request finishes that request with
reason ``error``; the loop keeps serving the others. The async side never touches llama.cpp.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from haven.engine.json_grammar.utf8 import unsafe_utf8_tokens
from haven.engine.llama_backend import LlamaBackend
from haven.engine.packing import bridge_gaps, holes_after
from haven.engine.policy import Prefilling, Queued, pick_next, plan_prefill, prefill_budget
from haven.engine.protocol import (
    EngineEvent,
    EngineStats,
    Finished,
    FinishReason,
    GenerationRequest,
    TokenLogprob,
    Usage,
)
from haven.engine.sampling import build_chain, grammar_text, logprobs_for, validate_sampling
from haven.engine.slots import Handle, Slot, TextPipeline, Work, common_prefix, deliver
from haven.engine.speculative import (
    AcceptanceTracker,
    DraftCandidate,
    NgramDrafter,
    PromptTokenCost,
    SpeculationStats,
    StepCostModel,
    choose_width,
    widths_to_explore,
)
from haven.errors import ContextLengthExceededError, EngineError, HavenError, InvalidRequestError, QueueFullError


@dataclass(frozen=True)
class SchedulerConfig:
    parallel: int
    prefill_chunk: int
    max_queue: int
    itl_target_s: float = 0.0
    """While streams decode, a step adds only the prompt tokens that fit this step time (0: ``prefill_chunk`` alone)."""
    prefix_cache: bool = True
    max_tokens_limit: int = 32768
    state_dir: Path | None = None
    """Where slots' KV caches are saved on close and restored on load (None: not kept)."""
    min_saved_tokens: int = 32
    """Slots holding fewer cached tokens are not worth a file."""
    speculative: str = "off"
    """``"ngram"``: prompt-lookup speculative decoding (see :mod:`.speculative`); ``"off"``."""
    speculative_draft_max: int = 32
    kv_cache_type: str = "f16"
    kv_bytes_per_slot: int = 0


@dataclass
class StepTimings:
    """Cumulative counters of the scheduler loop (seconds), for benchmarks and ``/metrics``.

    ``python_seconds`` = ``step_seconds`` − ``decode_seconds`` − ``sample_seconds``: the engine's
    own per-step overhead (batch packing, text pipeline, event hand-off).
    """

    steps: int = 0
    step_seconds: float = 0.0
    decode_seconds: float = 0.0
    sample_seconds: float = 0.0
    batch_tokens: int = 0
    sampled_tokens: int = 0

    @property
    def python_seconds(self) -> float:
        return self.step_seconds - self.decode_seconds - self.sample_seconds


class Scheduler:
    """Owns the generation context; everything below runs on its thread except :meth:`submit`."""

    def __init__(self, backend: LlamaBackend, config: SchedulerConfig) -> None:
        self.backend = backend
        self.config = config
        self.n_ctx_seq = backend.n_ctx_seq
        self.slots = [Slot(seq_id=i) for i in range(config.parallel)]
        self._cond = threading.Condition()
        self._pending: deque[Work] = deque()
        self._cancels: set[str] = set()
        self._active: list[Work] = []
        self._by_id: dict[str, Work] = {}
        self._stopping = False
        self._next_id = 0
        # A throwaway token cannot be taken back from a recurrent state (no partial seq_rm).
        self._bridging_off = backend.is_recurrent
        self.timings = StepTimings()
        self._utf8_banned: dict[int, float] | None = None
        self._eog: npt.NDArray[np.int64] | None = None
        self._timings_lock = threading.Lock()
        self._outbox: list[tuple[Handle, list[EngineEvent]]] = []
        self.prompt_tokens_total = 0
        self.cached_tokens_total = 0
        self.completion_tokens_total = 0
        self.speculation = SpeculationStats()
        self._cost = StepCostModel()
        self._prompt_cost = PromptTokenCost()
        self._arrivals = 0
        self._admissions = 0
        self._last_admitted: dict[str, int] = {}
        if config.state_dir is not None and config.prefix_cache:
            self._restore_state(config.state_dir)
        self._thread = threading.Thread(target=self._run, name="haven-scheduler", daemon=True)
        self._thread.start()

    # --- caller side (any thread) ------------------------------------------------------------
    def submit(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> Handle:
        """Validate and queue ``request``; raises before anything is allocated on bad input."""
        prompt = list(request.prompt_tokens)
        if not prompt:
            raise InvalidRequestError("The prompt is empty; give at least one token.", param="prompt")
        n_vocab = self.backend.n_vocab
        for tok in prompt:
            if isinstance(tok, bool) or not isinstance(tok, int) or not 0 <= tok < n_vocab:
                raise InvalidRequestError(
                    f"Prompt token {tok!r} is not in this model's vocabulary (0..{n_vocab - 1}).", param="prompt"
                )
        if len(prompt) >= self.n_ctx_seq:
            raise ContextLengthExceededError(
                f"The prompt has {len(prompt)} tokens but a request may use at most {self.n_ctx_seq} "
                f"(context_length), including at least one generated token; shorten the prompt or raise "
                "context_length.",
                param="messages",
            )
        params = request.sampling
        validate_sampling(params, n_vocab=n_vocab, max_tokens_limit=self.config.max_tokens_limit)
        mode = params.speculative or self.config.speculative
        if params.ignore_eos:
            banned = dict.fromkeys(self.backend.eog_tokens, float("-inf"))
            params = dataclasses.replace(params, logit_bias={**params.logit_bias, **banned})
        with self._cond:
            request_id = request.request_id or f"req-{self._next_id + 1}"
            refusal = self._refusal(request_id)
            if refusal is None:
                self._next_id += 1
        if refusal is not None:
            raise refusal
        pipeline = TextPipeline(
            self.backend.token_to_piece,
            tuple(params.stop),
            split_reasoning=request.split_reasoning,
            reasoning_opened=request.reasoning_opened,
            min_tokens=params.min_tokens,
        )
        grammar = grammar_text(params)
        if grammar is not None:  # issue 9: invalid UTF-8 would escape the grammar (json_grammar/utf8.py)
            params = dataclasses.replace(params, logit_bias={**params.logit_bias, **self._utf8_bans()})
        chain = build_chain(
            params, vocab=self.backend.vocab, n_vocab=n_vocab, grammar=grammar, context_length=self.n_ctx_seq
        )
        handle = Handle(request_id, loop, self.cancel)
        room = self.n_ctx_seq - len(prompt)
        max_tokens = min(params.max_tokens or room, room)
        work = Work(request, handle, chain, pipeline, prompt, max_tokens, time.perf_counter())
        # No drafts under a grammar (a drafted token may be one the grammar forbids, and the grammar
        # sampler cannot be rewound) nor for recurrent models (their state cannot be trimmed back).
        if mode == "ngram" and grammar is None and not self._bridging_off:
            work.drafter = NgramDrafter(prompt)
            work.tracker = AcceptanceTracker()
            work.draft_max = params.speculative_draft_max or self.config.speculative_draft_max
        with self._cond:
            # Checked again: close() (or a request with the same id) may have come in while the chain
            # was built outside the lock, and a request queued after the thread has stopped never finishes.
            refusal = self._refusal(request_id)
            if refusal is None:
                self._arrivals += 1
                work.order = self._arrivals
                self._pending.append(work)
                self._by_id[request_id] = work
                self._cond.notify()
        if refusal is not None:
            chain.free()
            raise refusal
        return handle

    def _eog_ids(self) -> npt.NDArray[np.int64]:
        """The end-of-generation tokens min_tokens holds back (scanned once)."""
        if self._eog is None:
            self._eog = np.array(self.backend.eog_tokens, dtype=np.int64)
        return self._eog

    def _utf8_bans(self) -> dict[int, float]:
        if self._utf8_banned is None:
            banned = unsafe_utf8_tokens(self.backend.vocab, self.backend.n_vocab)
            self._utf8_banned = dict.fromkeys(banned, float("-inf"))
        return self._utf8_banned

    def _refusal(self, request_id: str) -> HavenError | None:
        """Why a request cannot be queued now (shut down, queue full, id in use); call under ``_cond``."""
        if self._stopping:
            return EngineError("The engine is shut down.")
        waiting = len(self._pending) + len(self._active) - self.config.parallel
        if waiting >= self.config.max_queue:
            return QueueFullError(
                f"All {self.config.parallel} slots are busy and {max(0, waiting)} requests are waiting "
                f"(max_queue {self.config.max_queue}); retry shortly.",
                retry_after=1.0,
            )
        if request_id in self._by_id:
            return InvalidRequestError(f"A request with id {request_id!r} is already running.")
        return None

    def cancel(self, request_id: str) -> None:
        with self._cond:
            if request_id in self._by_id:
                self._cancels.add(request_id)
                self._cond.notify()

    def stats(self) -> EngineStats:
        with self._cond:
            return EngineStats(
                slots_total=len(self.slots),
                slots_in_use=len(self._active),
                queue_depth=len(self._pending),
                cached_tokens_total=self.cached_tokens_total,
                prompt_tokens_total=self.prompt_tokens_total,
                completion_tokens_total=self.completion_tokens_total,
                drafted_tokens_total=self.speculation.drafted,
                accepted_tokens_total=self.speculation.accepted,
                kv_cache_type=self.config.kv_cache_type,
                kv_bytes_per_slot=self.config.kv_bytes_per_slot,
            )

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # --- scheduler thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._pending or self._active or self._cancels):
                    self._cond.wait()
                if self._stopping:
                    break
                cancels, self._cancels = self._cancels, set()
            try:
                for request_id in cancels:
                    self._cancel_now(request_id)
                self._admit()
                if self._active:
                    self._step()
            except Exception as exc:  # a bug must not kill the loop: fail what is in flight
                for work in list(self._active):
                    self._finish(work, "error", error=f"internal engine error: {exc}")
            self._flush_outbox()
        for work in list(self._active) + list(self._pending):
            self._finish(work, "cancelled")
        self._flush_outbox()
        if self.config.state_dir is not None and self.config.prefix_cache:
            self._save_state(self.config.state_dir)

    # --- KV state across restarts (llama_state_seq_*) -------------------------------------------
    def _save_state(self, directory: Path) -> None:
        """Write each slot's KV cache and token ids, so a restarted engine resumes conversations
        without re-reading them. Best effort: a failure only costs a re-prefill later."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for old in directory.glob("slot-*.kv"):
                old.unlink()
            for slot in self.slots:
                if len(slot.tokens) >= self.config.min_saved_tokens:
                    self.backend.save_seq(slot.seq_id, directory / f"slot-{slot.seq_id}.kv", slot.tokens)
        except (OSError, EngineError):
            pass

    def _restore_state(self, directory: Path) -> None:
        for slot in self.slots:
            path = directory / f"slot-{slot.seq_id}.kv"
            if not path.is_file():
                continue
            try:
                tokens = self.backend.load_seq(slot.seq_id, path, self.n_ctx_seq)
            except EngineError:
                tokens = []
            if tokens and self.backend.seq_pos_max(slot.seq_id) == len(tokens) - 1:
                slot.tokens = tokens
            else:  # stale or foreign file (other context size): start this slot empty
                self.backend.seq_rm(slot.seq_id, 0, -1)
                path.unlink(missing_ok=True)

    def _admit(self) -> None:
        while True:
            free = [s for s in self.slots if s.work is None]
            with self._cond:
                if not free or not self._pending:
                    return
                # Fair share: the client holding the fewest slots goes first, then arrival order.
                per_client = Counter(w.request.client_key for w in self._active)
                queued = [Queued(w.request.client_key, w.order) for w in self._pending]
                work = self._pending[pick_next(queued, per_client, self._last_admitted)]
                self._pending.remove(work)
                self._admissions += 1
                self._last_admitted[work.request.client_key] = self._admissions
                if len(self._last_admitted) > 4096:  # forget clients with nothing queued or running
                    known = {w.request.client_key for w in (*self._pending, *self._active, work)}
                    self._last_admitted = {k: v for k, v in self._last_admitted.items() if k in known}
            slot, keep = self._pick_slot(free, work.prompt)
            if not work.request.sampling.cache_prompt:
                keep = 0  # the request asked for no prefix reuse (reproducibility, issue 13)
            keep = min(keep, len(work.prompt) - 1)  # the last prompt token must be decoded for logits
            if len(slot.tokens) > keep:
                self.backend.seq_rm(slot.seq_id, keep, -1)
                del slot.tokens[keep:]
            slot.work = work
            work.slot = slot
            work.cached_tokens = keep
            work.n_past_prompt = keep
            work.t_start = time.perf_counter()
            params = work.request.sampling
            if params.repeat_last_n != 0:
                last_n = params.repeat_last_n if params.repeat_last_n > 0 else self.n_ctx_seq
                work.chain.accept_prompt(work.prompt[-last_n:])
            with self._cond:
                self._active.append(work)

    def _pick_slot(self, free: list[Slot], prompt: list[int]) -> tuple[Slot, int]:
        """The free slot for ``prompt`` and the length of its reusable prefix (0 without prefix caching)."""
        busy = [slot.seq_id for slot in self.slots if slot.work is not None]
        if not self.config.prefix_cache:
            return min(free, key=lambda slot: (holes_after(busy, slot.seq_id), slot.seq_id)), 0
        # Longest common prefix wins; among equals, the slot that keeps the busy slots' ids
        # contiguous (one llama.cpp pass per step, see packing), then the one holding the least
        # (cheapest to lose), then the lowest id.
        prefix, _, _, _, best = max(
            (common_prefix(slot.tokens, prompt), -holes_after(busy, slot.seq_id), -len(slot.tokens), -slot.seq_id, slot)
            for slot in free
        )
        return best, prefix

    def _step(self) -> None:
        t0 = time.perf_counter()
        backend = self.backend
        batch = backend.batch
        batch.clear()
        decoding = [work for work in self._active if not work.prefilling]
        selected = {self._seq(work) for work in decoding}
        chunks = self._plan_prefill(decoding, selected)
        selected |= set(chunks)
        n_prompt = sum(n for _, n in chunks.values())
        bridges = self._bridges(selected)
        width = self._plan_drafts(decoding, bridges, n_prompt)
        if width > 1:
            # Every bridged row must take the same width; drop bridges that have no room for it.
            bridges = [seq for seq in bridges if len(self.slots[seq].tokens) + width <= self.n_ctx_seq]
        by_seq = {self._seq(work): work for work in decoding}
        outputs: list[tuple[Work, list[int], list[int]]] = []
        packed: list[Work] = []
        # Ascending sequence ids: llama.cpp decodes consecutive ids in one pass (see packing).
        for seq in sorted(selected | set(bridges)):
            slot = self.slots[seq]
            if seq in by_seq:
                work = by_seq[seq]
                packed.append(work)
                pos = len(slot.tokens)
                draft = work.draft[: width - 1]
                rows = [batch.add(work.last_token, pos, seq, True)]
                rows += [batch.add(tok, pos + 1 + i, seq, True) for i, tok in enumerate(draft)]
                for i in range(len(draft) + 1, width):  # padding to the step's width, dropped after the decode
                    batch.add(work.last_token, pos + i, seq, False)
                slot.tokens.append(work.last_token)
                outputs.append((work, rows, draft))
            elif seq in chunks:
                work, n = chunks[seq]
                packed.append(work)
                start, end = work.n_past_prompt, work.n_past_prompt + n
                last = len(work.prompt) - 1
                for pos in range(start, end):
                    idx = batch.add(work.prompt[pos], pos, seq, pos == last)
                slot.tokens.extend(work.prompt[start:end])
                work.n_past_prompt = end
                if end == len(work.prompt):
                    outputs.append((work, [idx], []))
            else:  # a bridge: any tokens, at the next free positions, dropped after the decode
                for i in range(width):
                    batch.add(slot.tokens[-1] if slot.tokens else 0, len(slot.tokens) + i, seq, False)
        t1 = time.perf_counter()
        rc = backend.decode(batch)
        t2 = time.perf_counter()
        for seq in bridges:
            backend.seq_rm(seq, len(self.slots[seq].tokens), -1)
        if rc != 0:
            # Nothing in this batch is trustworthy: fail its requests and drop their KV.
            for work in packed:
                if work.slot is not None:
                    self._finish(work, "error", error=f"llama_decode failed (code {rc})", drop_kv=True)
            self._record(t0, t2 - t1, 0.0, batch.n, 0)
            return
        if width > 1:
            self.speculation.steps += 1
            self.speculation.widths[width] = self.speculation.widths.get(width, 0) + 1
        sample_s = 0.0
        n_sampled = 0
        for work, rows, draft in outputs:
            row_slot = work.slot
            assert row_slot is not None
            accepted = 0
            try:
                for i, idx in enumerate(rows):
                    ts = time.perf_counter()
                    chain = work.chain
                    if work.generated < work.request.sampling.min_tokens:
                        token = chain.pick(backend.ctx, idx, backend.logits_row(idx), self._eog_ids())
                    elif chain.fast_greedy:
                        token = chain.greedy(backend.logits_row(idx))
                    else:
                        token = chain.sample(backend.ctx, idx)
                    sample_s += time.perf_counter() - ts
                    n_sampled += 1
                    if work.shadow is not None:
                        if work.tracker is not None:
                            work.tracker.shadow(token == work.shadow)
                        work.shadow = None
                    self._on_token(work, token, idx)
                    if work.slot is None or i >= len(draft) or token != draft[i]:
                        break
                    # The target agrees with the draft: its KV entry (written by this decode) is kept.
                    row_slot.tokens.append(token)
                    accepted += 1
            except Exception as exc:  # this request only
                self._finish(work, "error", error=str(exc))
            if draft:
                self._record_draft(work, len(draft), accepted)
            if len(rows) > 1 or width > 1:
                # Rejected drafts and padding: only what was accepted stays in the sequence's KV.
                backend.seq_rm(row_slot.seq_id, len(row_slot.tokens), -1)
        for work in self._active:
            if work.events:
                events, work.events = work.events, []
                self._outbox.append((work.handle, events))
        self._record(t0, t2 - t1, sample_s, batch.n, n_sampled)
        if n_prompt:
            # What the prompt tokens added beyond the step's other rows: the price the next budget is set by.
            self._prompt_cost.observe(n_prompt, time.perf_counter() - t0 - self._cost.cost(batch.n - n_prompt))
        else:
            # Fitted on decoding steps only (the decision it informs): the whole step — decode, sampling,
            # text pipeline — is what a wider step pays for; prompt chunks run in another regime.
            self._cost.observe(batch.n, time.perf_counter() - t0)

    def _plan_prefill(self, decoding: list[Work], selected: set[int]) -> dict[int, tuple[Work, int]]:
        """Prompt tokens each prefilling request adds this step (see :mod:`.policy`)."""
        prefilling = [work for work in self._active if work.prefilling]
        if not prefilling:
            return {}
        capacity = self.backend.batch.capacity
        # While streams are decoding, the step-time target (and prefill_chunk) bounds how much a step's prompts
        # slow them down; with nobody decoding, prompts may fill the whole batch (throughput like llama-bench's pp).
        if decoding:
            budget = prefill_budget(
                chunk=min(self.config.prefill_chunk, capacity - len(decoding)),
                target_s=self.config.itl_target_s,
                decode_s=self._cost.cost(len(decoding)),
                prompt_token_s=self._prompt_cost.seconds,
            )
        else:
            budget = capacity
        # Bridges between the rows may take batch entries too; leave room for the worst case.
        budget -= len(self._bridges(selected | {self._seq(work) for work in prefilling}))
        plan = plan_prefill(
            [Prefilling(len(w.prompt) - w.n_past_prompt, w.prefill_waited, w.order) for w in prefilling],
            max(0, budget),
        )
        chunks: dict[int, tuple[Work, int]] = {}
        for work, n in zip(prefilling, plan, strict=True):
            if n > 0:
                chunks[self._seq(work)] = (work, n)
                work.prefill_waited = 0
            else:
                work.prefill_waited += 1
        return chunks

    def _plan_drafts(self, decoding: list[Work], bridges: list[int], n_prompt: int) -> int:
        """Give each drafting row its draft for this step; returns the step's row width (1 = none)."""
        candidates: list[DraftCandidate] = []
        for work in decoding:
            work.draft, work.shadow = [], None
            drafter, tracker = work.drafter, work.tracker
            if drafter is None or tracker is None:
                continue
            slot = work.slot
            assert slot is not None
            # Room: the drafts sit after last_token in the KV stream, and drafting past max_tokens is waste.
            room = min(work.draft_max, self.n_ctx_seq - len(slot.tokens) - 1, work.max_tokens - work.generated - 1)
            draft = drafter.draft(room)
            if draft:
                work.draft = draft
                candidates.append(DraftCandidate(len(draft), tracker.rate))
            else:
                tracker.idle()
        if not candidates:
            return 1
        rows = len(decoding) + len(bridges)
        # Every row of the step (drafting or not, bridges included) must fit the width in its KV stream and the batch.
        room_rows = min(self.n_ctx_seq - len(self.slots[self._seq(w)].tokens) for w in decoding)
        max_width = min(
            1 + max(c.draft_len for c in candidates),
            room_rows,
            (self.backend.batch.capacity - n_prompt) // max(1, rows),
        )
        if n_prompt:
            # A step with prompt tokens measures nothing (the cost table is fitted on decoding steps), so it
            # drafts only as wide as measured: past that the table's price is an optimistic guess.
            max_width = min(max_width, self._cost.measured_max() // max(1, rows))
        width = choose_width(
            candidates,
            decoding=len(decoding),
            rows=rows,
            other_tokens=n_prompt,
            cost=self._cost,
            max_width=max_width,
            prompt_token_s=self._prompt_cost.seconds,
        )
        if width > 1 and n_prompt == 0:
            # Drafting pays at the current estimates: measure a width not yet measured at this row count
            # instead, so the choice rests on steps seen rather than the line's guess (see StepCostModel).
            untried = self._cost.untried([rows * w for w in widths_to_explore(width, max_width)])
            if untried is not None:
                width = untried // rows
        if width == 1:
            for work in decoding:
                if work.draft:
                    work.shadow = work.draft[0]
                work.draft = []
        return width

    def _record_draft(self, work: Work, drafted: int, accepted: int) -> None:
        if work.tracker is not None:
            work.tracker.record(drafted, accepted)
        self.speculation.drafted += drafted
        self.speculation.accepted += accepted

    @staticmethod
    def _seq(work: Work) -> int:
        assert work.slot is not None
        return work.slot.seq_id

    def _bridges(self, selected: set[int]) -> list[int]:
        """Idle slots that get a throwaway token so ``selected`` decodes in one pass (see packing)."""
        if self._bridging_off or len(selected) < 2:
            return []
        return bridge_gaps(selected, self._can_bridge)

    def _can_bridge(self, seq: int) -> bool:
        slot = self.slots[seq]
        return slot.work is None and len(slot.tokens) < self.n_ctx_seq

    def _flush_outbox(self) -> None:
        """Hand events to their requests (``_run`` calls it after each step's counters are recorded, so a
        caller that sees its Finished event also sees the step that produced it in the timings)."""
        outbox, self._outbox = self._outbox, []
        deliver(outbox)

    def _record(self, t0: float, decode_s: float, sample_s: float, n_batch: int, n_sampled: int) -> None:
        with self._timings_lock:  # readers take consistent snapshots (see timings_snapshot)
            timings = self.timings
            timings.steps += 1
            timings.step_seconds += time.perf_counter() - t0
            timings.decode_seconds += decode_s
            timings.sample_seconds += sample_s
            timings.batch_tokens += n_batch
            timings.sampled_tokens += n_sampled

    def timings_snapshot(self) -> StepTimings:
        with self._timings_lock:
            return dataclasses.replace(self.timings)

    def _on_token(self, work: Work, token: int, idx: int) -> None:
        if work.generated == 0:
            work.t_first = time.perf_counter()
        backend = self.backend
        if backend.is_eog(token):
            self._finish(work, "stop")
            return
        work.generated += 1
        work.last_token = token
        if work.drafter is not None:
            work.drafter.append(token)
        logprob = None
        if work.request.sampling.logprobs is not None:
            logprob = self._logprob(work, token, idx)
        if work.pipeline.push(token, logprob, work.events):
            self._finish(work, "stop", stop_string=work.pipeline.matched)
            return
        slot = work.slot
        assert slot is not None
        if work.generated >= work.max_tokens or len(slot.tokens) + 1 > self.n_ctx_seq:
            self._finish(work, "length")

    def _logprob(self, work: Work, token: int, idx: int) -> TokenLogprob:
        backend = self.backend
        top_n = work.request.sampling.logprobs or 0

        def piece(t: int) -> str:
            return backend.token_to_piece(t).decode("utf-8", errors="replace")

        chosen, top = logprobs_for(backend.logits_row(idx), token, top_n, piece)
        raw = backend.token_to_piece(token)
        return TokenLogprob(raw.decode("utf-8", errors="replace"), chosen, tuple(raw), top)

    def _cancel_now(self, request_id: str) -> None:
        with self._cond:
            work = self._by_id.get(request_id)
            if work is None:
                return
            if work in self._pending:
                self._pending.remove(work)
        self._finish(work, "cancelled")

    def _finish(
        self,
        work: Work,
        reason: FinishReason,
        *,
        stop_string: str | None = None,
        error: str | None = None,
        drop_kv: bool = False,
    ) -> None:
        events: list[EngineEvent] = work.events
        work.events = []
        if reason in ("stop", "length") and stop_string is None:
            try:
                work.pipeline.finish(events)
            except Exception as exc:  # keep the Finished event flowing whatever the pipeline did
                reason, error = "error", str(exc)
        slot = work.slot
        if slot is not None:
            if drop_kv or not self.config.prefix_cache:
                self.backend.seq_rm(slot.seq_id, 0, -1)
                slot.tokens.clear()
            elif reason in ("cancelled", "error"):
                # Keep the prompt's KV for reuse, trim what was generated.
                keep = min(len(slot.tokens), len(work.prompt))
                self.backend.seq_rm(slot.seq_id, keep, -1)
                del slot.tokens[keep:]
            slot.work = None
            work.slot = None
        now = time.perf_counter()
        t_start = work.t_start or now
        t_first = work.t_first or now
        tracker = work.tracker
        usage = Usage(
            prompt_tokens=len(work.prompt),
            completion_tokens=work.generated,
            cached_tokens=work.cached_tokens,
            drafted_tokens=tracker.drafted if tracker is not None else 0,
            accepted_tokens=tracker.accepted if tracker is not None else 0,
        )
        events.append(
            Finished(
                reason=reason,
                usage=usage,
                stop_string=stop_string,
                error=error,
                timings={"queued": t_start - work.t_submit, "prefill": t_first - t_start, "decode": now - t_first},
            )
        )
        work.chain.free()
        with self._cond:
            if work in self._active:
                self._active.remove(work)
            self._by_id.pop(work.handle.request_id, None)
            self.prompt_tokens_total += len(work.prompt)
            self.cached_tokens_total += work.cached_tokens
            self.completion_tokens_total += work.generated
        self._outbox.append((work.handle, events))
