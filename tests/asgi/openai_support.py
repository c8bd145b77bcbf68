"""The ASGI harness of the OpenAI, Ollama and app tests: the real app over FakeEngine/FakeLoader and the real
store (FakeStore), and an httpx client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    loader: FakeLoader
    store: FakeStore

    def engine(self, name: str = "tiny:latest") -> FakeEngine:
        return self.loader.engines[name]


@asynccontextmanager
async def harness(
    tmp_path: Path,
    *,
    loader: FakeLoader | None = None,
    engine: FakeEngine | None = None,
    names: Sequence[str] = ("tiny:latest", "other:latest"),
    manifest: Mapping[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """The real app over a fake loader and the real store (``names``, each with ``manifest`` overrides)."""
    if engine is not None:
        loader = FakeLoader(make=lambda name: engine)
    loader = loader or FakeLoader()
    store = FakeStore(tmp_path / "store", names=())
    for name in names:
        store.add(name, **(manifest or {}))
    settings.setdefault("home", tmp_path / "home")
    settings.setdefault("default_model", "tiny:latest")
    app = create_app(Settings(**settings), engine_loader=loader, store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
        yield Harness(app, client, loader, store)
    await app.state.model_manager.close()


def sse_events(text: str) -> list[Any]:
    """The JSON payloads of an SSE body, with the final "[DONE]" kept as a string."""
    import json

    out: list[Any] = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line.removeprefix("data: ")
                out.append(data if data == "[DONE]" else json.loads(data))
    return out
