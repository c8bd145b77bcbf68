"""/api/pull with Ollama names, and abandoned pulls: a client that leaves frees the pull's worker at once.

A real uvicorn on loopback (a disconnect needs a socket) in front of the app; the registry is a loopback
fake that sends the first 700 bytes of the GGUF and then nothing, so only the cancel can end the pull
(its read timeout is a minute).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from haven.models.store import ModelStore
from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeLoader
from tests.support.fake_ollama_registry import FakeOllamaRegistry
from tests.support.loopback import serve_on_loopback
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FakeOllamaRegistry]:
    with FakeOllamaRegistry() as fake:
        fake.add_model("qwen2.5", "0.5b", write_tiny_gguf(tmp_path / "m.gguf").read_bytes(), params={"top_k": 20})
        yield fake


@pytest.fixture
def served(tmp_path: Path, registry: FakeOllamaRegistry) -> Iterator[tuple[str, ModelStore]]:
    store = ModelStore(tmp_path / "models", trial_load_timeout=None)  # header-only test files
    settings = Settings(home=tmp_path / "home", ollama_registry=registry.endpoint, download_timeout_seconds=60)
    app = create_app(settings, engine_loader=FakeLoader(), store=store)
    with serve_on_loopback(app) as url:
        yield url, store


def _pull_ends_within(store: ModelStore, seconds: float) -> bool:
    """The pull's lock file goes when its worker leaves the pull (released in a finally)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not list(store.blobs_dir.glob("*.lock")):
            return True
        time.sleep(0.02)
    return False


def test_pull_by_ollama_name(served: tuple[str, ModelStore]) -> None:
    url, store = served
    reply = httpx.post(url + "/api/pull", json={"model": "qwen2.5:0.5b", "stream": False}, timeout=30)
    assert reply.status_code == 200 and reply.json() == {"status": "success"}
    assert store.get("qwen2.5:0.5b").defaults.parameters == {"top_k": 20}
    bad = httpx.post(url + "/api/pull", json={"model": "qwen:../../x", "stream": False}, timeout=30)
    assert bad.status_code == 400 and "cannot understand model reference" in bad.json()["error"]


def test_a_client_that_leaves_a_streamed_pull_frees_its_worker(
    served: tuple[str, ModelStore], registry: FakeOllamaRegistry
) -> None:
    url, store = served
    registry.stall_after = 700
    with (
        httpx.Client(base_url=url, timeout=30) as client,
        client.stream("POST", "/api/pull", json={"model": "qwen2.5:0.5b"}) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if json.loads(line).get("completed") == 700:
                # Checked before the break: leaving iter_lines() finalizes httpx's stream, which closes the
                # connection at once, and the server (rightly) cancels the pull.
                assert list(store.blobs_dir.glob("*.lock"))  # the pull is running, blocked on the stalled server
                break
    assert _pull_ends_within(store, 2.0)
    partial = [p for p in store.blobs_dir.glob("partial-*") if p.suffix == ""]
    assert [p.stat().st_size for p in partial] == [700]  # kept: the next pull resumes it
    assert not store.exists("qwen2.5:0.5b")


def test_a_client_that_leaves_a_non_streamed_pull_frees_its_worker(
    served: tuple[str, ModelStore], registry: FakeOllamaRegistry
) -> None:
    url, store = served
    registry.stall_after = 700
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/api/pull", json={"model": "qwen2.5:0.5b", "stream": False}, timeout=1.0)
    assert _pull_ends_within(store, 2.0)
    registry.stall_after = None
    registry.release.set()
    reply = httpx.post(url + "/api/pull", json={"model": "qwen2.5:0.5b", "stream": False}, timeout=30)
    assert reply.json() == {"status": "success"}
    assert registry.byte_requests()[-1]["range"] == "bytes=700-"
