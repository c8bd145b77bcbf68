"""The store-backed Ollama routes over the real ModelStore: pull from a loopback fake hub, tags, show, delete."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.models.store import ModelStore, snapshot
from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeLoader
from tests.support.fake_hub import FakeHub
from tests.support.tiny_gguf import write_tiny_gguf

REPO = "haven-test/Tiny-GGUF"
FILE = "tiny-q4_k_m.gguf"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add(REPO, FILE, write_tiny_gguf(tmp_path / "src.gguf").read_bytes())
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    # Header-only tiny files (not runnable): the trial load is tested with real ones in test_trial_load.py.
    return ModelStore(tmp_path / "models", trial_load_timeout=None)


@pytest.fixture
async def client(tmp_path: Path, hub: FakeHub, store: ModelStore) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(home=tmp_path / "home", hf_endpoint=hub.endpoint, download_timeout_seconds=5)
    app = create_app(settings, engine_loader=FakeLoader(), store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost", timeout=30) as c:
        yield c
    await app.state.model_manager.close()


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


async def test_pull_streams_progress_then_model_is_listed_shown_and_deleted(
    client: httpx.AsyncClient, hub: FakeHub, store: ModelStore
) -> None:
    response = await client.post("/api/pull", json={"model": f"hf://{REPO}/{FILE}"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    events = lines(response)
    sha = hub.files[(REPO, FILE)].sha256
    assert events[0] == {"status": "pulling manifest"} and events[-1] == {"status": "success"}
    size = len(hub.files[(REPO, FILE)].data)
    assert {"status": f"pulling sha256:{sha[:12]}", "total": size, "completed": size} in events

    (model,) = (await client.get("/api/tags")).json()["models"]
    assert (model["name"], model["digest"], model["size"]) == ("tiny-q4_k_m:latest", sha, size)
    assert model["details"]["family"] == "qwen2" and model["details"]["format"] == "gguf"

    shown = (await client.post("/api/show", json={"model": "tiny-q4_k_m"})).json()
    assert shown["model_info"]["general.architecture"] == "qwen2"
    assert shown["model_info"]["qwen2.context_length"] == 256
    assert "<|im_start|>" in shown["template"] and shown["capabilities"] == ["completion"]

    assert (await client.request("DELETE", "/api/delete", json={"model": "tiny-q4_k_m"})).status_code == 200
    assert (await client.get("/api/tags")).json() == {"models": []}
    assert store.list() == []


async def test_pull_non_stream_returns_the_last_status(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/pull", json={"model": f"hf://{REPO}/{FILE}", "stream": False})
    assert response.status_code == 200 and response.json() == {"status": "success"}


async def test_pull_of_a_missing_file_is_an_error_and_stores_nothing(
    client: httpx.AsyncClient, store: ModelStore
) -> None:
    before = snapshot(store.root)
    response = await client.post("/api/pull", json={"model": f"hf://{REPO}/missing.gguf", "stream": False})
    assert response.status_code == 404 and "missing.gguf" in response.json()["error"]
    streamed = lines(await client.post("/api/pull", json={"model": f"hf://{REPO}/missing.gguf"}))
    assert "missing.gguf" in streamed[-1]["error"]
    response = await client.post("/api/pull", json={"model": "not a ref at all"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    response = await client.post("/api/pull", json={})
    assert response.status_code == 400 and response.json() == {"error": "model is required."}
    assert snapshot(store.root) == before


async def test_delete_unknown_model_is_404_and_changes_nothing(client: httpx.AsyncClient, store: ModelStore) -> None:
    await client.post("/api/pull", json={"model": f"hf://{REPO}/{FILE}", "stream": False})
    before = snapshot(store.root)
    response = await client.request("DELETE", "/api/delete", json={"model": "nope"})
    assert response.status_code == 404 and "nope" in response.json()["error"]
    response = await client.request("DELETE", "/api/delete", json={"model": "bad/name"})
    assert response.status_code == 400
    assert snapshot(store.root) == before
