"""A client that goes away mid-stream leaves its reply stored and marked incomplete (real uvicorn, fake engine)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from haven.engine.protocol import ReasoningDelta, TextDelta
from haven.server.app import create_app
from haven.settings import Settings
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore
from tests.support.loopback import serve_on_loopback

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
def test_dropped_stream_keeps_an_incomplete_reply(tmp_path: Path, path: str) -> None:
    script = (ReasoningDelta("thinking"), *(TextDelta("t") for _ in range(500)))
    engine = FakeEngine(script=script, delay=0.02)  # 10 s if not cancelled
    app = create_app(
        Settings(home=tmp_path / "home"),
        engine_loader=FakeLoader(make=lambda name: engine),
        store=FakeStore(tmp_path / "store"),
    )
    with serve_on_loopback(app) as url, httpx.Client(base_url=url, timeout=30) as client:  # local single-user mode
        cid = client.post("/api/v1/conversations", json={"title": "x"}).json()["id"]
        with client.stream("POST", path, json={**CHAT, "stream": True, "conversation_id": cid}) as response:
            assert response.status_code == 200 and response.headers["x-haven-conversation-id"] == cid
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = client.get(f"/api/v1/conversations/{cid}").json()["messages"][-1]
            if reply["finish_reason"] == "cancelled":
                break
            time.sleep(0.05)
        assert reply["role"] == "assistant" and reply["incomplete"] is True and reply["finish_reason"] == "cancelled"
        assert reply["content"].startswith("t") and reply["reasoning"] == "thinking"
