"""RedactingBackend: every text a chat sends out is masked, and the reply is restored as it streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from haven.chat.backend import (
    ChatEvent,
    ChatRequest,
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
    Usage,
    collect,
)
from haven.chat.redacting import RedactingBackend


class Stream:
    def __init__(self, events: list[ChatEvent]) -> None:
        self.events = events

    async def _iter(self) -> AsyncIterator[ChatEvent]:
        for event in self.events:
            yield event

    def __aiter__(self) -> AsyncIterator[ChatEvent]:
        return self._iter()

    async def aclose(self) -> None:
        return None


class Recording:
    """An upstream that records the request and answers with placeholders cut across chunks."""

    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> Stream:
        self.seen.append(request)
        return Stream([ReasoningDelta("mail [EMA"), ReasoningDelta("IL_1]"), TextDelta("card [CARD"),
                       TextDelta("_1] ok"), ToolCallDelta(0, "c1", "pay", '{"iban": "[IBAN'),
                       ToolCallDelta(0, arguments='_1]"}'), Final("tool_calls", Usage(3, 4))])

    async def complete(self, request: TextRequest) -> Stream:
        raise NotImplementedError

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise NotImplementedError

    def models(self) -> Sequence[ModelCard]:
        return []

    def model(self, name: str) -> ModelDetails:
        raise NotImplementedError


async def test_every_outgoing_text_is_masked_and_the_streamed_reply_restored() -> None:
    upstream = Recording()
    reported: list[tuple[str, dict[str, int]]] = []
    backend = RedactingBackend(upstream, on_counts=lambda model, counts: reported.append((model, dict(counts))))
    request = ChatRequest(model="m", messages=(
        Message("system", "Owner: anna@example.org"),
        Message("assistant", "", reasoning="ask anna@example.org",
                tool_calls=(ToolCall("c0", "pay", '{"iban": "GB82WEST12345698765432"}'),)),
        Message("user", "card 4111 1111 1111 1111"),
    ))
    result = await collect(await backend.chat(request))
    sent = upstream.seen[0].messages
    assert [m.content for m in sent] == ["Owner: [EMAIL_1]", "", "card [CARD_1]"]
    assert sent[1].reasoning == "ask [EMAIL_1]"
    assert sent[1].tool_calls[0].arguments == '{"iban": "[IBAN_1]"}'
    assert result.reasoning == "mail anna@example.org"
    assert result.content == "card 4111 1111 1111 1111 ok"
    assert result.tool_calls == [ToolCall("c1", "pay", '{"iban": "GB82WEST12345698765432"}')]
    assert result.final.finish_reason == "tool_calls"
    assert reported == [("m", {"EMAIL": 2, "IBAN": 1, "CARD": 1})]


async def test_masking_runs_off_the_event_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Detection of a long pasted text takes a while: on the loop's thread it would stall every other request.
    import threading

    import haven.chat.redacting as redacting

    threads: list[int] = []

    class Watched(redacting.Redactor):
        def redact(self, text: str):  # type: ignore[no-untyped-def]
            threads.append(threading.get_ident())
            return super().redact(text)

    monkeypatch.setattr(redacting, "Redactor", Watched)
    upstream = Recording()
    await collect(await RedactingBackend(upstream).chat(ChatRequest(model="m", messages=(Message("user", "hi"),))))
    assert threads and threading.get_ident() not in threads
