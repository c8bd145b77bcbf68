"""The real ``openai`` package against a real ``haven serve`` on loopback (tiny random-weight models).

Random weights write gibberish, so assertions that need a particular output force it with a grammar
(``extra_body={"grammar": ...}``), a JSON schema or a forced tool choice - constrained sampling makes
even random weights produce exactly the shape the test checks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.e2e.conftest import HavenServer, start_haven_server

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Hello"}]
ENDLESS = 'root ::= "xy " root'  # never lets the model stop: the generation runs until max_tokens


@pytest.fixture(scope="module")
def client(haven_server: HavenServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=haven_server + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_chat_non_stream(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8, seed=1)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    again = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=8, seed=1)  # type: ignore[arg-type]
    assert again.choices[0].message.content == choice.message.content  # same seed, same answer


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"grammar": 'root ::= "Hello there, friend"'},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there, friend"[: len(text)] and text.startswith("Hello")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 6


def test_reasoning_is_split_into_reasoning_content(client: openai.OpenAI) -> None:
    grammar = 'root ::= "Let me think.</think>Hi!"'
    reply = client.chat.completions.create(
        model="r1",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=40,
        extra_body={"grammar": grammar},
    )
    message = reply.choices[0].message
    assert message.content == "Hi!"
    assert (message.model_extra or {})["reasoning_content"] == "Let me think."
    stream = client.chat.completions.create(
        model="r1",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=40,
        stream=True,
        extra_body={"grammar": grammar},
    )
    reasoning, content = "", ""
    for chunk in stream:
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
    assert (reasoning, content) == ("Let me think.", "Hi!")


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
        "required": ["color", "ok"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model="tiny",
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=200,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("model", ["tiny", "r1", "llama"])
def test_tool_call_round_trip(client: openai.OpenAI, model: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(
        model=model,
        messages=messages,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        # The forced call's grammar is finite: 51 characters of JSON plus up to 21 characters of whitespace at
        # each of its 8 gaps (llama.cpp's bound). A random-weight model can take all of it, one character per
        # token, so a budget under 219 tokens can end the call with "length" (it did, once in CI at 60).
        max_tokens=256,
        extra_body={"reasoning_effort": "none"},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Oslo")  # type: ignore[union-attr]
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'})
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], max_tokens=5)
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_embeddings(client: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; this checks both encodings agree.
    result = client.embeddings.create(model="tiny", input=["hello", "world"])
    assert [d.index for d in result.data] == [0, 1]
    dims = len(result.data[0].embedding)
    assert dims > 0 and len(result.data[1].embedding) == dims
    assert result.data[0].embedding != result.data[1].embedding
    plain = client.embeddings.create(model="tiny", input="hello", encoding_format="float")
    assert plain.data[0].embedding == pytest.approx(result.data[0].embedding, rel=1e-5)
    assert result.usage.prompt_tokens > 0


def test_model_listing_and_unknown_model(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"tiny:latest", "r1:latest", "llama:latest"} <= ids
    assert client.models.retrieve("tiny:latest").owned_by == "haven"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=HELLO)  # type: ignore[arg-type]
    assert "model no-such-model:latest is not in the store" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    # An unknown field is ignored and named (HAVEN_STRICT_REQUESTS=true would refuse it).
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=HELLO, max_tokens=2, extra_body={"frobnicate": 1}  # type: ignore[arg-type]
    )
    assert raw.headers["x-haven-ignored-fields"] == "frobnicate"


def test_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model="tiny", prompt="Once upon", max_tokens=20, seed=3, echo=True, extra_body={"grammar": 'root ::= " a time"'}
    )
    assert reply.choices[0].text == "Once upon a time"


# --- a server with one slot and no queue -----------------------------------------------------------------


@pytest.fixture(scope="module")
def single_slot(make_test_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    home: Path = tmp_path_factory.mktemp("haven-single")
    with start_haven_server(
        home, {"tiny": make_test_model()}, default_model="tiny", parallel=1, max_queue=0, context_length=4096
    ) as url:
        yield url


def _slots_in_use(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('haven_slots_in_use{model="tiny:latest"}'):
            return float(line.split()[-1])
    return -1.0


def test_queue_full_is_429_then_disconnect_frees_the_slot(single_slot: HavenServer) -> None:
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 3000, "stream": True, "grammar": ENDLESS}
    with openai.OpenAI(base_url=single_slot + "/v1", api_key="x", max_retries=0, timeout=30) as client:
        client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=1)  # type: ignore[arg-type]
        with (
            httpx.Client(base_url=single_slot, timeout=30) as raw,
            raw.stream("POST", "/v1/chat/completions", json=body) as r,
        ):
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
            assert _slots_in_use(single_slot) == 1.0
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=4)  # type: ignore[arg-type]
            assert int(info.value.response.headers["retry-after"]) >= 1
            assert info.value.code == "queue_full"
        # The stream was dropped after one chunk of a 3000-token generation: its slot must be free again.
        deadline = time.monotonic() + 5
        while _slots_in_use(single_slot) != 0.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _slots_in_use(single_slot) == 0.0
        started = time.monotonic()
        reply = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=4)  # type: ignore[arg-type]
        assert reply.choices[0].finish_reason in ("stop", "length")
        assert time.monotonic() - started < 5
