"""Remote generations are accounted like local ones: their tokens go to the client's rate-limit token bucket,
the security log and /metrics, including a stream the client leaves half-way (charged what arrived).

The upstream is a real fake-vLLM process on loopback (tests/support/fake_vllm.py); Haven runs in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from haven.chat.backend import ChatRequest, Message, TextDelta, Usage
from haven.chat.routing import RoutingChatBackend, UpstreamPool
from haven.chat.upstreams import Upstream
from tests.asgi.openai_support import harness
from tests.scaleout.conftest import FakeUpstream

pytestmark = [pytest.mark.e2e]
CHAT = {"model": "remote-model", "messages": [{"role": "user", "content": "hi"}]}


def write_upstreams(home: Path, fake: FakeUpstream) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "upstreams.yaml").write_text(yaml.safe_dump({"upstreams": [
        {"name": fake.name, "url": fake.url, "kind": "vllm", "models": ["remote-model"]}]}))


async def test_remote_tokens_fill_the_token_bucket_the_security_log_and_metrics(
        fakes: list[FakeUpstream], tmp_path: Path) -> None:
    write_upstreams(tmp_path / "home", fakes[0])
    async with harness(tmp_path, rate_limit_tokens_per_minute=2) as h:
        r = await h.client.post("/v1/chat/completions", json=CHAT)  # 3 tokens (the fake's usage): in debt
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "gpu1: hi "
        r = await h.client.post("/api/chat", json={**CHAT, "stream": False})
        assert r.status_code == 429 and "too many generated tokens" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        logged = [e.details for e in h.app.state.accounts.log.entries(event="chat_request")]
        assert [(d["status"], d["prompt_tokens"], d["completion_tokens"]) for d in logged] == [(200, 5, 3)]
        metrics = (await h.client.get("/metrics")).text
        assert 'haven_completion_tokens_total{model="remote-model"} 3.0' in metrics
        assert 'haven_time_to_first_token_seconds_count{model="remote-model"} 1.0' in metrics


async def test_a_stream_left_half_way_is_charged_what_arrived(fakes: list[FakeUpstream]) -> None:
    seen: list[tuple[str, str, Usage]] = []

    class Observer:
        def first_token(self, model: str, seconds: float) -> None:
            pass

        def finished(self, model: str, reason: str, usage: Usage, decode_seconds: float | None) -> None:
            seen.append((model, reason, usage))

    pool = UpstreamPool.build([Upstream(fakes[0].name, fakes[0].url, kind="vllm", models=("remote-model",))],
                              observer=Observer())
    backend = RoutingChatBackend(None, pool)
    fakes[0].mode("slow")
    try:
        stream = await backend.chat(ChatRequest(model="remote-model",
                                                messages=(Message("user", "one two three four five"),)))
        texts = 0
        async for event in stream:
            texts += isinstance(event, TextDelta)
            if texts == 2:
                break
        await stream.aclose()
        assert len(seen) == 1
        model, reason, usage = seen[0]
        # The reasoning chunk and two words arrived; the upstream's own usage never came.
        assert (model, reason, usage.completion_tokens) == ("remote-model", "cancelled", 3)
        complete = await backend.chat(ChatRequest(model="remote-model", messages=(Message("user", "x"),)))
        fakes[0].mode("ok")
        async for _ in complete:
            pass
        assert seen[1][1] == "stop" and seen[1][2].completion_tokens == 3  # the upstream's usage
    finally:
        await pool.close()
