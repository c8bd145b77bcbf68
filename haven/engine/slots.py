"""Per-request and per-slot state of the scheduler, and the async handle a caller iterates.

A *slot* is one llama.cpp sequence id with the token ids whose KV entries it holds (kept
after a request finishes, for prefix reuse). A *Work* item is one request in flight: its
sampler chain, its text pipeline (detokenize → stop strings → reasoning split) and counters.
:class:`Handle` is the :class:`~haven.engine.protocol.GenerationHandle` given to the caller;
the scheduler thread appends events to it and wakes the event loop at most once per batch of
events (``loop.call_soon_threadsafe``), so a slow consumer receives several tokens per wakeup;
:func:`deliver` hands a whole step's events over with one wakeup per event loop, not one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from haven.engine.detokenizer import IncrementalDetokenizer
from haven.engine.protocol import (
    EngineEvent,
    Finished,
    GenerationRequest,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
)
from haven.engine.reasoning import ReasoningSplitter
from haven.engine.sampling import SamplerChain
from haven.engine.speculative import AcceptanceTracker, NgramDrafter
from haven.engine.stop import StopMatcher


def deliver(batch: Sequence[tuple[Handle, list[EngineEvent]]]) -> None:
    """Hand each handle its events, waking each event loop once for all of its handles.

    Every ``call_soon_threadsafe`` is a write to the loop's self-pipe and a GIL hand-off between the
    scheduler thread and the loop; with one per request, a step of eight streams paid eight.
    """
    to_wake: dict[asyncio.AbstractEventLoop, list[Handle]] = {}
    for handle, events in batch:
        if handle._deposit(events):
            to_wake.setdefault(handle._loop, []).append(handle)
    for loop, handles in to_wake.items():
        _wake_all(loop, handles)


def _wake_all(loop: asyncio.AbstractEventLoop, handles: list[Handle]) -> None:
    def wake() -> None:
        for handle in handles:
            handle._wake()

    # RuntimeError: the caller's loop is closed, nobody is listening any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(wake)


class Handle:
    """A submitted generation: iterate :meth:`events` until :class:`Finished`, or :meth:`cancel`."""

    def __init__(self, request_id: str, loop: asyncio.AbstractEventLoop, cancel: Callable[[str], None]) -> None:
        self._request_id = request_id
        self._loop = loop
        self._cancel = cancel
        self._lock = threading.Lock()
        self._buf: list[EngineEvent] = []
        self._wake_scheduled = False
        self._ready = asyncio.Event()
        self.finished: Finished | None = None

    @property
    def request_id(self) -> str:
        return self._request_id

    # --- scheduler thread side -----------------------------------------------------------
    def push(self, events: list[EngineEvent]) -> None:
        if self._deposit(events):
            _wake_all(self._loop, [self])

    def _deposit(self, events: list[EngineEvent]) -> bool:
        """Buffer ``events``; True when the event loop must be woken for them (no wakeup is pending)."""
        with self._lock:
            self._buf.extend(events)
            if self._wake_scheduled:
                return False
            self._wake_scheduled = True
            return True

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
        self._ready.set()

    # --- event loop side ---------------------------------------------------------------------
    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            with self._lock:
                items, self._buf = self._buf, []
            if not items:
                await self._ready.wait()
                self._ready.clear()
                continue
            for event in items:
                yield event
                if isinstance(event, Finished):
                    self.finished = event
                    return

    async def cancel(self) -> None:
        self._cancel(self._request_id)


class TextPipeline:
    """Token ids → events: incremental UTF-8 detokenization, stop strings, reasoning split."""

    def __init__(
        self,
        token_to_piece: Callable[[int], bytes],
        stops: tuple[str, ...],
        *,
        split_reasoning: bool,
        reasoning_opened: bool,
        min_tokens: int = 0,
    ) -> None:
        self.detok = IncrementalDetokenizer(token_to_piece)
        # Stop strings, like the end-of-generation tokens, end nothing before min_tokens (vLLM's semantics).
        self.min_tokens = min_tokens
        self._generated = 0
        self.stop = StopMatcher(stops)
        self.reasoning = ReasoningSplitter(opened=reasoning_opened) if split_reasoning else None
        self._ids: list[int] = []
        self._logprobs: list[TokenLogprob] = []
        self.matched: str | None = None

    def push(self, token: int, logprob: TokenLogprob | None, out: list[EngineEvent]) -> bool:
        """Add one generated token; append resulting events to ``out``. True when a stop string matched."""
        self._ids.append(token)
        self._generated += 1
        if logprob is not None:
            self._logprobs.append(logprob)
        text = self.detok.push(token)
        if not text:
            return False
        safe, matched = self.stop.push(text, armed=self._armed)
        self._emit(safe, out)
        if matched is not None:
            self.matched = matched
            self._final(out, flush_stop=False)
            return True
        return False

    def finish(self, out: list[EngineEvent]) -> None:
        """Flush everything held back (end of generation without a stop string)."""
        rest = self.detok.flush()
        if rest:
            safe, matched = self.stop.push(rest, armed=self._armed)
            self._emit(safe, out)
            if matched is not None:
                self.matched = matched
                self._final(out, flush_stop=False)
                return
        self._final(out, flush_stop=True)

    def _final(self, out: list[EngineEvent], *, flush_stop: bool) -> None:
        if flush_stop:
            self._emit(self.stop.flush(armed=self._armed), out)
        if self.reasoning is not None:
            self._segments(self.reasoning.flush(), out)
        if self._ids or self._logprobs:
            # Tokens whose text was swallowed (stop string, incomplete UTF-8): still report them.
            out.append(TextDelta("", tuple(self._ids), tuple(self._logprobs)))
            self._ids, self._logprobs = [], []

    @property
    def _armed(self) -> bool:
        return self._generated >= self.min_tokens

    def _emit(self, text: str, out: list[EngineEvent]) -> None:
        if not text:
            return
        if self.reasoning is None:
            self._segments([("content", text)], out)
        else:
            self._segments(self.reasoning.push(text), out)

    def _segments(self, segments: Sequence[tuple[str, str]], out: list[EngineEvent]) -> None:
        for kind, text in segments:
            if not text:
                continue
            ids, self._ids = tuple(self._ids), []
            if kind == "reasoning":
                # ReasoningDelta carries no logprobs; do not let them leak onto the answer's first delta.
                self._logprobs = []
                out.append(ReasoningDelta(text, ids))
            else:
                lps, self._logprobs = tuple(self._logprobs), []
                out.append(TextDelta(text, ids, lps))


@dataclass(eq=False)
class Work:
    """One request from admission to its Finished event."""

    request: GenerationRequest
    handle: Handle
    chain: SamplerChain
    pipeline: TextPipeline
    prompt: list[int]
    max_tokens: int
    t_submit: float
    slot: Slot | None = None
    n_past_prompt: int = 0
    """Prompt tokens whose KV is in the slot (cached + prefilled so far)."""
    cached_tokens: int = 0
    generated: int = 0
    last_token: int = -1
    t_start: float = 0.0
    t_first: float = 0.0
    cancelled: bool = False
    events: list[EngineEvent] = field(default_factory=list)
    order: int = 0
    """Arrival order (admission is first come, first served among clients with equal share)."""
    prefill_waited: int = 0
    """Consecutive steps this request got no prompt tokens while prefilling (ageing, see policy)."""
    drafter: NgramDrafter | None = None
    """Speculative decoding: the n-gram index over prompt + output (None: this request does not draft)."""
    tracker: AcceptanceTracker | None = None
    draft_max: int = 0
    draft: list[int] = field(default_factory=list)
    """The draft offered for the current step."""
    shadow: int | None = None
    """The first token of a draft this step did not verify: checked against the sampled token (for free)."""

    @property
    def prefilling(self) -> bool:
        return self.n_past_prompt < len(self.prompt)


@dataclass(eq=False)
class Slot:
    """One KV sequence: its id, the tokens whose KV it holds, and the request using it."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    work: Work | None = None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
