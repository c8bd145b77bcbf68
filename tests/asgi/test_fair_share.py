"""The scheduler's fair-share key comes from who is signed in (issue 14 item 3): a user's API key and their
web session are one client, two users are two, and the shared service key falls back to the address."""

from __future__ import annotations

from pathlib import Path

import httpx

from haven.server.app import create_app
from haven.settings import Settings
from tests.asgi.test_accounts_api import FAST
from tests.support.accounts import OTHER_PASSWORD, PASSWORD
from tests.support.fake_engine import FakeEngine, FakeLoader, FakeStore, fake_info

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": False}
SERVICE_KEY = "service-key-for-the-fair-share-test"


async def sign_in(client: httpx.AsyncClient, name: str, password: str) -> httpx.AsyncClient:
    r = await client.post("/api/v1/auth/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


async def test_each_generation_carries_its_users_key_in_both_apis(tmp_path: Path) -> None:
    engine = FakeEngine(fake_info("tiny"))
    app = create_app(
        Settings(home=tmp_path / "home", default_model="tiny:latest", api_key=SERVICE_KEY, **FAST),
        engine_loader=FakeLoader(make=lambda name: engine),
        store=FakeStore(tmp_path / "store", names=("tiny:latest",)),
    )

    def client(**headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5000))
        return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers, timeout=30)

    try:
        async with client(Authorization=f"Bearer {SERVICE_KEY}") as service:
            r = await service.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
            assert r.status_code == 201, r.text
        async with client() as anon:
            alice = await sign_in(client(), "alice", PASSWORD)
            alice_id = (await alice.get("/api/v1/me")).json()["id"]
            r = await alice.post("/api/v1/admin/users", json={"name": "bob", "password": OTHER_PASSWORD})
            bob_id = r.json()["user"]["id"]
            bob = await sign_in(client(), "bob", OTHER_PASSWORD)
            key = (await bob.post("/api/v1/me/keys", json={"label": "bob laptop"})).json()["secret"]
            bob_bearer = client(Authorization=f"Bearer {key}")
            service = client(Authorization=f"Bearer {SERVICE_KEY}")
            sent: list[tuple[str, str]] = []
            for who, c in (("alice", alice), ("bob", bob), ("bob-key", bob_bearer), ("service", service)):
                for path, body in (
                    ("/v1/chat/completions", CHAT),
                    ("/v1/completions", {"model": "tiny", "prompt": "hi"}),
                    ("/api/chat", CHAT),
                    ("/api/generate", {"model": "tiny", "prompt": "hi", "stream": False}),
                ):
                    r = await c.post(path, json=body)
                    assert r.status_code == 200, (who, path, r.text)
                    sent.append((who, engine.submitted[-1].client_key))
            assert (await anon.post("/v1/chat/completions", json=CHAT)).status_code == 401
            for c in (alice, bob, bob_bearer, service):
                await c.aclose()
    finally:
        await app.state.model_manager.close()
        app.state.accounts.close()
    keys = {who: {k for w, k in sent if w == who} for who, _ in sent}
    assert keys == {
        "alice": {f"user:{alice_id}"},
        "bob": {f"user:{bob_id}"},
        "bob-key": {f"user:{bob_id}"},  # one person, whichever credential: one share
        "service": {"addr:10.1.2.3"},  # the shared service key names nobody: the address does
    }
