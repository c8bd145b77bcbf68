"""LocalChatBackend without HTTP (as the audit or the UI would use it): events, tool calls, outcomes, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from haven.chat.backend import ChatRequest, Final, Message, ReasoningDelta, TextDelta, Tool, collect
from haven.chat.local import LocalChatBackend
from haven.engine import protocol as engine_api
from haven.server.model_manager import ModelManager
from haven.settings import Settings
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore

HI = (Message("user", "Hi"),)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[LocalChatBackend, FakeEngine]]:
    engine = FakeEngine()
    manager = ModelManager(Settings(home=tmp_path), FakeStore(tmp_path / "store"), FakeLoader(make=lambda n: engine))
    yield LocalChatBackend(manager, max_tokens_limit=100), engine
    await manager.close()


async def test_events_then_one_final(setup: tuple[LocalChatBackend, FakeEngine]) -> None:
    backend, engine = setup
    engine.script = (engine_api.ReasoningDelta("Hm."), engine_api.TextDelta("Hello"))
    events = [e async for e in await backend.chat(ChatRequest("tiny", HI))]
    assert events[:2] == [ReasoningDelta("Hm."), TextDelta("Hello")]
    assert isinstance(events[-1], Final) and events[-1].finish_reason == "stop" and len(events) == 3


async def test_a_tool_call_finishes_with_tool_calls(
    setup: tuple[LocalChatBackend, FakeEngine],
) -> None:
    backend, engine = setup
    engine.script = (engine_api.TextDelta('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'),)
    result = await collect(await backend.chat(ChatRequest("tiny", HI, tools=(Tool("f"),))))
    assert result.final.finish_reason == "tool_calls" and result.content == ""
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("f", '{"x": 1}')]


async def test_engine_outcomes_map_to_one_error_rule(setup: tuple[LocalChatBackend, FakeEngine]) -> None:
    backend, engine = setup
    engine.script = (engine_api.Finished("cancelled", engine_api.Usage(1, 0)),)
    final = (await collect(await backend.chat(ChatRequest("tiny", HI)))).final
    assert final.finish_reason == "error" and final.error is not None and final.error.code == "shutdown"
    engine.script = (engine_api.Finished("error", engine_api.Usage(1, 0), error="boom"),)
    final = (await collect(await backend.chat(ChatRequest("tiny", HI)))).final
    assert final.error is not None and (final.error.code, final.error.message) == ("engine_error", "boom")


async def test_closing_a_stream_before_reading_it_cancels_the_generation(
    setup: tuple[LocalChatBackend, FakeEngine],
) -> None:
    backend, engine = setup
    stream = await backend.chat(ChatRequest("tiny", HI, request_id="r1"))
    await stream.aclose()
    assert engine.cancelled == ["r1"]
