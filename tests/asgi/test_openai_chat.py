"""/v1/chat/completions with a fake engine: answers, streaming, reasoning, tools, JSON, n, logprobs."""

from __future__ import annotations

import json
from pathlib import Path

from haven.engine.protocol import GenerationRequest, ReasoningDelta, TextDelta
from tests.asgi.openai_support import harness, sse_events
from tests.support.fake_engine import FakeEngine

USER = [{"role": "user", "content": "Hi"}]


async def test_non_stream_answer_with_reasoning_and_usage(tmp_path: Path) -> None:
    engine = FakeEngine(script=(ReasoningDelta("Think."), TextDelta("Hello"), TextDelta(" world")))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello world",
                "reasoning_content": "Think.",
                "reasoning": "Think.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    prompt_tokens = len(engine.submitted[0].prompt_tokens)
    assert body["usage"]["prompt_tokens"] == prompt_tokens
    assert body["usage"]["completion_tokens"] == 3
    assert body["usage"]["total_tokens"] == prompt_tokens + 3
    assert engine.rendered[0]["messages"] == [{"role": "user", "content": "Hi"}]


async def test_stream_has_role_reasoning_content_finish_usage_and_done(tmp_path: Path) -> None:
    engine = FakeEngine(script=(ReasoningDelta("Think."), TextDelta("Hel"), TextDelta("lo")))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": USER, "stream": True, "stream_options": {"include_usage": True}},
        )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-2]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Think.", "reasoning": "Think."},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 3
    assert all(e["usage"] is None for e in events[:-2])


async def test_sampling_fields_reach_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": USER,
                "temperature": 0.2,
                "top_p": 0.5,
                "top_k": 7,
                "min_p": 0.1,
                "repeat_penalty": 1.3,
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "seed": 42,
                "stop": "END",
                "max_completion_tokens": 12,
                "logit_bias": {"15": -100},
                "ignore_eos": True,
            },
        )
    assert r.status_code == 200, r.text
    s = engine.submitted[0].sampling
    assert s.ignore_eos is True
    assert (s.temperature, s.top_p, s.top_k, s.min_p, s.repeat_penalty) == (0.2, 0.5, 7, 0.1, 1.3)
    assert (s.presence_penalty, s.frequency_penalty, s.seed, s.max_tokens) == (0.5, -0.5, 42, 12)
    assert s.stop == ("END",) and s.logit_bias == {15: -100} and s.json_schema is None


async def test_ignore_eos_is_off_unless_asked_and_must_be_a_boolean(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        plain = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER})
        bad = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "ignore_eos": "sometimes"}
        )
    assert plain.status_code == 200 and engine.submitted[0].sampling.ignore_eos is False
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "ignore_eos"
    assert len(engine.submitted) == 1


async def test_n_choices_get_distinct_seeds(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "n": 3, "seed": 5})
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [g.sampling.seed for g in engine.submitted] == [5, 6, 7]
    assert body["usage"]["completion_tokens"] == 6
    assert body["usage"]["prompt_tokens"] == len(engine.submitted[0].prompt_tokens)


async def test_n_streams_are_interleaved_by_index(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "n": 2, "stream": True}
        )
    events = [e for e in sse_events(r.text) if e != "[DONE]"]
    for index in (0, 1):
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"][0]["index"] == index)
        assert text == "Hello world"
    finishes = [e["choices"][0]["index"] for e in events if e["choices"][0]["finish_reason"] == "stop"]
    assert sorted(finishes) == [0, 1]


async def test_json_schema_is_passed_to_the_engine(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    engine = FakeEngine(script=(TextDelta('{"a": 1}'),))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": USER,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
            },
        )
        r2 = await h.client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": USER, "response_format": {"type": "json_object"}},
        )
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"a": 1}
    assert engine.submitted[0].sampling.json_schema == schema
    assert r2.status_code == 200 and engine.submitted[1].sampling.json_schema == {}


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


async def test_auto_tool_call_parsed_from_qwen_text(tmp_path: Path) -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    engine = FakeEngine(script=(TextDelta(text),))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, "tools": [WEATHER]})
        s = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "tools": [WEATHER], "stream": True}
        )
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert engine.rendered[0]["tools"][0]["function"]["name"] == "get_weather"
    events = [e for e in sse_events(s.text) if e != "[DONE]"]
    [tool_delta] = [e["choices"][0]["delta"]["tool_calls"] for e in events if "tool_calls" in e["choices"][0]["delta"]]
    assert tool_delta[0]["index"] == 0 and tool_delta[0]["function"]["name"] == "get_weather"
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_named_tool_choice_forces_a_call_with_a_schema(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta('{"name": "get_weather", "arguments": {"city": "Oslo"}}'),))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "messages": USER,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
        )
    [call] = r.json()["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    schema = engine.submitted[0].sampling.json_schema
    assert schema is not None and schema["properties"]["name"] == {"const": "get_weather"}


async def test_tool_round_trip_messages_reach_the_template(tmp_path: Path) -> None:
    engine = FakeEngine()
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": messages, "tools": [WEATHER]}
        )
    assert r.status_code == 200, r.text
    sent = engine.rendered[0]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


async def test_logprobs_are_reported(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta("Hi"),))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "logprobs": True, "top_logprobs": 2}
        )
    [entry] = r.json()["choices"][0]["logprobs"]["content"]
    assert entry["token"] == "Hi" and entry["logprob"] == -0.5 and entry["bytes"] == [72, 105]
    assert [t["logprob"] for t in entry["top_logprobs"]] == [-0.5, -1.5]
    assert engine.submitted[0].sampling.logprobs == 2


async def test_reasoning_effort_none_disables_thinking(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "reasoning_effort": "none"}
        )
    assert engine.rendered[0]["enable_thinking"] is False


def _prompt_of(request: GenerationRequest) -> str:
    return bytes(request.prompt_tokens).decode()


async def test_developer_role_becomes_system_and_parts_are_joined(tmp_path: Path) -> None:
    engine = FakeEngine()
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": messages})
    assert r.status_code == 200
    assert _prompt_of(engine.submitted[0]) == "<|system|>Be brief.\n<|user|>ab\n<|assistant|>"


async def test_streamed_text_before_a_tool_call_is_not_held(tmp_path: Path) -> None:
    pieces = [
        "Let me",
        " check. <",
        "tool_call>",
        '{"name": "get_weather", "arguments": {"city": "Rome"}}',
        "</tool_call>",
    ]
    engine = FakeEngine(script=tuple(TextDelta(p) for p in pieces))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": USER, "tools": [WEATHER], "stream": True}
        )
    deltas = [e["choices"][0]["delta"] for e in sse_events(r.text) if e != "[DONE]"]
    assert deltas[1:3] == [{"content": "Let me"}, {"content": " check. "}]
    [calls] = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome"}
    assert not any("<tool_call>" in d.get("content", "") for d in deltas)
