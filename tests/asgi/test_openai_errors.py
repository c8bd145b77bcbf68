"""Every bad request to /v1 gets a 4xx with OpenAI's error shape and a message naming the problem;
nothing is submitted to the engine and the server keeps serving."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from haven.errors import ModelLoadError
from tests.asgi.openai_support import harness
from tests.support.fake_engine import FakeEngine, FakeLoader

USER = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": USER, **fields}


BAD_CHAT: list[tuple[str, Any, str, str | None]] = [
    # (case, body, message fragment, param)
    ("wrong type", chat(temperature="hot"), "temperature: Input should be a valid number", "temperature"),
    ("temperature range", chat(temperature=3), "temperature: Input should be less than or equal to 2", "temperature"),
    ("missing model", {"messages": USER}, "'model' is a required property", "model"),
    ("empty messages", chat(messages=[]), "messages: List should have at least 1 item", "messages"),
    ("no content", chat(messages=[{"role": "user"}]), "messages[0] (user) has no content", "messages"),
    ("empty content", chat(messages=[{"role": "user", "content": "  "}]), "messages[0] (user) has no content", None),
    (
        "tool without call",
        chat(messages=[*USER, {"role": "tool", "tool_call_id": "c1", "content": "x"}]),
        "a tool message must answer a tool call of the preceding assistant message",
        None,
    ),
    ("only system", chat(messages=[{"role": "system", "content": "x"}]), "at least one user message", None),
    ("bad role", chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role: Input should be", None),
    (
        "image part",
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        "content parts of type 'image_url' are not supported",
        None,
    ),
    ("absurd max_tokens", chat(max_tokens=10**9), "max_tokens: Input should be less than or equal to", "max_tokens"),
    ("zero max_tokens", chat(max_tokens=0), "max_tokens: Input should be greater than or equal to 1", "max_tokens"),
    ("absurd n", chat(n=1000), "n: Input should be less than or equal to 16", "n"),
    ("absurd top_logprobs", chat(logprobs=True, top_logprobs=50), "top_logprobs: Input should be less than", None),
    ("top_logprobs alone", chat(top_logprobs=2), "top_logprobs requires logprobs to be true", None),
    ("bad logit_bias key", chat(logit_bias={"abc": 1}), "logit_bias keys must be token ids", None),
    ("too many stops", chat(stop=["a"] * 17), "at most 16 stop sequences", None),
    (
        "json_schema without schema",
        chat(response_format={"type": "json_schema"}),
        "needs a 'json_schema' object",
        None,
    ),
    (
        "unknown tool_choice",
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
        "tool_choice names 'g', which is not in tools",
        None,
    ),
    ("stream_options without stream", chat(stream_options={"include_usage": True}), "only allowed when stream", None),
]


@pytest.mark.parametrize(("case", "body", "fragment", "param"), BAD_CHAT, ids=[c[0] for c in BAD_CHAT])
async def test_bad_chat_requests_are_400_with_a_clear_message(
    tmp_path: Path, case: str, body: dict[str, Any], fragment: str, param: str | None
) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json=body)
        error = r.json()["error"]
        assert r.status_code == 400, r.text
        assert fragment in error["message"]
        assert error["type"] == "invalid_request_error"
        if param is not None:
            assert error["param"] == param
        assert engine.submitted == []
        ok = await h.client.post("/v1/chat/completions", json=chat())
        assert ok.status_code == 200  # the server keeps serving


async def test_malformed_json_is_400(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            content=b'{"model": "tiny", "messages": [',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("the request body is not valid JSON")
        r = await h.client.post("/v1/chat/completions", json=[1, 2])
        assert r.status_code == 400 and "must be a JSON object" in r.json()["error"]["message"]


async def test_server_side_limits_and_schema_checks(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine, max_tokens_limit=100) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(max_tokens=101))
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "max_tokens is 101; this server allows at most 100 tokens per request."
        bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
        r = await h.client.post("/v1/chat/completions", json=chat(response_format=bad_schema))
        assert r.status_code == 400
        assert "response_format.json_schema.schema is not a valid JSON schema" in r.json()["error"]["message"]
        r = await h.client.post(
            "/v1/chat/completions", json=chat(grammar="root ::= [a]", response_format={"type": "json_object"})
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "grammar"
        bad_args = [
            *USER,
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "x"},
        ]
        r = await h.client.post("/v1/chat/completions", json=chat(messages=bad_args))
        assert r.status_code == 400 and "arguments is not valid JSON" in r.json()["error"]["message"]
    assert engine.submitted == []


async def test_unknown_model_is_404_and_nothing_loads(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for path, body in (
            ("/v1/chat/completions", chat(model="nope")),
            ("/v1/completions", {"model": "nope", "prompt": "x"}),
            ("/v1/embeddings", {"model": "nope", "input": "x"}),
        ):
            r = await h.client.post(path, json=body)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "model_not_found"
            assert "model nope:latest is not in the store" in r.json()["error"]["message"]
        r = await h.client.get("/v1/models/nope")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert h.loader.calls == []


async def test_load_failure_is_503(tmp_path: Path) -> None:
    loader = FakeLoader(error=ModelLoadError("model 'tiny:latest' could not be loaded: out of memory."))
    async with harness(tmp_path, loader=loader) as h:
        r = await h.client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 503
    assert r.json()["error"] == {
        "message": "model 'tiny:latest' could not be loaded: out of memory.",
        "type": "server_error",
        "param": None,
        "code": "model_load_failed",
    }


async def test_queue_full_is_429_with_retry_after(tmp_path: Path) -> None:
    engine = FakeEngine(parallel=1, max_queue=0, gate=asyncio.Event())
    async with harness(tmp_path, engine=engine) as h:
        held = asyncio.ensure_future(h.client.post("/v1/chat/completions", json=chat()))
        while not engine.active:
            await asyncio.sleep(0.01)
        r = await h.client.post("/v1/chat/completions", json=chat())
        assert r.status_code == 429
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["type"] == "rate_limit_error" and r.json()["error"]["code"] == "queue_full"
        r = await h.client.post("/v1/chat/completions", json=chat(n=2))  # n > free slots: also refused
        assert r.status_code == 429
        assert engine.gate is not None
        engine.gate.set()
        assert (await held).status_code == 200


async def test_n_partially_queued_is_cancelled_when_refused(tmp_path: Path) -> None:
    engine = FakeEngine(parallel=1, max_queue=0, gate=asyncio.Event())
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(n=2))
        assert r.status_code == 429
        assert len(engine.submitted) == 1 and engine.active == set()  # the first one was cancelled


async def test_completion_and_embedding_errors(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "suffix": "y"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "suffix"
        r = await h.client.post("/v1/completions", json={"model": "tiny", "prompt": []})
        assert r.status_code == 400 and "prompt must not be an empty list" in r.json()["error"]["message"]
        r = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": ""})
        assert r.status_code == 400 and "input strings must not be empty" in r.json()["error"]["message"]
        r = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": "x", "dimensions": 99})
        assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
        r = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": "x" * 5000})
        assert r.status_code == 400 and "more than the model's context of 4096" in r.json()["error"]["message"]


async def test_unknown_route_and_method(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/v1/nothing")
        assert r.status_code == 404 and r.json()["error"]["message"] == "no route GET /v1/nothing."
        r = await h.client.get("/v1/chat/completions")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


async def test_a_failing_choice_cancels_the_other_choices(tmp_path: Path) -> None:
    from haven.engine.protocol import Finished, TextDelta, Usage

    def script(request: Any) -> Any:
        if request.sampling.seed == 1:  # the second choice fails at once
            return (Finished("error", Usage(1, 0), error="llama_decode failed"),)
        return tuple(TextDelta("t") for _ in range(1000))

    engine = FakeEngine(script=script, delay=0.01)
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(n=2, seed=0))
    assert r.status_code == 500 and r.json()["error"]["message"] == "llama_decode failed"
    assert r.json()["error"]["code"] == "engine_error"
    assert len(engine.cancelled) == 1 and engine.active == set()
