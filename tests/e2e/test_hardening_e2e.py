"""Against a real ``haven serve``: payloads that used to freeze the event loop are refused while ``/health``
and another client's chat keep answering; a runaway template (imported with --allow-unsafe-template) fails
its request with a 400 while the server stays responsive; hostile hosts and origins are refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import HavenServer, start_haven_server
from tests.support.bad_gguf import CASES, build, read_model, write_model

pytestmark = pytest.mark.e2e

SILENT_LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}{% set x = a * b %}{% endfor %}{% endfor %}"
MANY_MESSAGES = {"model": "tiny", "messages": [{"role": "user", "content": "a"}] * 50_000, "stream": False}
MARKER_FLOOD = {"model": "tiny", "messages": [{"role": "user", "content": "<|im_end|>a" * 60_000}], "stream": False}


@pytest.fixture(scope="module")
def server(make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    work = tmp_path_factory.mktemp("hardening")
    model = read_model(make_test_model())
    model.kv["tokenizer.chat_template"] = (model.kv["tokenizer.chat_template"][0], SILENT_LOOP)
    runaway = write_model(model, work / "runaway.gguf")
    odd = build(next(c for c in CASES if c.expect == "accepted"), make_test_model(), work / "odd.gguf")
    models = {"tiny": make_test_model(), "runaway": runaway, "odd": odd}
    with start_haven_server(
        work / "home", models, default_model="tiny", parallel=2, context_length=4096, allow_unsafe_templates=True
    ) as url:
        yield url


class Watch:
    """Polls /health and runs small chats on other connections while the attack runs; records latencies."""

    def __init__(self, url: str) -> None:
        self.url, self.health, self.chats, self.errors = url, [], [], []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll_health), threading.Thread(target=self._chat)]

    def _poll_health(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                status = client.get("/health").status_code
                if status != 200:
                    self.errors.append(f"health {status}")
                self.health.append(time.perf_counter() - started)
                time.sleep(0.02)

    def _chat(self) -> None:
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                status = client.post("/v1/chat/completions", json=body).status_code
                if status != 200:
                    self.errors.append(f"chat {status}")
                self.chats.append(time.perf_counter() - started)
                # Paced like a person's client, to stay under the default 3,000 requests a minute per address.
                # (Flat out it also caught a real 500: tiny:latest unloaded for the runaway model between
                # its request's get and submit; tests/unit/test_model_manager.py now covers that.)
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_oversized_chats_are_refused_while_the_server_keeps_answering(server: HavenServer) -> None:
    # 50,000 messages pass the body limit and hit the 10,000-message cap of both APIs; 9,000 pass the cap and
    # are refused by the limit tied to the context (4,096 messages here); the marker flood by the characters.
    cases = [
        (MANY_MESSAGES, "at most 10000 items"),
        ({**MANY_MESSAGES, "messages": MANY_MESSAGES["messages"][:9_000]}, "accepts at most 4,096"),
        (MARKER_FLOOD, "accepts at most"),
    ]
    with Watch(server) as watch, httpx.Client(base_url=server, timeout=60) as attacker:
        for _ in range(3):
            for path in ("/api/chat", "/v1/chat/completions"):
                for payload, refusal in cases:
                    body = dict(payload) if path == "/api/chat" else {**payload, "stream": False}
                    r = attacker.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
                    assert r.status_code == 400, r.text[:300]
                    assert refusal in r.text, r.text[:300]
    assert not watch.errors and watch.health and watch.chats
    print(f"/health max {max(watch.health) * 1000:.0f} ms, chat max {max(watch.chats) * 1000:.0f} ms")
    # The bar is 100 ms for /health; on a shared 2-core CI box the test allows 1 s (the acceptance
    # criterion for another client's chat). Before the fix these payloads froze every client for 53-106 s.
    assert max(watch.health) < 1.0 and max(watch.chats) < 1.0


def test_a_runaway_template_fails_its_request_and_the_server_stays_responsive(server: HavenServer) -> None:
    body = {"model": "runaway", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with Watch(server) as watch, httpx.Client(base_url=server, timeout=60) as client:
        r = client.post("/api/chat", json=body)
    assert r.status_code == 400 and "took longer than" in r.json()["error"]
    assert not watch.errors and max(watch.health) < 1.0


@pytest.mark.parametrize("path", ["/v1/embeddings", "/api/embed"])
def test_a_lone_surrogate_reaching_the_real_tokenizer_is_a_400(server: HavenServer, path: str) -> None:
    body = '{"model": "tiny", "input": "a\\ud800b"}'
    r = httpx.post(server + path, content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "surrogate" in r.text


def test_rebinding_and_cross_site_posts_are_refused(server: HavenServer) -> None:
    generate = json.dumps({"model": "tiny", "prompt": "hi", "stream": False})
    r = httpx.post(server + "/api/generate", content=generate, headers={"host": "evil.example"})
    assert r.status_code == 403
    r = httpx.post(
        server + "/api/generate",
        content=generate,
        headers={"content-type": "text/plain", "origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert r.status_code == 403
    assert httpx.post(server + "/api/generate", content=generate).status_code == 200  # curl-style client


def test_an_odd_but_accepted_model_serves_and_the_others_keep_serving(server: HavenServer) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with httpx.Client(base_url=server, timeout=60) as client:
        odd = client.post("/v1/chat/completions", json={**body, "model": "odd"})
        assert odd.status_code in (200, 503), odd.text  # garbage weights: it runs (or is a clean 503)
        assert client.post("/v1/chat/completions", json={**body, "model": "tiny"}).status_code == 200
        assert client.get("/health").status_code == 200
