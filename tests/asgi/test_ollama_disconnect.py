"""A client that drops an NDJSON stream cancels the generation (real uvicorn on loopback, fake engine)."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from haven.engine.protocol import Finished, TextDelta, Usage
from haven.server.ollama.router import router
from haven.settings import Settings
from tests.asgi.ollama_fakes import FakeEngine, FakeManager, FakeStore


def test_disconnect_mid_stream_cancels_generation() -> None:
    import uvicorn
    from fastapi import FastAPI

    script = [TextDelta(f"t{i} ") for i in range(200)] + [Finished("stop", Usage(1, 200))]
    engine = FakeEngine(script=script, delay=0.02)
    app = FastAPI()
    app.state.settings = Settings()
    app.state.model_manager = FakeManager(engine, FakeStore({"m:latest": {"name": "m:latest"}}))
    app.include_router(router)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client,
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
    finally:
        server.should_exit = True
        thread.join(timeout=10)
