"""Clients that go away cancel their generations (real uvicorn on loopback, fake engine), so slots free up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import uvicorn

from haven.engine.protocol import TextDelta
from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}


@contextmanager
def serve(tmp_path: Path, engine: FakeEngine) -> Iterator[str]:
    app = create_app(Settings(), engine_loader=FakeLoader(make=lambda name: engine), store=FakeStore(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
