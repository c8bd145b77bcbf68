"""A client that drops an NDJSON stream cancels the generation (real uvicorn on loopback, fake engine)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from haven.engine.protocol import Finished, TextDelta, Usage
from haven.server.app import create_app
from haven.settings import Settings
from tests.asgi.ollama_fakes import FakeEngine
from tests.support.fake_engine import FakeLoader, FakeStore
from tests.support.loopback import serve_on_loopback


def test_disconnect_mid_stream_cancels_generation(tmp_path: Path) -> None:
    script = [TextDelta(f"t{i} ") for i in range(200)] + [Finished("stop", Usage(1, 200))]
    engine = FakeEngine(script=script, delay=0.02)
    store = FakeStore(tmp_path / "store", names=("m:latest",))
    app = create_app(Settings(home=tmp_path / "home"), engine_loader=FakeLoader(make=lambda name: engine), store=store)
    with serve_on_loopback(app) as url:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with (
            httpx.Client(base_url=url) as client,
            client.stream("POST", "/api/chat", json=body) as response,
        ):
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert '"content":"t0 "' in first
        # 200 tokens take 4 s; the cancel must arrive long before that.
        deadline = time.monotonic() + 2.0
        while not engine.handles[0].cancelled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.handles[0].cancelled
