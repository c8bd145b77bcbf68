"""Cross-site and DNS-rebinding defence: Host, Origin and content-type checks before any work is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.server.security import is_loopback_host, split_host
from tests.asgi.openai_support import harness

CROSS_SITE = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}
CHAT = {"model": "tiny:latest", "messages": [{"role": "user", "content": "hi"}], "stream": False}
GENERATE = {"model": "tiny:latest", "prompt": "hi", "stream": False}


def _nothing_ran(h: object) -> bool:
    loader = h.loader  # type: ignore[attr-defined]
    return not loader.engines or all(not e.submitted for e in loader.engines.values())


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8700", "127.0.0.1.evil.example", "10.0.0.2"])
async def test_a_foreign_host_on_a_loopback_bind_is_403_and_nothing_runs(tmp_path: Path, host: str) -> None:
    async with harness(tmp_path) as h:
        for path, body in (("/api/generate", GENERATE), ("/v1/chat/completions", CHAT)):
            r = await h.client.post(path, json=body, headers={"host": host})
            assert r.status_code == 403, r.text
            assert "DNS-rebinding" in json.dumps(r.json())
        assert (await h.client.get("/health", headers={"host": host})).status_code == 403
        assert _nothing_ran(h)


@pytest.mark.parametrize("host", ["localhost:8700", "127.0.0.1", "127.1.2.3:9", "[::1]:8700", "app.localhost"])
async def test_loopback_host_names_are_served(tmp_path: Path, host: str) -> None:
    async with harness(tmp_path) as h:
        assert (await h.client.post("/api/generate", json=GENERATE, headers={"host": host})).status_code == 200


async def test_a_public_bind_does_not_check_the_host(tmp_path: Path) -> None:
    async with harness(tmp_path, host="0.0.0.0", api_key="k" * 32) as h:
        r = await h.client.get("/health", headers={"host": "haven.example.org"})
        assert r.status_code == 200


async def test_a_cross_origin_text_plain_post_is_403_before_any_work(tmp_path: Path) -> None:
    # What any web page can send without a CORS preflight.
    async with harness(tmp_path) as h:
        for path, body in (("/api/generate", GENERATE), ("/api/pull", {"model": "hf.co/evil/x"}),
                           ("/v1/chat/completions", CHAT)):  # fmt: skip
            r = await h.client.post(
                path,
                content=json.dumps(body),
                headers={"content-type": "text/plain", "origin": "https://evil.example", **CROSS_SITE},
            )
            assert r.status_code == 403 and "not allowed" in r.text, r.text
        r = await h.client.post("/api/generate", json=GENERATE, headers={"origin": "null"})
        assert r.status_code == 403
        assert _nothing_ran(h)


async def test_same_origin_and_configured_origins_are_allowed(tmp_path: Path) -> None:
    async with harness(tmp_path, cors_origins=["https://ui.example"]) as h:
        own = {"host": "localhost:8700", "origin": "http://localhost:8700"}
        assert (await h.client.post("/api/generate", json=GENERATE, headers=own)).status_code == 200
        allowed = {"origin": "https://ui.example"}
        assert (await h.client.post("/v1/chat/completions", json=CHAT, headers=allowed)).status_code == 200
        other_port = {"host": "localhost:8700", "origin": "http://localhost:3000"}
        assert (await h.client.post("/api/generate", json=GENERATE, headers=other_port)).status_code == 403


async def test_v1_needs_a_json_content_type(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            r = await h.client.post("/v1/chat/completions", content=json.dumps(CHAT), headers=headers)
            assert r.status_code == 415, r.text
            assert r.json()["error"]["code"] == "unsupported_media_type"
        utf8 = {"content-type": "application/json; charset=utf-8"}
        r = await h.client.post("/v1/chat/completions", content=json.dumps(CHAT), headers=utf8)
        assert r.status_code == 200


# What real Ollama clients send: the Go `ollama` CLI / library, ollama-python (httpx), Open WebUI's backend
# (aiohttp), and `curl -d` from Ollama's own README (a form content type).
OLLAMA_CLIENTS = {
    "ollama-go": {"content-type": "application/json", "accept": "application/x-ndjson",
                  "user-agent": "ollama/0.5.7 (amd64 linux) Go/go1.23.4"},
    "ollama-python": {"content-type": "application/json", "accept": "application/json",
                      "user-agent": "ollama-python/0.4.7 (x86_64 linux) Python/3.12.8"},
    "open-webui": {"content-type": "application/json", "user-agent": "Python/3.11 aiohttp/3.11.11"},
    "curl -d": {"content-type": "application/x-www-form-urlencoded", "user-agent": "curl/8.5.0", "accept": "*/*"},
    "no content type": {"user-agent": "custom-script"},
}  # fmt: skip


@pytest.mark.parametrize("client", list(OLLAMA_CLIENTS))
async def test_the_ollama_api_accepts_what_real_clients_send(tmp_path: Path, client: str) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/api/generate", content=json.dumps(GENERATE), headers=OLLAMA_CLIENTS[client])
        assert r.status_code == 200, r.text
        assert r.json()["response"] == "Hello world"


async def test_a_browser_on_the_ollama_api_must_send_json(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        browser = {"content-type": "text/plain", "sec-fetch-mode": "no-cors", "sec-fetch-site": "same-origin"}
        r = await h.client.post("/api/generate", content=json.dumps(GENERATE), headers=browser)
        assert r.status_code == 415 and "JSON body" in r.json()["error"]


def test_host_helpers() -> None:
    assert split_host("[::1]:8700") == ("[::1]", "8700") and split_host("localhost") == ("localhost", "")
    assert all(map(is_loopback_host, ["localhost", "LOCALHOST.", "a.localhost", "127.9.9.9", "[::1]", "::1"]))
    assert not any(map(is_loopback_host, ["localhost.evil.example", "0.0.0.0", "10.0.0.1", "", "evil"]))
