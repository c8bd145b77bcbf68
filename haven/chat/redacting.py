"""Redaction for chats that leave the machine: a backend wrapper that masks on the way out and restores on the way in.

:class:`RedactingBackend` wraps a remote backend (an upstream): every message text, reasoning replayed to the
model and tool-call argument is passed through one :class:`~haven.redaction.redactor.Redactor` per request,
so the upstream only ever sees typed placeholders (``[EMAIL_1]``), and the reply's text, reasoning and tool-call
arguments are restored as they stream back (a placeholder split across chunks is restored whole). What was
masked, per type, is reported to ``on_counts`` (for the security log) — never the values.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from haven.chat.backend import (
    ChatBackend,
    ChatEvent,
    ChatRequest,
    ChatStream,
    Embeddings,
    EmbedRequest,
    Final,
    Message,
    ModelCard,
    ModelDetails,
    ReasoningDelta,
    TextDelta,
    TextRequest,
    ToolCall,
    ToolCallDelta,
)
from haven.redaction import Redactor, StreamRestorer

CountsReporter = Callable[[str, Mapping[str, int]], None]
"""Called with (model, {kind: count}) after each request that masked something."""


class _RestoringStream:
    def __init__(self, inner: ChatStream, redactor: Redactor, model: str, on_counts: CountsReporter | None) -> None:
        self._inner = inner
        self._redactor = redactor
        self._model = model
        self._on_counts = on_counts
        self._text = redactor.stream_restorer()
        self._reasoning = redactor.stream_restorer()
        self._arguments: dict[int, StreamRestorer] = {}

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ChatEvent]:
        async for event in self._inner:
            if isinstance(event, TextDelta):
                text = self._text.feed(event.text)
                if text:
                    yield dataclasses.replace(event, text=text)
            elif isinstance(event, ReasoningDelta):
                text = self._reasoning.feed(event.text)
                if text:
                    yield ReasoningDelta(text)
            elif isinstance(event, ToolCallDelta):
                restorer = self._arguments.setdefault(event.index, self._redactor.stream_restorer())
                yield dataclasses.replace(event, arguments=restorer.feed(event.arguments))
            else:
                for kind, restorer in (("reasoning", self._reasoning), ("text", self._text)):
                    tail = restorer.flush()
                    if tail:
                        yield ReasoningDelta(tail) if kind == "reasoning" else TextDelta(tail)
                for index, restorer in self._arguments.items():
                    tail = restorer.flush()
                    if tail:
                        yield ToolCallDelta(index, arguments=tail)
                if self._on_counts is not None and self._redactor.counts:
                    self._on_counts(self._model, dict(self._redactor.counts))
                yield event
                if isinstance(event, Final):
                    return

    async def aclose(self) -> None:
        await self._inner.aclose()


class RedactingBackend:
    def __init__(self, inner: ChatBackend, *, on_counts: CountsReporter | None = None) -> None:
        self.inner = inner
        self._on_counts = on_counts

    def _message(self, redactor: Redactor, message: Message) -> Message:
        return dataclasses.replace(
            message,
            content=redactor.redact(message.content).text,
            reasoning=redactor.redact(message.reasoning).text if message.reasoning else message.reasoning,
            tool_calls=tuple(ToolCall(c.id, c.name, redactor.redact(c.arguments).text) for c in message.tool_calls),
        )

    def _messages(self, redactor: Redactor, messages: Sequence[Message]) -> tuple[Message, ...]:
        return tuple(self._message(redactor, m) for m in messages)

    async def chat(self, request: ChatRequest) -> ChatStream:
        redactor = Redactor()
        # Detection costs milliseconds per thousand characters (tens for text dense with numbers, such as a pasted
        # log): on the event loop a long conversation would stall every other request, so it runs in a thread.
        messages = await asyncio.to_thread(self._messages, redactor, request.messages)
        masked = dataclasses.replace(request, messages=messages)
        return _RestoringStream(await self.inner.chat(masked), redactor, request.model, self._on_counts)

    async def complete(self, request: TextRequest) -> ChatStream:
        redactor = Redactor()
        prompt = request.prompt
        if isinstance(prompt, str):
            prompt = (await asyncio.to_thread(redactor.redact, prompt)).text
        stream = await self.inner.complete(dataclasses.replace(request, prompt=prompt))
        return _RestoringStream(stream, redactor, request.model, self._on_counts)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        # Embeddings of a placeholder are not embeddings of the text: masking would silently change the
        # vectors, so embedding requests go out as they are (documented in docs/sovereignty.md).
        return await self.inner.embed(request)

    def models(self) -> Sequence[ModelCard]:
        return self.inner.models()

    def model(self, name: str) -> ModelDetails:
        return self.inner.model(name)
