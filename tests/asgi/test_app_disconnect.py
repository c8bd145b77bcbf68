"""Clients that go away cancel their generations (real uvicorn on loopback, fake engine), so slots free up."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, suppress
from pathlib import Path

import httpx

from haven.engine.protocol import TextDelta
from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore
from tests.support.loopback import serve_on_loopback

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}


def serve(tmp_path: Path, engine: FakeEngine) -> AbstractContextManager[str]:
    app = create_app(Settings(), engine_loader=FakeLoader(make=lambda name: engine), store=FakeStore(tmp_path))
    return serve_on_loopback(app)


def _wait_cancelled(engine: FakeEngine, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not engine.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)


def test_dropped_stream_cancels_the_generation(tmp_path: Path) -> None:
    engine = FakeEngine(script=tuple(TextDelta("t") for _ in range(500)), delay=0.02)  # 10 s if not cancelled
    with serve(tmp_path, engine) as url, httpx.Client(base_url=url) as client:
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        _wait_cancelled(engine)
        assert len(engine.cancelled) == 1 and engine.active == set()
        metrics = client.get("/metrics").text
        assert 'haven_slots_in_use{model="tiny:latest"} 0.0' in metrics


def test_dropped_non_stream_request_cancels_the_generation(tmp_path: Path) -> None:
    engine = FakeEngine(script=tuple(TextDelta("t") for _ in range(500)), delay=0.02)
    with serve(tmp_path, engine) as url:
        with suppress(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=0.5)
        _wait_cancelled(engine)
        assert len(engine.cancelled) == 1 and engine.active == set()
