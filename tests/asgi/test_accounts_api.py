"""The accounts HTTP API in-process: local mode, sign-in, the isolation matrix, bad input, conversation_id recording.

Runs on SQLite and on a real PostgreSQL (marker ``postgres``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import update

from haven.server.app import create_app
from haven.settings import Settings
from haven.storage.models import ApiKey
from tests.support.accounts import OTHER_PASSWORD, PASSWORD, database_url
from tests.support.fake_engine import FakeLoader, FakeStore

CANARY = "canary-4b1d-9e77-only-bob-knows"
FAST = {
    "password_time_cost": 1,
    "password_memory_kib": 1024,
    "password_parallelism": 1,
    "login_failure_delay_seconds": 0.0,
}


@dataclass
class Api:
    app: Any
    anon: httpx.AsyncClient

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1", headers=headers, timeout=30
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def api(request: pytest.FixtureRequest, tmp_path: Path, backend: str, **settings: Any) -> AsyncIterator[Api]:
    url = database_url(request, tmp_path, backend)
    store = FakeStore(tmp_path / "store", names=("tiny:latest",))
    app = create_app(
        Settings(home=tmp_path / "haven-home", database_url=url, default_model="tiny:latest", **{**FAST, **settings}),
        engine_loader=FakeLoader(),
        store=store,
    )
    probe = Api(app, httpx.AsyncClient())
    async with probe.client() as anon:
        probe.anon = anon
        yield probe
    await app.state.model_manager.close()
    app.state.accounts.close()


async def login(a: Api, name: str, password: str) -> httpx.AsyncClient:
    client = a.client()
    r = await client.post("/api/v1/auth/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


async def two_users(a: Api) -> tuple[httpx.AsyncClient, httpx.AsyncClient, str]:
    """alice (admin, by first-run setup) and bob (user, made by alice); returns their cookie clients and bob's id."""
    r = await a.anon.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
    assert r.status_code == 201, r.text
    assert r.json()["recovery_code"] and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    a.anon.cookies.clear()  # setup signed the anonymous client in; keep it anonymous
    alice = await login(a, "alice", PASSWORD)
    r = await alice.post("/api/v1/admin/users", json={"name": "bob", "password": OTHER_PASSWORD})
    assert r.status_code == 201, r.text
    bob = await login(a, "bob", OTHER_PASSWORD)
    return alice, bob, r.json()["user"]["id"]


CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


async def test_local_mode_then_first_user_takes_over(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    async with api(request, tmp_path, backend) as a:
        r = await a.anon.get("/api/v1/auth/status")
        assert r.json()["mode"] == "local" and r.json()["setup_required"] and r.json()["user"]["local"]
        conv = (await a.anon.post("/api/v1/conversations", json={"title": "local chat"})).json()
        r = await a.anon.post("/v1/chat/completions", json={**CHAT, "conversation_id": conv["id"]})
        assert r.status_code == 200 and r.headers["x-haven-conversation-id"] == conv["id"]
        assert (tmp_path / "haven-home" / "local-data.key").stat().st_mode & 0o777 == 0o600
        r = await a.anon.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
        assert r.status_code == 201
        assert "haven_session" in a.anon.cookies  # setup signed alice in
        async with a.client() as stranger:
            r = await stranger.get("/v1/models")
            assert r.status_code == 401  # a user exists now: no more credential-free access
            r = await stranger.post("/api/v1/auth/setup", json={"name": "eve", "password": OTHER_PASSWORD})
            assert r.status_code == 409
        alice = await login(a, "alice", PASSWORD)
        got = (await alice.get(f"/api/v1/conversations/{conv['id']}")).json()
        assert [m["content"] for m in got["messages"]] == ["hi", "Hello world"]
        assert got["messages"][1]["incomplete"] is False and got["messages"][1]["usage"]["completion_tokens"]
        await alice.aclose()


async def test_isolation_matrix(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    async with api(request, tmp_path, backend) as a:
        alice, bob, bob_id = await two_users(a)
        r = await alice.post("/api/v1/me/keys", json={"label": "alice laptop"})
        alice_key = r.json()["key"]["id"]
        r = await bob.post("/api/v1/me/keys", json={"label": "bob laptop"})
        bob_bearer = a.client(Authorization=f"Bearer {r.json()['secret']}")
        conv = (await alice.post("/api/v1/conversations", json={"title": "alice private"})).json()
        cid = conv["id"]
        first = await alice.post(f"/api/v1/conversations/{cid}/messages", json={"role": "user", "content": "x"})
        mid = first.json()["id"]
        bobs = (await bob.post("/api/v1/conversations", json={"title": f"bob {CANARY}"})).json()
        await bob.post(
            "/v1/chat/completions",
            json={**CHAT, "messages": [{"role": "user", "content": CANARY}], "conversation_id": bobs["id"]},
        )
        async with bob_bearer:
            for client in (bob, bob_bearer):
                calls = [
                    client.get(f"/api/v1/conversations/{cid}"),
                    client.patch(f"/api/v1/conversations/{cid}", json={"title": "pwned"}),
                    client.post(f"/api/v1/conversations/{cid}/messages", json={"role": "user", "content": "y"}),
                    client.get(f"/api/v1/conversations/{cid}/export"),
                    client.get(f"/api/v1/conversations/{cid}/export?format=markdown"),
                    client.delete(f"/api/v1/conversations/{cid}"),
                    client.delete(f"/api/v1/me/keys/{alice_key}"),
                    client.post("/v1/chat/completions", json={**CHAT, "conversation_id": cid}),
                    client.post("/v1/chat/completions", json={**CHAT, "conversation_id": cid, "stream": True}),
                    client.post("/api/chat", json={**CHAT, "conversation_id": cid}),
                    client.post(
                        "/v1/chat/completions", json={**CHAT, "conversation_id": bobs["id"], "parent_message_id": mid}
                    ),
                ]
                for call in calls:
                    r = await call
                    assert r.status_code in (404, 400), (r.request.method, r.request.url, r.status_code, r.text)
                listed = (await client.get("/api/v1/conversations")).json()["data"]
                assert [c["id"] for c in listed] == [bobs["id"]]
                exported = (await client.get("/api/v1/conversations/export")).text
                assert "alice private" not in exported and CANARY in exported
                for path in ("/api/v1/admin/users", "/api/v1/admin/security-log"):
                    assert (await client.get(path)).status_code == 403
        after = (await alice.get(f"/api/v1/conversations/{cid}")).json()
        assert after["title"] == "alice private" and len(after["messages"]) == 1  # nothing changed or appended
        assert [k["id"] for k in (await alice.get("/api/v1/me/keys")).json()["data"]] == [alice_key]
        # an admin manages, it does not read: no route gives alice bob's text
        texts = [
            (await alice.get(f"/api/v1/conversations/{bobs['id']}")).text,
            (await alice.get("/api/v1/admin/users")).text,
            (await alice.get("/api/v1/admin/security-log?limit=1000")).text,
            (await alice.get("/api/v1/conversations/export")).text,
        ]
        assert all(CANARY not in t for t in texts)
        users = {u["name"]: u for u in (await alice.get("/api/v1/admin/users")).json()["data"]}
        assert users["bob"]["conversation_count"] == 1 and users["bob"]["usage"]["requests"] == 1
        await alice.aclose()
        await bob.aclose()


async def test_bad_input(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    async with api(request, tmp_path, backend, max_message_chars=1000, login_max_failures_per_account=3) as a:
        alice, bob, bob_id = await two_users(a)
        r = await alice.post("/api/v1/admin/users", json={"name": "BOB", "password": OTHER_PASSWORD})
        assert r.status_code == 409 and r.json()["error"]["code"] == "user_exists"
        r = await alice.post("/api/v1/admin/users", json={"name": "carol", "password": "password123"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "weak_password"
        for _ in range(3):
            r = await a.anon.post("/api/v1/auth/login", json={"name": "bob", "password": "wrong wrong wrong"})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_credentials"
        r = await a.anon.post("/api/v1/auth/login", json={"name": "bob", "password": OTHER_PASSWORD})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # keys: expired, revoked, in the query string
        made = (await alice.post("/api/v1/me/keys", json={"expires_days": 1})).json()
        key_client = a.client(Authorization=f"Bearer {made['secret']}")
        async with key_client:
            assert (await key_client.get("/api/v1/conversations")).status_code == 200
            r = await a.anon.get(f"/v1/models?api_key={made['secret']}")
            assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_in_query"
            with a.app.state.accounts.db.session() as s:
                s.execute(
                    update(ApiKey)
                    .where(ApiKey.id == made["key"]["id"])
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
                )
            assert (await key_client.get("/api/v1/conversations")).status_code == 401
            again = (await alice.post("/api/v1/me/keys", json={})).json()
            key_client.headers["Authorization"] = f"Bearer {again['secret']}"
            assert (await key_client.get("/v1/models")).status_code == 200
            assert (await alice.delete(f"/api/v1/me/keys/{again['key']['id']}")).status_code == 204
            assert (await key_client.get("/v1/models")).status_code == 401
        # sessions: forged and malformed cookies, missing CSRF token
        forged = a.client()
        async with forged:
            for value in ("garbage", "0" * 32 + "." + "A" * 43):
                forged.cookies.set("haven_session", value)
                r = await forged.get("/api/v1/conversations")
                assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        csrf = alice.headers.pop("X-CSRF-Token")
        r = await alice.post("/api/v1/conversations", json={"title": "no csrf"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
        r = await alice.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 403
        alice.headers["X-CSRF-Token"] = "wrong"
        assert (await alice.delete("/api/v1/conversations/" + "0" * 32)).status_code == 403
        alice.headers["X-CSRF-Token"] = csrf
        # ids, sizes, unknown conversation
        for bad in ("not-an-id", "0" * 32, "../../etc"):
            assert (await alice.get(f"/api/v1/conversations/{bad}")).status_code == 404
        r = await alice.post("/api/v1/conversations", json={"title": "t" * 301})
        assert r.status_code == 400 and r.json()["error"]["code"] == "title_too_long"
        cid = (await alice.post("/api/v1/conversations", json={})).json()["id"]
        r = await alice.post(f"/api/v1/conversations/{cid}/messages", json={"role": "user", "content": "x" * 1001})
        assert r.status_code == 400 and r.json()["error"]["code"] == "message_too_long"
        r = await alice.post("/v1/chat/completions", json={**CHAT, "conversation_id": "f" * 32})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await alice.post("/api/chat", json={**CHAT, "conversation_id": "f" * 32})
        assert r.status_code == 404 and "error" in r.json()
        r = await alice.post("/api/v1/conversations?limit=0", json={})
        assert (await alice.get("/api/v1/conversations?limit=0")).status_code == 400
        assert (await alice.get("/api/v1/conversations?cursor=bogus")).status_code == 400
        got = (await alice.get(f"/api/v1/conversations/{cid}")).json()
        assert got["messages"] == [] and got["title"] == "New conversation"  # nothing stored by any refusal
        # logout revokes the server-side session
        cookie = alice.cookies.get("haven_session")
        assert (await alice.post("/api/v1/auth/logout")).status_code == 204
        replay = a.client()
        async with replay:
            replay.cookies.set("haven_session", cookie or "")
            assert (await replay.get("/api/v1/me")).status_code == 401
        await alice.aclose()
        await bob.aclose()


async def test_conversation_id_records_streams_branches_and_logs(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    async with api(request, tmp_path, backend) as a:
        alice, bob, _ = await two_users(a)
        cid = (await alice.post("/api/v1/conversations", json={"title": "t"})).json()["id"]
        r = await alice.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "conversation_id": cid, "temperature": 0.3}
        )
        assert r.status_code == 200 and "data: [DONE]" in r.text
        reply_id = r.headers["x-haven-message-id"]
        conv = (await alice.get(f"/api/v1/conversations/{cid}")).json()
        user_msg, reply = conv["messages"]
        assert reply["id"] == reply_id and reply["content"] == "Hello world" and reply["parent_id"] == user_msg["id"]
        assert reply["sampling"]["temperature"] == 0.3 and reply["model"] == "tiny" and not reply["incomplete"]
        assert reply["finish_reason"] == "stop" and reply["timings"]["total_ms"] >= 0
        # edit-and-resend: a sibling of the first user message
        r = await alice.post(
            "/api/chat",
            json={
                "model": "tiny",
                "stream": False,
                "conversation_id": cid,
                "parent_message_id": None,
                "messages": [{"role": "user", "content": "hi, edited"}],
            },
        )
        assert r.status_code == 200
        conv = (await alice.get(f"/api/v1/conversations/{cid}")).json()
        assert len(conv["messages"]) == 4 and conv["messages"][2]["parent_id"] is None
        # regenerate under the first user message: the request's user turn is not stored twice
        r = await alice.post(
            "/v1/chat/completions", json={**CHAT, "conversation_id": cid, "parent_message_id": user_msg["id"]}
        )
        conv = (await alice.get(f"/api/v1/conversations/{cid}")).json()
        assert len(conv["messages"]) == 5
        assert sorted(next(m for m in conv["messages"] if m["id"] == user_msg["id"])["children"]) == sorted(
            [reply_id, conv["current_leaf_id"]]
        )
        r = await alice.patch(f"/api/v1/conversations/{cid}", json={"current_leaf_id": reply_id, "title": "renamed"})
        assert r.json()["current_leaf_id"] == reply_id and r.json()["title"] == "renamed"
        md = (await alice.get(f"/api/v1/conversations/{cid}/export?format=markdown")).text
        assert "# renamed" in md and "Hello world" in md
        log = (await alice.get("/api/v1/admin/security-log?event=chat_request")).json()["data"]
        assert len(log) == 3 and all("hi" not in json.dumps(e["details"]) for e in log)
        assert log[0]["user"] == "alice" and log[0]["details"]["model"] == "tiny"
        assert (await alice.get("/api/v1/admin/security-log/verify")).json()["ok"] is True
        assert (await alice.delete(f"/api/v1/conversations/{cid}")).status_code == 204
        assert (await alice.get(f"/api/v1/conversations/{cid}")).status_code == 404
        await alice.aclose()
        await bob.aclose()


async def test_redaction_before_storage_keeps_placeholders_not_values(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with api(request, tmp_path, "sqlite", redact="outbound+storage") as a:
        conv = (await a.anon.post("/api/v1/conversations", json={"title": "t"})).json()
        secret = "write to anna.li@example.org, card 4111 1111 1111 1111"
        r = await a.anon.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": secret}],
                                                           "conversation_id": conv["id"]})
        assert r.status_code == 200
        stored = (await a.anon.get(f"/api/v1/conversations/{conv['id']}")).json()["messages"]
        assert stored[0]["content"] == "write to [EMAIL_1], card [CARD_1]"  # even decrypted, the values are gone


async def test_admin_reset_warns_then_loses_data(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    async with api(request, tmp_path, backend) as a:
        alice, bob, bob_id = await two_users(a)
        await bob.post("/api/v1/conversations", json={"title": "bob's"})
        r = await alice.post(
            f"/api/v1/admin/users/{bob_id}/reset-password", json={"new_password": "fresh lantern 2026"}
        )
        assert r.status_code == 409 and r.json()["error"]["code"] == "data_loss_confirmation_required"
        assert (await bob.get("/api/v1/conversations")).json()["data"]  # nothing happened yet
        r = await alice.post(
            f"/api/v1/admin/users/{bob_id}/reset-password",
            json={"new_password": "fresh lantern 2026", "confirm_data_loss": True},
        )
        assert r.status_code == 200 and r.json()["data_lost"] and r.json()["recovery_code"]
        assert (await bob.get("/api/v1/conversations")).status_code == 401  # sessions revoked
        bob2 = await login(a, "bob", "fresh lantern 2026")
        assert (await bob2.get("/api/v1/conversations")).json()["data"] == []
        await bob2.aclose()
        r = await alice.patch(f"/api/v1/admin/users/{bob_id}", json={"disabled": True})
        assert r.json()["disabled"] is True
        r = await a.anon.post("/api/v1/auth/login", json={"name": "bob", "password": "fresh lantern 2026"})
        assert r.status_code == 403
        assert (await alice.delete(f"/api/v1/admin/users/{bob_id}")).status_code == 204
        await alice.aclose()
        await bob.aclose()


def test_public_bind_allowed_once_a_user_exists(tmp_path: Path) -> None:
    from haven.accounts.service import Accounts
    from haven.errors import ConfigurationError
    from haven.server.auth import check_bind_allowed
    from haven.storage.db import open_database
    from tests.support.accounts import FAST as FAST_PARAMS

    settings = Settings(home=tmp_path / "haven-home", host="0.0.0.0", **FAST)
    with pytest.raises(ConfigurationError, match="without an API key or a user account"):
        check_bind_allowed(settings)
    db = open_database(settings.effective_database_url)
    Accounts(db, home=settings.home, params=FAST_PARAMS).create_user("alice", PASSWORD)
    db.close()
    check_bind_allowed(settings)
    app = create_app(settings, engine_loader=FakeLoader(), store=FakeStore(tmp_path / "store"))
    assert app.state.accounts.has_users()
    app.state.accounts.close()


async def test_local_mode_ignores_placeholder_keys_but_not_once_users_exist(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with api(request, tmp_path, "sqlite") as a, a.client(Authorization="Bearer unused") as sdk:
        assert (await sdk.get("/v1/models")).status_code == 200  # SDKs always send some key
        await a.anon.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
        r = await sdk.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key."


@pytest.mark.parametrize("stream", [False, True])
async def test_recorded_turn_small_and_large_bodies(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small body is parsed on the event loop and a big one (over INLINE_PARSE_BYTES) in a worker thread: both
    record the same turn, streamed or not, and the reply is complete with its usage."""
    from haven.server.accounts import recording

    monkeypatch.setattr(recording, "INLINE_PARSE_BYTES", 512)  # the tiny model's context is below the real one
    async with api(request, tmp_path, backend) as a:
        cid = (await a.anon.post("/api/v1/conversations", json={"title": "sizes"})).json()["id"]
        for content in ("short question", "long " * 150):
            body = {**CHAT, "messages": [{"role": "user", "content": content}], "stream": stream}
            r = await a.anon.post("/v1/chat/completions", json={**body, "conversation_id": cid})
            assert r.status_code == 200 and r.headers["x-haven-conversation-id"] == cid, r.text[:300]
        messages = (await a.anon.get(f"/api/v1/conversations/{cid}")).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 2
        assert messages[0]["content"] == "short question" and len(messages[2]["content"]) > 512
        for reply in messages[1::2]:
            assert reply["content"] and not reply["incomplete"] and reply["finish_reason"]
            assert reply["model"] == CHAT["model"] and reply["timings"]["total_ms"] >= 0
            assert stream or reply["usage"]["completion_tokens"]  # a stream reports usage only if asked to


@pytest.mark.parametrize("stream", [False, True])
async def test_the_final_reply_is_stored_before_the_client_gets_its_end(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, stream: bool
) -> None:
    """Driven at the ASGI level: when the last body chunk is handed to the server, the reply is already stored
    complete (a server killed right after a client saw its answer has the answer on disk too)."""
    async with api(request, tmp_path, backend) as a:
        cid = (await a.anon.post("/api/v1/conversations", json={"title": "ordering"})).json()["id"]
        store, owner = a.app.state.accounts.conversations, a.app.state.accounts.accounts.local_owner()
        body = json.dumps({**CHAT, "stream": stream, "conversation_id": cid}).encode()
        seen: list[dict[str, Any]] = []

        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await anyio.sleep_forever()  # the client stays connected (a stream listens for a disconnect)
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                seen.extend(m.as_json() for m in store.get(owner, cid).messages or [])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await a.app(scope, receive, send)
        assert [m["role"] for m in seen] == ["user", "assistant"]
        assert seen[1]["content"] and not seen[1]["incomplete"] and seen[1]["finish_reason"] == "stop"
