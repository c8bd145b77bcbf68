"""Rate limits: request and generated-token buckets per client, the concurrent-generation cap, 429 with
Retry-After, the body read timeout (408) and the header deadline of the HTTP protocol."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from haven.server.http_protocol import uvicorn_protocol
from haven.server.ratelimit import Limits, RateLimitMiddleware, TokenBucket
from tests.asgi.openai_support import harness
from tests.support.fake_engine import FakeEngine

CHAT = {"model": "tiny:latest", "messages": [{"role": "user", "content": "hi"}]}


def test_token_bucket_refills_and_overdraws() -> None:
    bucket = TokenBucket(rate=1.0, capacity=2.0, now=0.0)
    assert bucket.try_take(1, 0.0) == 0 and bucket.try_take(1, 0.0) == 0
    assert bucket.try_take(1, 0.0) == pytest.approx(1.0)
    assert bucket.try_take(1, 1.0) == 0  # refilled one per second
    bucket.charge(5, 1.0)
    assert bucket.debt_wait(1.0) == pytest.approx(5.0, abs=1e-6)
    assert bucket.debt_wait(7.0) == 0


async def test_requests_over_the_bucket_are_429_with_retry_after(tmp_path: Path) -> None:
    async with harness(tmp_path, rate_limit_requests_per_minute=12) as h:  # burst of 2, one every 5 s
        assert (await h.client.get("/v1/models")).status_code == 200
        assert (await h.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        r = await h.client.get("/v1/models")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(r.headers["retry-after"]) <= 5
        r = await h.client.get("/api/tags")
        assert r.status_code == 429 and "retry in" in r.json()["error"]  # Ollama's error shape
        assert (await h.client.get("/health")).status_code == 200  # probes are never limited


async def test_generated_tokens_are_charged_to_the_client(tmp_path: Path) -> None:
    async with harness(tmp_path, rate_limit_tokens_per_minute=1) as h:
        assert (await h.client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # 2 tokens: in debt
        r = await h.client.post("/api/chat", json={**CHAT, "stream": False})
        assert r.status_code == 429 and "too many generated tokens" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        assert (await h.client.get("/v1/models")).status_code == 200  # only generations are held back


async def test_concurrent_generations_per_client_are_capped(tmp_path: Path) -> None:
    engine = FakeEngine(gate=asyncio.Event())
    async with harness(tmp_path, engine=engine, max_generations_per_client=1) as h:
        first = asyncio.create_task(h.client.post("/v1/chat/completions", json=CHAT))
        while not engine.submitted:
            await asyncio.sleep(0.01)
        r = await h.client.post("/api/generate", json={"model": "tiny:latest", "prompt": "x", "stream": False})
        assert r.status_code == 429 and "more than 1 generations at once" in r.json()["error"]
        assert engine.gate is not None
        engine.gate.set()
        assert (await first).status_code == 200
        assert (await h.client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # the slot is back


async def test_a_stalled_body_is_a_408() -> None:
    app = FastAPI()

    @app.post("/v1/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    guarded = RateLimitMiddleware(app, limits=Limits(), body_timeout=0.2)
    sent: list[dict[str, object]] = []
    chunks = [{"type": "http.request", "body": b'{"a": ', "more_body": True}]

    async def receive() -> dict[str, object]:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the rest of the body never comes
        raise AssertionError

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/echo", "headers": [(b"content-type", b"application/json")],
             "query_string": b"", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "scheme": "http",
             "http_version": "1.1", "root_path": "", "asgi": {"version": "3.0"}}  # fmt: skip
    await asyncio.wait_for(guarded(scope, receive, send), 10)  # type: ignore[arg-type]
    assert sent[0]["status"] == 408
    assert b"did not arrive within 0.2 s" in b"".join(m.get("body", b"") for m in sent)  # type: ignore[misc]


def test_the_header_deadline_closes_a_slowloris_connection_but_serves_normal_clients() -> None:
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=uvicorn_protocol(0.5), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and never the blank line
            assert slow.recv(1024) == b""  # closed by the server
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/ok").json() == {"ok": True}
            time.sleep(0.7)  # past the deadline while idle between requests: keep-alive still works
            assert client.get("/ok").status_code == 200
    finally:
        server.should_exit = True
        thread.join(10)


async def test_verified_api_keys_get_their_own_buckets_wherever_they_come_from(tmp_path: Path) -> None:
    fast = {"password_time_cost": 1, "password_memory_kib": 1024, "password_parallelism": 1}
    async with harness(tmp_path, rate_limit_requests_per_minute=12, **fast) as h:  # burst of 2 per client
        accounts = h.app.state.accounts.accounts
        secrets = []
        for name in ("alice", "bob"):
            accounts.create_user(name, "correct mule staple 42")
            unlocked = accounts.authenticate_password(name, "correct mule staple 42")
            secrets.append(accounts.create_key(unlocked)[1])
        alice, bob = ({"Authorization": f"Bearer {s}"} for s in secrets)
        # Alice's first request is counted on the address (her key is not verified yet) and on her key.
        assert (await h.client.get("/v1/models", headers=alice)).status_code == 200
        assert (await h.client.get("/v1/models", headers=alice)).status_code == 200
        r = await h.client.get("/v1/models", headers=alice)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # her key's burst is spent
        # Bob, from the same address, has his own bucket once verified (his first request takes the
        # address's last token).
        assert (await h.client.get("/v1/models", headers=bob)).status_code == 200
        assert (await h.client.get("/v1/models", headers=bob)).status_code == 200
        assert (await h.client.get("/v1/models", headers=bob)).status_code == 429
        # An unverified token counts against the address, which is spent: no fresh bucket per made-up key.
        r = await h.client.get("/v1/models", headers={"Authorization": "Bearer hvn_made_up_0123456789"})
        assert r.status_code == 429
