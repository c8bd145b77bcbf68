"""The ``openai`` SDK: chat, stream, tools, ``parse``, Responses (plain and streamed), embeddings, and ten
turns of sending Haven's own replies back with ``model_dump()``."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from pydantic import BaseModel

from tests.e2e.conftest import HavenServer

HI = [{"role": "user", "content": "Hi"}]
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


class Answer(BaseModel):
    value: int
    sure: bool


@pytest.fixture(scope="module")
def client(compat_server: HavenServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=compat_server + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_chat_and_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="tiny", messages=HI, max_tokens=6, seed=1)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason in ("stop", "length") and reply.usage is not None
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=HI,
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 6
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")


def test_tools_forced_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "2+3?"}],
        tools=[ADD],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=512,  # room for the grammar's longest call (bounded whitespace and digits), see test_openai_e2e
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "add"  # type: ignore[union-attr]


def test_parse_structured_output(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model="tiny", messages=HI, response_format=Answer, max_tokens=512)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and isinstance(choice.message.parsed, Answer)


def test_responses_plain_and_streamed(client: openai.OpenAI) -> None:
    r = client.responses.create(model="tiny", input="Hi", max_output_tokens=6)
    assert r.status in ("completed", "incomplete") and isinstance(r.output_text, str)
    assert r.usage is not None and r.usage.output_tokens <= 6
    events = list(client.responses.create(model="tiny", input="Hi", max_output_tokens=6, stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="tiny", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0


def test_ten_turns_of_model_dump_replay(client: openai.OpenAI) -> None:
    """Haven never rejects its own output: every reply goes back as ``message.model_dump()``."""
    messages: list[dict[str, object]] = [{"role": "system", "content": "Be brief."}]
    for turn in range(10):
        messages.append({"role": "user", "content": f"Turn {turn}"})
        model = "r1" if turn % 2 else "tiny"  # R1 replies carry reasoning, sometimes with empty content
        reply = client.chat.completions.create(model=model, messages=messages, max_tokens=4, seed=turn)  # type: ignore[arg-type]
        messages.append(reply.choices[0].message.model_dump())
    assert len(messages) == 21
