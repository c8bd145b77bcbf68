"""The real `ollama` Python package parses every Haven /api response (in-process, fake engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import ollama
import pytest

from tests.asgi.ollama_fakes import FakeEngine, ollama_harness


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def oclient(tmp_path: Path, engine: FakeEngine) -> AsyncIterator[ollama.AsyncClient]:
    async with ollama_harness(tmp_path, engine) as h:
        client = ollama.AsyncClient(host="http://127.0.0.1:11434", transport=httpx.ASGITransport(app=h.app))
        yield client
        await client._client.aclose()


MESSAGES = [{"role": "user", "content": "hi"}]


async def test_chat_non_stream_and_stream(oclient: ollama.AsyncClient) -> None:
    reply = await oclient.chat(model="tiny:latest", messages=MESSAGES, think=True)
    assert (reply.message.content, reply.message.thinking) == ("Hello world", "Let me think.")
    assert (reply.done, reply.done_reason, reply.eval_count, reply.prompt_eval_count) == (True, "stop", 3, 7)
    parts = [part async for part in await oclient.chat(model="tiny:latest", messages=MESSAGES, stream=True)]
    assert "".join(p.message.content or "" for p in parts) == "Hello world"
    assert "".join(p.message.thinking or "" for p in parts) == "Let me think."
    assert parts[-1].done is True


async def test_generate_and_options(oclient: ollama.AsyncClient, engine: FakeEngine) -> None:
    reply = await oclient.generate(model="tiny:latest", prompt="hi", options={"temperature": 0, "num_predict": 5})
    assert reply.response == "Hello world" and reply.thinking == "Let me think."
    sampling = engine.submitted[-1].sampling
    assert (sampling.temperature, sampling.max_tokens) == (0, 5)


async def test_format_schema_from_pydantic(oclient: ollama.AsyncClient, engine: FakeEngine) -> None:
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    await oclient.chat(model="tiny:latest", messages=MESSAGES, format=Person.model_json_schema())
    assert engine.submitted[-1].sampling.json_schema == Person.model_json_schema()


async def test_tool_calls_parse_into_ollama_types(oclient: ollama.AsyncClient, engine: FakeEngine) -> None:
    from haven.engine.protocol import Finished, TextDelta, Usage

    engine.script = (
        TextDelta('<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>'),
        Finished("stop", Usage(3, 9)),
    )

    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
          a: first
          b: second
        """
        return a + b

    reply = await oclient.chat(model="tiny:latest", messages=MESSAGES, tools=[add])
    (call,) = reply.message.tool_calls or []
    assert (call.function.name, dict(call.function.arguments)) == ("add", {"a": 1, "b": 2})
    assert engine.rendered[-1]["tools"][0]["function"]["name"] == "add"


async def test_embed_list_show_ps_delete(oclient: ollama.AsyncClient, engine: FakeEngine) -> None:
    embedded = await oclient.embed(model="tiny:latest", input=["a", "b"])
    assert [list(v) for v in embedded.embeddings] == [[0.6, 0.8], [0.6, 0.8]]
    listed = await oclient.list()
    assert [m.model for m in listed.models] == ["tiny:latest"]
    assert listed.models[0].details is not None and listed.models[0].details.parameter_size == "494.03M"
    shown = await oclient.show("tiny:latest")
    assert shown.details is not None and shown.details.family == "qwen2"
    running = await oclient.ps()
    assert [m.model for m in running.models] == ["tiny:latest"] and running.models[0].context_length == 4096
    assert (await oclient.delete("tiny:latest")).status == "success"
    assert (await oclient.list()).models == []


async def test_unknown_model_raises_response_error_404(oclient: ollama.AsyncClient) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        await oclient.chat(model="nope", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.error.startswith("model nope:latest is not in the store")
