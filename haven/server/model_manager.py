"""Model lifecycle for the server: lazy loading, keep-alive expiry and LRU unloading.

The routes ask :meth:`ModelManager.get` for an engine by name. The first request for a model loads it
(in a worker thread, so the event loop keeps serving); concurrent first requests share that one load.
A loaded model stays for its keep-alive (``settings.keep_alive_seconds``, overridable per request:
0 unloads it as soon as it is idle, a negative value keeps it forever). Above
``settings.max_loaded_models`` models (or ``settings.memory_budget_bytes`` of model files) the least
recently used idle model is unloaded. Unknown names raise ``ModelNotFoundError`` - never a fallback to
another model - and a load failure is a ``ModelLoadError`` (HTTP 503).

It knows the engine only through :mod:`haven.engine.protocol` and the store through its typed interface
(:class:`haven.models.store.ModelStore`: ``get``, ``list``, ``blob_path``); it knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from haven.engine.protocol import EngineLoader, EngineStats, ModelEngine, ModelInfo
from haven.errors import HavenError, ModelLoadError
from haven.models.manifest import Manifest
from haven.models.store import ModelStore
from haven.settings import Settings

log = logging.getLogger("haven.server.models")

_MIN_IDLE_CHECK = 0.05
"""Seconds between checks of a model whose keep-alive ran out while it was still busy."""

_SUBMIT_GRACE = 1.0
"""A model handed out by ``get`` is kept at least this long, so neither keep_alive 0 nor making room for another
model unloads it between ``get`` and the caller's ``submit`` (the engine only looks busy once the request is
queued; rendering the prompt comes first, and unloading the model then failed that request)."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    info: ModelInfo
    size_bytes: int
    expires_at: datetime | None
    """None: stays loaded until evicted or unloaded explicitly."""
    loaded_at: datetime
    stats: EngineStats | None = None
    """The engine's slots and KV cache (type, bytes per slot) when it was listed."""


@dataclass
class _Entry:
    engine: ModelEngine
    size_bytes: int
    loaded_at: datetime
    keep_alive: float
    deadline: float | None  # monotonic; None = forever
    touched: float = 0.0  # monotonic time of the last ``get``


class ModelManager:
    """Owns every loaded engine of one server process."""

    def __init__(self, settings: Settings, store: ModelStore, loader: EngineLoader) -> None:
        self.settings = settings
        self.store = store
        self.loader = loader
        self._models: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Future[ModelEngine]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False
        self._catalog: list[Manifest] = []
        self._catalog_signature: tuple[tuple[str, int, int], ...] | None = None
        self._retry_limits_at: float | None = None  # over a limit with nothing evictable: look again then

    # --- public interface ---------------------------------------------------------------------

    async def get(self, name: str, *, keep_alive: float | None = None) -> ModelEngine:
        """The engine serving ``name``, loading it first if needed."""
        if self._closed:
            raise ModelLoadError("the server is shutting down.")
        manifest = self.store.get(name)  # ModelNotFoundError for unknown names, before anything loads
        key = manifest.name
        keep = self.settings.keep_alive_seconds if keep_alive is None else keep_alive
        entry = self._models.get(key)
        if entry is None:
            future = self._loading.get(key)
            if future is None:
                future = asyncio.ensure_future(self._load(key, manifest, keep))
                self._loading[key] = future
                future.add_done_callback(lambda _f: self._loading.pop(key, None))
            # Shielded: one client giving up must not cancel a load other requests are waiting for.
            await asyncio.shield(future)
            entry = self._models.get(key)
            if entry is None:  # unloaded again between load and now (keep_alive 0 and idle)
                return await self.get(name, keep_alive=keep_alive)
        self._touch(key, entry, keep)
        return entry.engine

    def loaded(self) -> list[LoadedModel]:
        now_wall, now_mono = datetime.now(UTC), time.monotonic()
        out = []
        for name, entry in self._models.items():
            expires = None if entry.deadline is None else now_wall + timedelta(seconds=entry.deadline - now_mono)
            out.append(
                LoadedModel(name, entry.engine.info, entry.size_bytes, expires, entry.loaded_at, entry.engine.stats())
            )
        return out

    def loaded_info(self, name: str) -> ModelInfo | None:
        """The engine info of ``name`` (canonical) when it is loaded."""
        entry = self._models.get(name)
        return entry.engine.info if entry is not None else None

    def catalog(self) -> list[Manifest]:
        """``store.list()``, re-read only when a manifest file changed (listing is a hot, cheap GET:
        parsing every manifest each time capped ``GET /v1/models`` well below 1,000 requests/s)."""
        signature = _manifest_signature(self.store)
        if signature is None or signature != self._catalog_signature:
            self._catalog = list(self.store.list())
            self._catalog_signature = signature
        return list(self._catalog)

    def stats(self) -> dict[str, EngineStats]:
        """Scheduler statistics of every loaded model (for /metrics)."""
        return {name: entry.engine.stats() for name, entry in self._models.items()}

    async def unload(self, name: str) -> bool:
        """Unloads ``name`` (a loaded name, or any spelling the store resolves); False if not loaded."""
        entry = self._models.pop(name, None)
        if entry is None:
            try:
                key = self.store.get(name).name
            except HavenError:
                return False
            entry = self._models.pop(key, None)
            name = key
        if entry is None:
            return False
        await self._close_engine(name, entry)
        return True

    async def close(self) -> None:
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for future in list(self._loading.values()):
            with contextlib.suppress(BaseException):
                await future
        while self._models:
            name, entry = self._models.popitem(last=False)
            await self._close_engine(name, entry)

    # --- internals ----------------------------------------------------------------------------

    async def _load(self, key: str, manifest: Manifest, keep: float) -> ModelEngine:
        path = str(self.store.blob_path(manifest))
        sha256 = manifest.sha256
        started = time.perf_counter()
        try:
            engine = await asyncio.to_thread(self.loader, path, name=key, sha256=sha256)
        except ModelLoadError:
            raise
        except HavenError as exc:
            raise ModelLoadError(f"model '{key}' could not be loaded: {exc.message}") from exc
        except Exception as exc:  # llama.cpp and the OS raise all sorts; the client gets one sentence
            raise ModelLoadError(f"model '{key}' could not be loaded: {exc}.") from exc
        try:
            size = os.path.getsize(path)
        except OSError:
            size = manifest.size
        self._models[key] = _Entry(engine, size, datetime.now(UTC), keep, None)
        self._touch(key, self._models[key], keep)
        log.info("loaded model %s in %.2f s", key, time.perf_counter() - started)
        await self._enforce_limits(protect=key)
        return engine

    def _touch(self, key: str, entry: _Entry, keep: float) -> None:
        entry.keep_alive = keep
        entry.touched = time.monotonic()
        entry.deadline = None if keep < 0 else entry.touched + max(keep, _SUBMIT_GRACE)
        self._models.move_to_end(key)
        self._ensure_reaper()
        self._wake.set()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _enforce_limits(self, *, protect: str) -> None:
        """Unload least recently used idle models while over the count or memory limit."""
        budget = self.settings.memory_budget_bytes
        while True:
            total = sum(e.size_bytes for e in self._models.values())
            over = len(self._models) > self.settings.max_loaded_models or (budget is not None and total > budget)
            if not over:
                return
            now = time.monotonic()
            evictable = (n for n, e in self._models.items() if n != protect and _evictable(e, now))
            victim = next(evictable, None)
            if victim is None:
                # Every other model is busy or was just handed out: unloading one would kill its requests.
                # Stay over the limit; the reaper retries once the grace is over (and on the next load).
                self._retry_limits_at = now + _SUBMIT_GRACE
                return
            entry = self._models.pop(victim)
            log.info("unloading model %s (least recently used)", victim)
            await self._close_engine(victim, entry)

    async def _reap_forever(self) -> None:
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            for name, entry in list(self._models.items()):
                if entry.deadline is None or entry.deadline > now:
                    continue
                if not _idle(entry.engine):
                    # Keep-alive counts from the end of the last request, not its start.
                    entry.deadline = now + max(entry.keep_alive, _MIN_IDLE_CHECK)
                    continue
                if self._models.get(name) is entry:
                    del self._models[name]
                    log.info("unloading model %s (keep-alive expired)", name)
                    await self._close_engine(name, entry)
            if self._models:
                last = next(reversed(self._models))
                await self._enforce_limits(protect=last)
            deadlines = [e.deadline for e in self._models.values() if e.deadline is not None]
            if self._retry_limits_at is not None:
                deadlines.append(self._retry_limits_at)
                self._retry_limits_at = None
            timeout = max(_MIN_IDLE_CHECK, min(deadlines) - time.monotonic()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _close_engine(self, name: str, entry: _Entry) -> None:
        try:
            await entry.engine.close()
        except Exception:  # a failing close must not keep the server from unloading the rest
            log.exception("closing model %s failed", name)


def _evictable(entry: _Entry, now: float) -> bool:
    return _idle(entry.engine) and now - entry.touched >= _SUBMIT_GRACE


def _idle(engine: ModelEngine) -> bool:
    stats = engine.stats()
    return stats.slots_in_use == 0 and stats.queue_depth == 0


def _manifest_signature(store: ModelStore) -> tuple[tuple[str, int, int], ...] | None:
    """(path, mtime, size) of every manifest file of the store; None when unknown."""
    root = store.manifests_dir
    entries = []
    try:
        for tag_dir in os.scandir(root):
            if tag_dir.is_dir():
                for entry in os.scandir(tag_dir.path):
                    st = entry.stat()
                    entries.append((entry.path, st.st_mtime_ns, st.st_size))
    except FileNotFoundError:
        return ()
    except OSError:
        return None
    return tuple(sorted(entries))
