"""The app around the APIs: probes, metrics, OpenAPI, API key, body limit, disconnects, keep-alive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from haven.errors import ConfigurationError
from haven.server.app import create_app
from haven.settings import Settings
from tests.asgi.openai_support import harness
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}


async def test_health_and_ready(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = await h.client.get("/ready")
        assert r.json() == {"status": "ready", "checks": {"store": "ok", "default_model": "present"}}
        await h.client.post("/v1/chat/completions", json=CHAT)
        assert (await h.client.get("/ready")).json()["checks"]["default_model"] == "loaded"
        h.store.unreadable = True
        r = await h.client.get("/ready")
        assert r.status_code == 503 and r.json()["checks"]["store"] == "unreadable: store unreadable"
    async with harness(tmp_path / "b", default_model="absent") as h:
        r = await h.client.get("/ready")
        assert r.status_code == 503 and r.json()["checks"]["default_model"].startswith("missing: model absent:latest")


async def test_openapi_schema_is_served_and_valid(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    validate(spec)
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics"):
        assert path in spec["paths"], path
    assert "/api/chat" in spec["paths"]  # the Ollama router is included
    assert "ChatCompletionRequest" in spec["components"]["schemas"]


async def test_metrics_count_requests_tokens_and_slots(tmp_path: Path) -> None:
    engine = FakeEngine(cached_tokens=5)
    async with harness(tmp_path, engine=engine) as h:
        await h.client.post("/v1/chat/completions", json=CHAT)
        await h.client.get("/v1/models")
        text = (await h.client.get("/metrics")).text
    prompt = len(engine.submitted[0].prompt_tokens)
    assert 'haven_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'haven_http_requests_total{method="GET",route="/v1/models",status="200"} 1.0' in text
    assert f'haven_prompt_tokens_total{{model="tiny:latest"}} {float(prompt)}' in text
    assert 'haven_completion_tokens_total{model="tiny:latest"} 2.0' in text
    assert 'haven_prompt_cached_tokens_total{model="tiny:latest"} 5.0' in text
    assert 'haven_time_to_first_token_seconds_count{model="tiny:latest"} 1.0' in text
    assert 'haven_slots_in_use{model="tiny:latest"} 0.0' in text
    assert 'haven_slots_total{model="tiny:latest"} 4.0' in text
    assert 'haven_queue_depth{model="tiny:latest"} 0.0' in text
    assert 'haven_speculative_drafted_tokens{model="tiny:latest"} 0.0' in text
    assert 'haven_speculative_accepted_tokens{model="tiny:latest"} 0.0' in text
    assert 'haven_kv_cache_bytes_per_slot{model="tiny:latest",type="f16"} 0.0' in text


async def test_two_apps_have_separate_metrics(tmp_path: Path) -> None:
    async with harness(tmp_path / "a") as a, harness(tmp_path / "b") as b:
        await a.client.get("/v1/models")
        text = (await b.client.get("/metrics")).text
    assert 'route="/v1/models"' not in text


async def test_api_key_required_except_for_probes(tmp_path: Path) -> None:
    async with harness(tmp_path, api_key="s3cret") as h:
        r = await h.client.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await h.client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key."
        r = await h.client.post("/api/chat", json={"model": "tiny"})
        assert r.status_code == 401 and r.json() == {"error": "missing API key; send 'Authorization: Bearer <key>'."}
        assert (await h.client.get("/health")).status_code == 200
        assert (await h.client.get("/ready")).status_code == 200
        r = await h.client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200


def test_public_bind_without_key_refuses_to_start(tmp_path: Path) -> None:
    store = FakeStore(tmp_path)
    with pytest.raises(ConfigurationError, match="refusing to serve on 0.0.0.0 without an API key"):
        create_app(Settings(host="0.0.0.0"), engine_loader=FakeLoader(), store=store)
    create_app(Settings(host="0.0.0.0", api_key="k" * 32), engine_loader=FakeLoader(), store=store)
    create_app(Settings(host="::1"), engine_loader=FakeLoader(), store=store)


def test_a_weak_key_on_a_public_bind_refuses_to_start(tmp_path: Path) -> None:
    store = FakeStore(tmp_path)
    with pytest.raises(ConfigurationError, match="an API key of 1 characters; a public bind needs at least 32"):
        create_app(Settings(host="0.0.0.0", api_key="a"), engine_loader=FakeLoader(), store=store)
    create_app(Settings(host="127.0.0.1", api_key="a"), engine_loader=FakeLoader(), store=store)  # loopback: fine


async def test_big_bodies_are_413(tmp_path: Path) -> None:
    async with harness(tmp_path, max_request_bytes=1024 * 1024) as h:
        big = b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"x" * (10 * 1024 * 1024) + b'"}]}'
        r = await h.client.post("/v1/chat/completions", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["message"] == "the request body is larger than this server's limit of 1048576 bytes."

        async def chunks():  # no Content-Length: counted while streaming in
            for _ in range(20):
                yield b"x" * 100_000

        r = await h.client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert (await h.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert h.engine().submitted and len(h.engine().submitted) == 1


async def test_disconnect_during_non_stream_request_cancels(tmp_path: Path) -> None:
    engine = FakeEngine(gate=asyncio.Event())
    async with harness(tmp_path, engine=engine) as h:
        task = asyncio.ensure_future(h.client.post("/v1/chat/completions", json=CHAT))
        while not engine.active:
            await asyncio.sleep(0.01)
        task.cancel()  # httpx's ASGI transport reports http.disconnect to the app
        for _ in range(100):
            if engine.cancelled:
                break
            await asyncio.sleep(0.02)
        assert len(engine.cancelled) == 1 and engine.active == set()


async def test_keep_alive_zero_unloads_after_the_request(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        await h.client.post("/v1/chat/completions", json=CHAT)
        manager = h.app.state.model_manager
        assert [m.name for m in manager.loaded()] == ["tiny:latest"]
        await manager.get("tiny", keep_alive=0)
        await asyncio.sleep(1.3)
        assert manager.loaded() == [] and h.engine().closed


async def test_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    loader = FakeLoader(load_seconds=0.3)
    async with harness(tmp_path, loader=loader) as h:
        results = await asyncio.gather(*(h.client.post("/v1/chat/completions", json=CHAT) for _ in range(4)))
    assert [r.status_code for r in results] == [200] * 4
    assert loader.calls == ["tiny:latest"]


async def test_lifespan_closes_the_models(tmp_path: Path) -> None:
    loader = FakeLoader()
    app = create_app(Settings(), engine_loader=loader, store=FakeStore(tmp_path))
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://[::1]")
    async with app.router.lifespan_context(app), client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert loader.engines["tiny:latest"].closed
