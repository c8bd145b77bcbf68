"""ModelManager with a fake loader: lazy single load, keep-alive, LRU, unknown names, load failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haven.errors import ModelLoadError, ModelNotFoundError
from haven.server import model_manager
from haven.server.model_manager import ModelManager
from haven.settings import Settings
from tests.support.fake_engine import FakeLoader, FakeStore


def _manager(tmp_path: Path, loader: FakeLoader | None = None, **settings: object) -> ModelManager:
    store = FakeStore(tmp_path / "blobs", names=("a:latest", "b:latest", "c:latest"))
    return ModelManager(Settings(**settings), store, loader or FakeLoader())  # type: ignore[arg-type]


async def test_concurrent_first_requests_load_once(tmp_path: Path) -> None:
    loader = FakeLoader(load_seconds=0.2)
    manager = _manager(tmp_path, loader)
    engines = await asyncio.gather(*(manager.get("a") for _ in range(5)))
    assert loader.calls == ["a:latest"]
    assert all(e is engines[0] for e in engines)
    [loaded] = manager.loaded()
    assert loaded.name == "a:latest" and loaded.size_bytes == 1024 and loaded.expires_at is not None
    await manager.close()
    assert engines[0].closed  # type: ignore[attr-defined]


async def test_unknown_model_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    with pytest.raises(ModelNotFoundError, match="nope:latest is not in the store"):
        await manager.get("nope")
    assert manager.loaded() == []


async def test_load_failure_is_model_load_error_and_retried_next_time(tmp_path: Path) -> None:
    loader = FakeLoader(error=RuntimeError("bad magic"))
    manager = _manager(tmp_path, loader)
    with pytest.raises(ModelLoadError, match="model 'a:latest' could not be loaded: bad magic"):
        await manager.get("a")
    loader.error = None
    assert (await manager.get("a")).info.name == "a:latest"
    assert loader.calls == ["a:latest", "a:latest"]
    await manager.close()


@pytest.fixture
def no_evict_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_manager, "_SUBMIT_GRACE", 0.0)


@pytest.mark.usefixtures("no_evict_grace")
async def test_lru_unloads_least_recently_used(tmp_path: Path) -> None:
    manager = _manager(tmp_path, max_loaded_models=2)
    a = await manager.get("a")
    await manager.get("b")
    await manager.get("a")  # a is now the most recently used
    await manager.get("c")
    assert [m.name for m in manager.loaded()] == ["a:latest", "c:latest"]
    assert not a.closed  # type: ignore[attr-defined]
    await manager.close()


async def test_keep_alive_zero_unloads_when_idle_and_negative_keeps_forever(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    engine = await manager.get("a", keep_alive=0)
    await asyncio.sleep(1.3)
    assert manager.loaded() == [] and engine.closed  # type: ignore[attr-defined]
    await manager.get("b", keep_alive=-1)
    assert manager.loaded()[0].expires_at is None
    assert await manager.unload("b") is True
    assert await manager.unload("b") is False
    await manager.close()


@pytest.mark.usefixtures("no_evict_grace")
async def test_memory_budget_unloads_by_size(tmp_path: Path) -> None:
    # Each fake blob is 1024 bytes: a budget of 2048 keeps two models loaded whatever max_loaded_models says.
    manager = _manager(tmp_path, max_loaded_models=10, memory_budget_bytes=2048)
    await manager.get("a")
    await manager.get("b")
    await manager.get("c")
    assert [m.name for m in manager.loaded()] == ["b:latest", "c:latest"]
    await manager.close()


@pytest.mark.usefixtures("no_evict_grace")
async def test_busy_model_is_not_evicted(tmp_path: Path) -> None:
    from haven.engine.protocol import GenerationRequest

    manager = _manager(tmp_path, max_loaded_models=1)
    a = await manager.get("a")
    handle = await a.submit(GenerationRequest(prompt_tokens=[1]))  # a slot of "a" is busy
    await manager.get("b")
    assert [m.name for m in manager.loaded()] == ["a:latest", "b:latest"]  # over the limit, nothing killed
    await handle.cancel()
    await manager.get("b")  # the next load/touch retries the limit once "a" is idle
    await asyncio.sleep(0.2)
    assert [m.name for m in manager.loaded()] == ["b:latest"]
    await manager.close()


def test_catalog_follows_imports_and_removals(tmp_path: Path, make_test_model: object) -> None:
    from haven.models.store import ModelStore

    store = ModelStore(tmp_path / "models")
    manager = ModelManager(Settings(), store, FakeLoader())  # type: ignore[arg-type]
    assert manager.catalog() == []
    path = make_test_model()  # type: ignore[operator]
    store.import_file(path, "a")
    assert [m.name for m in manager.catalog()] == ["a:latest"]
    store.import_file(path, "b")
    assert [m.name for m in manager.catalog()] == ["a:latest", "b:latest"]
    store.remove("a")
    assert [m.name for m in manager.catalog()] == ["b:latest"]


async def test_a_model_just_handed_out_is_not_evicted_until_its_grace_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its request may still be rendering the prompt (the engine looks idle): unloading it then was a 500 in CI.
    monkeypatch.setattr(model_manager, "_SUBMIT_GRACE", 0.3)
    manager = _manager(tmp_path, max_loaded_models=1)
    a = await manager.get("a")
    await manager.get("b")
    assert [m.name for m in manager.loaded()] == ["a:latest", "b:latest"] and not a.closed  # type: ignore[attr-defined]
    await asyncio.sleep(0.6)  # the reaper looks again once the grace is over
    assert [m.name for m in manager.loaded()] == ["b:latest"] and a.closed  # type: ignore[attr-defined]
    await manager.close()
