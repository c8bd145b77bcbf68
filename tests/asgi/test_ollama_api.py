"""The Ollama API (``/api/*``) in-process, over a scripted fake engine: response shapes and every error path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from haven.engine.protocol import Finished, TextDelta, Usage
from haven.errors import ModelNotFoundError, QueueFullError
from haven.server.ollama import serving
from haven.server.ollama.protocol import ChatRequest
from haven.server.ollama.router import router
from haven.settings import Settings
from tests.asgi.ollama_fakes import INFO, FakeEngine, FakeManager, make_manager


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def manager(engine: FakeEngine) -> FakeManager:
    return make_manager(engine)


@pytest.fixture
async def client(manager: FakeManager) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.settings = Settings(max_tokens_limit=1000)
    app.state.model_manager = manager
    app.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        yield c


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


CHAT = {"model": "tiny:latest", "messages": [{"role": "user", "content": "hi"}]}


# --- chat --------------------------------------------------------------------------------------------


async def test_chat_non_stream_has_ollama_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/chat", json={**CHAT, "stream": False})
    assert response.status_code == 200
    body = response.json()
    assert body["message"] == {"role": "assistant", "content": "Hello world", "thinking": "Let me think."}
    assert body["model"] == "tiny:latest" and body["done"] is True and body["done_reason"] == "stop"
    assert body["created_at"].endswith("Z")
    assert (body["prompt_eval_count"], body["eval_count"]) == (7, 3)
    assert (body["prompt_eval_duration"], body["eval_duration"]) == (500_000_000, 250_000_000)
    assert isinstance(body["total_duration"], int) and isinstance(body["load_duration"], int)


async def test_chat_streams_ndjson_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/chat", json=CHAT)
    assert response.headers["content-type"] == "application/x-ndjson"
    chunks = lines(response)
    assert [c["message"].get("thinking") for c in chunks[:-1]] == ["Let me think.", None, None]
    assert [c["message"]["content"] for c in chunks] == ["", "Hello", " world", ""]
    assert [c["done"] for c in chunks] == [False, False, False, True]
    assert chunks[-1]["eval_count"] == 3 and chunks[-1]["done_reason"] == "stop"


async def test_think_false_disables_thinking_and_hides_reasoning(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = (await client.post("/api/chat", json={**CHAT, "stream": False, "think": False})).json()
    assert body["message"] == {"role": "assistant", "content": "Hello world"}
    assert engine.rendered[-1]["enable_thinking"] is False
    assert engine.submitted[-1].reasoning_opened is False


async def test_length_finish_reports_done_reason_length(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = (TextDelta("a"), Finished("length", Usage(1, 1)))
    body = (await client.post("/api/chat", json={**CHAT, "stream": False})).json()
    assert body["done_reason"] == "length"


async def test_options_and_format_reach_the_sampler(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    options = {
        "temperature": 0.2,
        "top_p": 0.5,
        "top_k": 7,
        "min_p": 0.1,
        "num_predict": 12,
        "seed": 42,
        "stop": "END",
        "repeat_penalty": 1.2,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "num_gpu": 99,  # Ollama runner option: ignored, as Ollama ignores unknown options
    }
    response = await client.post("/api/chat", json={**CHAT, "stream": False, "options": options, "format": schema})
    assert response.status_code == 200
    sampling = engine.submitted[-1].sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (0.2, 0.5, 7, 0.1)
    assert (sampling.max_tokens, sampling.seed, sampling.stop) == (12, 42, ("END",))
    assert (sampling.repeat_penalty, sampling.presence_penalty, sampling.frequency_penalty) == (1.2, 0.5, 0.25)
    assert sampling.json_schema == schema
    await client.post("/api/chat", json={**CHAT, "stream": False, "format": "json", "options": {"num_predict": -1}})
    assert engine.submitted[-1].sampling.json_schema == {}
    assert engine.submitted[-1].sampling.max_tokens is None


@pytest.mark.parametrize(
    ("keep_alive", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), (60, 60.0), ("120", 120.0), (-1, -1.0), ("-1m", -1.0)],
)
async def test_keep_alive_durations(
    client: httpx.AsyncClient, manager: FakeManager, keep_alive: Any, seconds: float
) -> None:
    response = await client.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": keep_alive})
    assert response.status_code == 200
    assert manager.keep_alives == [seconds]


async def test_tool_call_is_parsed_into_message_tool_calls(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = (
        TextDelta('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
        Finished("stop", Usage(3, 9)),
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    for stream in (False, True):
        response = await client.post("/api/chat", json={**CHAT, "stream": stream, "tools": tools})
        message = lines(response)[-1]["message"]
        assert message["content"] == ""
        assert message["tool_calls"] == [
            {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
        ]
    assert engine.rendered[-1]["tools"] == tools


async def test_tool_results_round_trip_into_the_template(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "w", "arguments": {"c": "P"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "w"},
    ]
    response = await client.post("/api/chat", json={"model": "tiny:latest", "messages": messages, "stream": False})
    assert response.status_code == 200
    rendered = engine.rendered[-1]["messages"]
    assert rendered[1]["tool_calls"] == [{"type": "function", "function": {"name": "w", "arguments": {"c": "P"}}}]
    assert rendered[2] == {"role": "tool", "content": "sunny", "name": "w"}


# --- error paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"messages": []}', "model"),
        (b'{"model": "", "messages": []}', "model"),
        (b'{"model": "tiny:latest", "messages": "hi"}', "messages"),
        (b'{"model": "tiny:latest", "messages": [{"role": "wizard", "content": "x"}]}', "messages.0.role"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "stream": "yes"}', "stream"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "options": {"temperature": "hot"}}', "temperature"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "options": {"top_p": 2}}', "options.top_p"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "options": {"num_predict": 5000}}', "at most 1000"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "options": "fast"}', "options"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "options": {"stop": [""]}}', "stop"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "format": "xml"}', "format"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "format": {"type": "banana"}}', "not a valid JSON"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "keep_alive": "soon"}', "not a duration"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "keep_alive": "5 m"}', "not a duration"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "keep_alive": true}', "keep_alive"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user"}], "think": "maybe"}', "think"),
        (b'{"model": "tiny:latest", "messages": [{"role": "user", "images": ["aGk="]}]}', "images"),
    ],
)
async def test_bad_chat_requests_are_400_with_ollama_error(
    client: httpx.AsyncClient, engine: FakeEngine, body: bytes, fragment: str
) -> None:
    response = await client.post("/api/chat", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["error"]
    assert fragment in response.json()["error"]
    assert engine.submitted == []
    # The server keeps serving.
    assert (await client.post("/api/chat", json={**CHAT, "stream": False})).status_code == 200


async def test_unknown_model_is_404_on_every_endpoint(client: httpx.AsyncClient, manager: FakeManager) -> None:
    for path, body in [
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}], "stream": False}),
        ("/api/generate", {"model": "nope", "prompt": "x"}),
        ("/api/embed", {"model": "nope", "input": "x"}),
        ("/api/embeddings", {"model": "nope", "prompt": "x"}),
        ("/api/show", {"model": "nope"}),
    ]:
        response = await client.post(path, json=body)
        assert response.status_code == 404, path
        assert response.json() == {"error": "model 'nope' not found; `haven models list` shows the local models."}
    response = await client.request("DELETE", "/api/delete", json={"model": "nope"})
    assert response.status_code == 404
    assert list(manager.store.entries) == ["tiny:latest"]


async def test_queue_full_is_429_with_retry_after(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.submit_error = QueueFullError("the queue for tiny:latest is full; retry shortly.", retry_after=2.5)
    response = await client.post("/api/chat", json=CHAT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json() == {"error": "the queue for tiny:latest is full; retry shortly."}


async def test_engine_error_mid_stream_ends_with_error_line(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = (TextDelta("partial"), Finished("error", Usage(1, 1), error="llama_decode failed"))
    chunks = lines(await client.post("/api/chat", json=CHAT))
    assert chunks[0]["message"]["content"] == "partial"
    assert chunks[-1] == {"error": "llama_decode failed"}
    response = await client.post("/api/chat", json={**CHAT, "stream": False})
    assert response.status_code == 500 and response.json() == {"error": "llama_decode failed"}


async def test_dropping_the_stream_cancels_the_generation(engine: FakeEngine, manager: FakeManager) -> None:
    service = serving.OllamaService(manager, Settings())
    run = await service.start_chat(ChatRequest.model_validate(CHAT))
    chunks = service.chunks(run, "tiny:latest", kind="chat")
    first = await chunks.__anext__()
    assert first["message"]["thinking"] == "Let me think."
    await chunks.aclose()  # what Starlette does when the client disconnects
    assert engine.handles[-1].cancelled is True


# --- generate ------------------------------------------------------------------------------------


async def test_generate_non_stream_and_stream(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    body = (await client.post("/api/generate", json={"model": "tiny:latest", "prompt": "hi", "stream": False})).json()
    assert (body["response"], body["thinking"], body["done"]) == ("Hello world", "Let me think.", True)
    assert engine.rendered[-1]["messages"] == [{"role": "user", "content": "hi"}]
    chunks = lines(await client.post("/api/generate", json={"model": "tiny:latest", "prompt": "hi", "system": "S"}))
    assert "".join(c["response"] for c in chunks) == "Hello world"
    assert engine.rendered[-1]["messages"][0] == {"role": "system", "content": "S"}


async def test_generate_raw_sends_the_prompt_verbatim(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    rendered_before = len(engine.rendered)
    await client.post("/api/generate", json={"model": "tiny:latest", "prompt": "<s>raw", "raw": True, "stream": False})
    assert len(engine.rendered) == rendered_before
    assert list(engine.submitted[-1].prompt_tokens) == [ord(c) for c in "<s>raw"]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [({"template": "{{ .Prompt }}"}, "templates"), ({"suffix": "x"}, "suffix"), ({"images": ["aGk="]}, "images")],
)
async def test_generate_unsupported_features_are_400(
    client: httpx.AsyncClient, engine: FakeEngine, extra: dict[str, Any], fragment: str
) -> None:
    response = await client.post("/api/generate", json={"model": "tiny:latest", "prompt": "hi", **extra})
    assert response.status_code == 400 and fragment in response.json()["error"]
    assert engine.submitted == []


async def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: httpx.AsyncClient, manager: FakeManager) -> None:
    body = (await client.post("/api/generate", json={"model": "tiny:latest"})).json()
    assert (body["done"], body["done_reason"], body["response"]) == (True, "load", "")
    assert manager.is_loaded
    body = (await client.post("/api/generate", json={"model": "tiny:latest", "keep_alive": 0})).json()
    assert body["done_reason"] == "unload" and manager.unloaded == ["tiny:latest"]
    body = (await client.post("/api/chat", json={"model": "tiny:latest", "messages": []})).json()
    assert body["done_reason"] == "load" and body["message"] == {"role": "assistant", "content": ""}


# --- embeddings -------------------------------------------------------------------------------------


async def test_embed_normalizes_and_counts_tokens(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/embed", json={"model": "tiny:latest", "input": ["ab", "cde"]})).json()
    assert body["embeddings"] == [[0.6, 0.8], [0.6, 0.8]]
    assert body["prompt_eval_count"] == 5 and body["model"] == "tiny:latest"
    body = (await client.post("/api/embed", json={"model": "tiny:latest", "input": "x", "dimensions": 1})).json()
    assert body["embeddings"] == [[1.0]]


async def test_legacy_embeddings_endpoint(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/embeddings", json={"model": "tiny:latest", "prompt": "ab"})).json()
    assert body == {"embedding": [3.0, 4.0]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "tiny:latest"}, "input"),
        ({"model": "tiny:latest", "input": 5}, "input"),
        ({"model": "tiny:latest", "input": ["x"] * 3000}, "at most 2048"),
        ({"model": "tiny:latest", "input": "x" * 5000, "truncate": False}, "5000 tokens"),
        ({"model": "tiny:latest", "input": "x", "dimensions": 0}, "dimensions"),
    ],
)
async def test_bad_embed_requests(client: httpx.AsyncClient, body: dict[str, Any], fragment: str) -> None:
    response = await client.post("/api/embed", json=body)
    assert response.status_code == 400 and fragment in response.json()["error"]


# --- models ------------------------------------------------------------------------------------------


async def test_tags_lists_store_models(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/tags")).json()
    assert body == {
        "models": [
            {
                "name": "tiny:latest",
                "model": "tiny:latest",
                "modified_at": "2023-11-14T22:13:20Z",
                "size": 2_000_000,
                "digest": "ab" * 32,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "qwen2",
                    "families": ["qwen2"],
                    "parameter_size": "494.03M",
                    "quantization_level": "Q8_0",
                },
            }
        ]
    }


async def test_ps_lists_loaded_models(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/ps")).json() == {"models": []}
    await client.post("/api/generate", json={"model": "tiny:latest"})
    (model,) = (await client.get("/api/ps")).json()["models"]
    assert (model["name"], model["size"], model["context_length"]) == ("tiny:latest", 123_456_789, 4096)
    assert model["expires_at"] == "2030-03-17T17:46:40Z" and model["digest"] == "ab" * 32


async def test_show_uses_loaded_info(client: httpx.AsyncClient) -> None:
    body = (await client.post("/api/show", json={"model": "tiny:latest"})).json()
    assert body["details"]["family"] == "qwen2" and body["capabilities"] == ["completion"]
    await client.post("/api/generate", json={"model": "tiny:latest"})
    body = (await client.post("/api/show", json={"name": "tiny:latest"})).json()
    assert body["capabilities"] == ["completion", "tools", "thinking"]
    assert body["template"] == INFO.chat_template
    assert body["model_info"]["qwen2.context_length"] == 2048
    response = await client.post("/api/show", json={})
    assert response.status_code == 400 and response.json() == {"error": "model is required."}


async def test_delete_unloads_then_removes(client: httpx.AsyncClient, manager: FakeManager) -> None:
    await client.post("/api/generate", json={"model": "tiny:latest"})
    response = await client.request("DELETE", "/api/delete", json={"model": "tiny"})  # short name
    assert response.status_code == 200
    assert manager.unloaded == ["tiny:latest"] and manager.store.removed == ["tiny:latest"]
    assert (await client.get("/api/tags")).json() == {"models": []}


async def test_version(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/version")).json()
    assert body["version"] == serving.OLLAMA_COMPAT_VERSION


async def test_pull_events_report_progress_then_success() -> None:
    calls: list[str] = []

    def fake_pull(store: Any, ref: str, settings: Settings, progress: Any) -> None:
        calls.append(ref)
        progress("pulling 3f2a", completed=50, total=100)
        progress("pulling 3f2a", completed=100, total=100)

    events = [e async for e in serving.pull_events(fake_pull, object(), "hf.co/x/y:Q4_K_M", Settings())]
    assert calls == ["hf.co/x/y:Q4_K_M"]
    assert events == [
        {"status": "pulling 3f2a", "total": 100, "completed": 50},
        {"status": "pulling 3f2a", "total": 100, "completed": 100},
    ]


async def test_pull_errors_propagate() -> None:
    def failing_pull(store: Any, ref: str, settings: Settings, progress: Any) -> None:
        raise ModelNotFoundError("no such repository")

    with pytest.raises(ModelNotFoundError):
        async for _ in serving.pull_events(failing_pull, object(), "x", Settings()):
            pass


def test_openapi_documents_request_bodies() -> None:
    app = FastAPI()
    app.include_router(router)
    paths = app.openapi()["paths"]
    assert {"/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/ps", "/api/delete"} <= set(paths)
    chat = paths["/api/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert chat["required"] == ["model"]
    assert chat["properties"]["messages"]["items"]["properties"]["role"]["enum"] == [
        "system",
        "user",
        "assistant",
        "tool",
    ]
    assert "$ref" not in json.dumps(paths["/api/chat"])  # inlined: no dangling references


async def test_streamed_answer_with_tools_shows_text_then_the_call(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = (
        TextDelta("Checking"),
        TextDelta(" now.\n<tool"),
        TextDelta('_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'),
        Finished("stop", Usage(3, 9)),
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    chunks = lines(await client.post("/api/chat", json={**CHAT, "tools": tools}))
    assert [c["message"]["content"] for c in chunks[:-1]] == ["Checking", " now.\n"]
    assert "<tool" not in "".join(c["message"]["content"] for c in chunks)
    assert chunks[-1]["done"] is True
    assert chunks[-1]["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Oslo"}}}
    ]
