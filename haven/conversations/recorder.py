"""Records one chat turn into a conversation while it is generated: the protocol-free part of ``conversation_id``.

Lifecycle: :meth:`TurnRecorder.begin` commits the new user turn(s) and an empty reply marked
*incomplete*, before generation starts; :meth:`text` / :meth:`reasoning` / :meth:`tool_call` collect
the reply as it streams, and :meth:`flush` (whenever :meth:`due`) rewrites the reply row, so a server
killed mid-stream leaves what was generated so far; :meth:`finish` writes the final reply with usage,
timings and finish reason (``incomplete`` stays true when the stream was cut short).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from haven.accounts.service import Unlocked
from haven.conversations.store import UNSET, ConversationStore, check_id

FLUSH_SECONDS = 1.0


class TurnRecorder:
    def __init__(
        self,
        store: ConversationStore,
        unlocked: Unlocked,
        conversation_id: str,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        """``redact``: applied to every text before it is stored (``HAVEN_REDACT=outbound+storage``): the
        stored turn keeps typed placeholders, never the values, and they cannot be restored later."""
        self.store = store
        self._redact = redact or (lambda text: text)
        self.unlocked = unlocked
        self.conversation_id = check_id(conversation_id)
        self.flush_seconds = flush_seconds
        self._clock = clock
        self.reply_id: str | None = None
        self.model: str | None = None
        self.sampling: dict[str, Any] = {}
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._started = clock()
        self._first_token: float | None = None
        self._last_flush = self._started
        self._dirty = False
        self._flushes = 0
        self.finished = False

    def begin(
        self,
        turns: list[dict[str, Any]],
        *,
        parent_message_id: Any = UNSET,
        model: str | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> str:
        """Commits ``turns`` (the request's new messages) and the reply placeholder; returns the reply id.

        ``parent_message_id``: UNSET — under the current leaf; None — a new root (edit the first message);
        an id — under that message (edit-and-resend or regenerate).
        """
        self.model, self.sampling = model, dict(sampling or {})
        parent: Any = parent_message_id
        if isinstance(parent_message_id, str):
            role, _, content = self.store.message_parent(self.unlocked, self.conversation_id, parent_message_id)
            # Regenerate: the request ends with the very user message we attach under; do not store it twice.
            if turns and role == turns[0].get("role") == "user" and content == turns[0].get("content"):
                turns = turns[1:]
        turns = [{**t, "content": self._redact(t["content"])} if isinstance(t.get("content"), str) else t
                 for t in turns]
        reply = {"role": "assistant", "content": "", "model": model, "sampling": self.sampling, "incomplete": True}
        views = self.store.append(self.unlocked, self.conversation_id, [*turns, reply], parent_id=parent)
        self.reply_id = views[-1].id
        self._started = self._last_flush = self._clock()
        return self.reply_id

    def _token(self) -> None:
        if self._first_token is None:
            self._first_token = self._clock()
        self._dirty = True

    def text(self, piece: str) -> None:
        if piece:
            self._content.append(piece)
            self._token()

    def reasoning(self, piece: str) -> None:
        if piece:
            self._reasoning.append(piece)
            self._token()

    def tool_call(
        self, index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = ""
    ) -> None:
        call = self._calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call_id:
            call["id"] = call_id
        if name:
            call["function"]["name"] += name
        call["function"]["arguments"] += arguments or ""
        self._token()

    def due(self) -> bool:
        """A flush is due at the first token (so a crash right away still keeps something), then every
        ``flush_seconds`` while tokens keep coming."""
        if not self._dirty:
            return False
        return self._flushes == 0 or self._clock() - self._last_flush >= self.flush_seconds

    def _write(self, *, finish_reason: str | None, incomplete: bool, usage: dict[str, Any] | None) -> None:
        if self.reply_id is None:
            return
        now = self._clock()
        timings: dict[str, Any] = {"total_ms": round((now - self._started) * 1000, 1)}
        if self._first_token is not None:
            timings["prompt_ms"] = round((self._first_token - self._started) * 1000, 1)
            timings["generation_ms"] = round((now - self._first_token) * 1000, 1)
            completion = (usage or {}).get("completion_tokens")
            if completion and now > self._first_token:
                timings["tokens_per_second"] = round(completion / (now - self._first_token), 2)
        self.store.update_reply(
            self.unlocked,
            self.conversation_id,
            self.reply_id,
            content=self._redact("".join(self._content)),
            reasoning=self._redact("".join(self._reasoning)) or None,
            tool_calls=[self._redacted_call(self._calls[i]) for i in sorted(self._calls)] or None,
            # The whole meta, as begin() stored it plus what is known now: update_reply replaces it unread.
            meta={"model": self.model, "sampling": self.sampling, "usage": usage, "timings": timings},
            finish_reason=finish_reason,
            incomplete=incomplete,
        )
        self._last_flush, self._dirty = now, False
        self._flushes += 1

    def _redacted_call(self, call: dict[str, Any]) -> dict[str, Any]:
        function = call["function"]
        return {**call, "function": {**function, "arguments": self._redact(function["arguments"])}}

    def flush(self) -> None:
        """Stores the reply so far (still marked incomplete)."""
        self._write(finish_reason=None, incomplete=True, usage=None)

    def finish(
        self, *, finish_reason: str | None, usage: dict[str, Any] | None = None, incomplete: bool = False
    ) -> None:
        if self.finished:
            return
        self.finished = True
        self._write(finish_reason=finish_reason, incomplete=incomplete, usage=usage)
