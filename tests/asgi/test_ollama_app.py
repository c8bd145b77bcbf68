"""The Ollama routes inside the real app (create_app, ModelManager, middleware) over the shared fakes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from haven.engine.protocol import ReasoningDelta, TextDelta
from tests.asgi.openai_support import harness
from tests.support.fake_engine import FakeEngine, FakeLoader, failing_loader, fake_info

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def test_chat_loads_lazily_and_ps_reports_it(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        assert (await h.client.get("/api/ps")).json() == {"models": []}
        body = (await h.client.post("/api/chat", json=CHAT)).json()
        assert body["message"] == {"role": "assistant", "content": "Hello world"}
        assert h.loader.calls == ["tiny:latest"]
        (model,) = (await h.client.get("/api/ps")).json()["models"]
        assert model["name"] == "tiny:latest" and model["context_length"] == 4096
        assert model["expires_at"].endswith("Z") and model["expires_at"][:2] == "20"
        body = (await h.client.post("/api/generate", json={"model": "tiny", "keep_alive": 0})).json()
        assert body["done_reason"] == "unload"
        assert (await h.client.get("/api/ps")).json() == {"models": []}
        assert h.engine().closed is True


async def test_keep_alive_forever_has_no_expiry(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.client.post("/api/chat", json={**CHAT, "keep_alive": -1})
        (model,) = (await h.client.get("/api/ps")).json()["models"]
        assert model["expires_at"] == "2318-01-01T00:00:00Z"


async def test_tags_list_the_store(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        models = (await h.client.get("/api/tags")).json()["models"]
        assert [m["name"] for m in models] == ["other:latest", "tiny:latest"]
        assert models[0]["modified_at"] == "2026-01-02T00:00:00Z" and models[0]["size"] == 1_000_000


async def test_thinking_through_the_real_generation_service(tmp_path: Path) -> None:
    engine = FakeEngine(
        info=fake_info("tiny:latest", supports_thinking=True),
        script=(ReasoningDelta("think"), TextDelta("answer")),
    )
    async with harness(tmp_path, engine=engine) as h:
        body = (await h.client.post("/api/chat", json=CHAT)).json()
        assert body["message"] == {"role": "assistant", "content": "answer", "thinking": "think"}
        assert body["eval_count"] == 2 and body["prompt_eval_count"] == len("<|user|>hi\n<|assistant|>")
        metrics = (await h.client.get("/metrics")).text
        assert 'model="tiny:latest"' in metrics


async def test_load_failure_is_503(tmp_path: Path) -> None:
    async with harness(tmp_path, loader=failing_loader()) as h:
        response = await h.client.post("/api/chat", json=CHAT)
        assert response.status_code == 503
        assert response.json() == {"error": "model 'tiny:latest' could not be loaded: out of memory."}


async def test_queue_full_is_429(tmp_path: Path) -> None:
    gate = asyncio.Event()
    engine = FakeEngine(parallel=1, max_queue=0, gate=gate)
    async with harness(tmp_path, loader=FakeLoader(make=lambda name: engine)) as h:
        first = asyncio.create_task(h.client.post("/api/chat", json=CHAT))
        while not engine.active:
            await asyncio.sleep(0.01)
        response = await h.client.post("/api/chat", json=CHAT)
        assert response.status_code == 429 and response.headers["retry-after"] == "2"
        assert response.json() == {"error": "the queue of model 'tiny:latest' is full; retry shortly."}
        gate.set()
        assert (await first).status_code == 200


async def test_body_too_large_and_unknown_path_use_ollama_errors(tmp_path: Path) -> None:
    async with harness(tmp_path, max_request_bytes=2048) as h:
        big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]})
        response = await h.client.post("/api/chat", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413 and isinstance(response.json()["error"], str)
        response = await h.client.get("/api/nope")
        assert response.status_code == 404 and isinstance(response.json()["error"], str)
        assert (await h.client.post("/api/chat", json=CHAT)).status_code == 200


async def test_openapi_schema_includes_both_apis(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        paths = (await h.client.get("/openapi.json")).json()["paths"]
        assert "/api/chat" in paths and "/v1/chat/completions" in paths
