"""Every error path is a 4xx, never a 500: lone surrogates, deep nesting, oversized conversations and pull
references, over the app with the fake engine (the real engine's side is in tests/e2e/test_hardening_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.asgi.openai_support import harness

S = "a\ud800b"  # a lone surrogate: legal in JSON ("\\ud800"), not encodable as UTF-8
ENDPOINTS = {
    "/v1/chat/completions": {"model": "tiny:latest", "messages": [{"role": "user", "content": S}]},
    "/v1/completions": {"model": "tiny:latest", "prompt": S},
    "/v1/embeddings": {"model": "tiny:latest", "input": S},
    "/api/chat": {"model": "tiny:latest", "messages": [{"role": "user", "content": S}], "stream": False},
    "/api/generate": {"model": "tiny:latest", "prompt": S, "stream": False},
    "/api/embed": {"model": "tiny:latest", "input": S},
    "/api/embeddings": {"model": "tiny:latest", "prompt": S},
}


def _post_json(body: object) -> dict[str, object]:
    # json.dumps keeps the surrogate as the escape "\ud800" (ensure_ascii), exactly what a client sends.
    return {"content": json.dumps(body), "headers": {"content-type": "application/json"}}


@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_a_lone_surrogate_is_a_400_on_every_endpoint(tmp_path: Path, path: str) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post(path, **_post_json(ENDPOINTS[path]))  # type: ignore[arg-type]
        assert r.status_code == 400, r.text
        assert "surrogate" in r.text


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/show", "/v1/chat/completions"])
async def test_json_nested_100000_deep_is_a_400(tmp_path: Path, path: str) -> None:
    deep = '{"model": "tiny:latest", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    async with harness(tmp_path) as h:
        r = await h.client.post(path, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text[:300]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_deep_tool_call_arguments_are_never_a_500(tmp_path: Path, path: str) -> None:
    arguments = '{"a": ' * 5_000 + "1" + "}" * 5_000  # as a JSON string (OpenAI) and as an object (Ollama)
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "ARGS"}}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": [call]}]
    body = json.dumps({"model": "tiny:latest", "messages": messages, "stream": False})
    body = body.replace('"ARGS"', json.dumps(arguments) if path.startswith("/v1") else arguments)
    async with harness(tmp_path) as h:
        r = await h.client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code in (200, 400), r.text[:300]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_the_many_message_chat_is_a_400_naming_the_limit(tmp_path: Path, path: str) -> None:
    body = {"model": "tiny:latest", "messages": [{"role": "user", "content": "a"}] * 5_000, "stream": False}
    async with harness(tmp_path) as h:
        r = await h.client.post(path, json=body)
        assert r.status_code == 400 and "5,000 messages" in r.text and "accepts at most 4,096" in r.text
        assert not h.engine().submitted


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_more_messages_than_any_api_accepts_is_a_400_before_any_work(tmp_path: Path, path: str) -> None:
    body = {"model": "tiny:latest", "messages": [{"role": "user", "content": "a"}] * 10_001, "stream": False}
    async with harness(tmp_path) as h:
        r = await h.client.post(path, json=body)
        assert r.status_code == 400 and "at most 10000 items" in r.text, r.text[:300]
        assert not h.loader.engines  # refused while parsing: no model was even loaded


@pytest.mark.parametrize("stream", [False, True])
async def test_a_100000_character_pull_reference_is_one_clean_error(tmp_path: Path, stream: bool) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/api/pull", json={"model": "hf.co/owner/" + "r" * 100_000, "stream": stream})
        assert r.status_code in (200, 400), r.text[:300]
        last = json.loads(r.text.strip().splitlines()[-1])
        assert "longer than 1,024 characters" in last["error"] and len(last["error"]) < 300
