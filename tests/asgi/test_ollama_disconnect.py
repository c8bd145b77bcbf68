"""A client that drops an NDJSON stream cancels the generation (real uvicorn on loopback, fake engine)."""

from __future__ import annotations

import time

import httpx

from haven.engine.protocol import Finished, TextDelta, Usage
from haven.server.ollama.router import router
from haven.settings import Settings
from tests.asgi.ollama_fakes import FakeEngine, FakeManager, FakeStore
from tests.support.loopback import serve_on_loopback


def test_disconnect_mid_stream_cancels_generation() -> None:
    from fastapi import FastAPI

    script = [TextDelta(f"t{i} ") for i in range(200)] + [Finished("stop", Usage(1, 200))]
    engine = FakeEngine(script=script, delay=0.02)
    app = FastAPI()
    app.state.settings = Settings()
    app.state.model_manager = FakeManager(engine, FakeStore({"m:latest": {"name": "m:latest"}}))
    app.include_router(router)
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
