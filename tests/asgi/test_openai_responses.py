"""``POST /v1/responses`` in-process, read by the real ``openai`` SDK: plain, streamed, tools and their
outputs, text.format json_schema, reasoning items, usage, previous_response_id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from haven.engine.protocol import ReasoningDelta, TextDelta
from tests.asgi.openai_support import Harness, harness
from tests.support.fake_engine import FakeEngine

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(script=(ReasoningDelta("Mull."), TextDelta("Hello"), TextDelta(" world")))


@pytest.fixture
async def h(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[Harness]:
    async with harness(tmp_path, engine=engine) as h:
        yield h


@pytest.fixture
async def client(h: Harness) -> AsyncIterator[openai.AsyncOpenAI]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app), base_url="http://127.0.0.1")
    yield openai.AsyncOpenAI(base_url="http://127.0.0.1/v1", api_key="x", http_client=http)
    await http.aclose()


async def test_plain_response(client: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    r = await client.responses.create(model="tiny", input="Hi", instructions="Be kind.", max_output_tokens=20)
    assert r.status == "completed" and r.output_text == "Hello world"
    assert [item.type for item in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text == "Mull."  # type: ignore[union-attr,index]
    assert r.usage is not None and r.usage.output_tokens == 3 and r.usage.input_tokens > 0
    assert engine.rendered[-1]["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert engine.submitted[-1].sampling.max_tokens == 20


async def test_streamed_response_has_the_semantic_events(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model="tiny", input="Hi", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.reasoning_text.delta" in kinds
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]  # type: ignore[union-attr]
    assert deltas == ["Hello", " world"]
    assert events[-1].response.output_text == "Hello world"  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_function_tools_and_their_outputs(client: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    engine.script = (TextDelta(CALL),)
    r = await client.responses.create(model="tiny", input="Weather in Oslo?", tools=TOOLS)  # type: ignore[arg-type]
    (call,) = [item for item in r.output if item.type == "function_call"]
    assert (call.name, call.arguments) == ("get_weather", '{"city": "Oslo"}')  # type: ignore[union-attr]
    stream = await client.responses.create(model="tiny", input="Weather?", tools=TOOLS, stream=True)  # type: ignore[arg-type]
    kinds = [e.type async for e in stream]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    engine.script = (TextDelta("Sunny."),)
    follow_up = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": "get_weather", "arguments": call.arguments},  # type: ignore[union-attr]
        {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 3}'},  # type: ignore[union-attr]
    ]
    r = await client.responses.create(model="tiny", input=follow_up, tools=TOOLS)  # type: ignore[arg-type]
    assert r.output_text == "Sunny."
    rendered = engine.rendered[-1]["messages"]
    assert rendered[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    assert rendered[2] == {"role": "tool", "content": '{"temp": 3}', "tool_call_id": call.call_id}  # type: ignore[union-attr]


async def test_text_format_reasoning_effort_and_errors(client: openai.AsyncOpenAI, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"format": {"type": "json_schema", "name": "x", "schema": schema}}
    await client.responses.create(model="tiny", input="Hi", text=fmt, reasoning={"effort": "none"}, store=False)  # type: ignore[arg-type]
    assert engine.submitted[-1].sampling.json_schema == schema
    assert engine.rendered[-1]["enable_thinking"] is False
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="tiny", input="Hi", previous_response_id="resp_123")
    assert "previous_response_id" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="nope", input="Hi")


class MemoryStore:
    """A ResponseStore in a dict (the accounts/conversations storage provides the real one)."""

    def __init__(self) -> None:
        self.saved: dict[str, list[dict[str, object]]] = {}

    async def load(self, response_id: str) -> list[dict[str, object]] | None:
        return self.saved.get(response_id)

    async def save(self, response_id: str, items: list[dict[str, object]]) -> None:
        self.saved[response_id] = items


async def test_previous_response_id_continues_a_stored_response(
    h: Harness, client: openai.AsyncOpenAI, engine: FakeEngine
) -> None:
    h.app.state.response_store = store = MemoryStore()
    first = await client.responses.create(model="tiny", input="Hi")
    assert first.store is True and first.id in store.saved
    second = await client.responses.create(model="tiny", input="And then?", previous_response_id=first.id)
    assert second.output_text == "Hello world"
    rendered = engine.rendered[-1]["messages"]
    assert [m["role"] for m in rendered] == ["user", "assistant", "user"]
    assert rendered[1]["content"] == "Hello world" and rendered[1]["reasoning_content"] == "Mull."
    unsaved = await client.responses.create(model="tiny", input="Hi", store=False)
    assert unsaved.store is False and unsaved.id not in store.saved
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="tiny", input="Hi", previous_response_id="resp_missing")
