"""Remote upstreams behind the chat contract: dialects, normalisation, routing, failover, bounded failure.

Every upstream here is a real process on loopback speaking vLLM's dialect (tests/support/fake_vllm.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest

from haven.chat.backend import (
    ChatRequest,
    Final,
    Grammar,
    JsonSchema,
    Limits,
    Message,
    Reasoning,
    ReasoningDelta,
    Sampling,
    TextDelta,
    collect,
)
from haven.chat.remote import RemoteChatBackend, request_body
from haven.chat.routing import Breaker, RoutingChatBackend, UpstreamPool, load_from_metrics
from haven.chat.upstreams import Upstream
from haven.errors import InvalidRequestError, ModelNotFoundError, UpstreamError, UpstreamUnavailableError
from tests.scaleout.conftest import FakeUpstream, start_fake

pytestmark = [pytest.mark.e2e]


def ask(text: str, *, key: str | None = None, model: str = "remote-model") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", text),), affinity_key=key)


async def routed(fakes: list[FakeUpstream], **kwargs: float) -> RoutingChatBackend:
    pool = UpstreamPool.build([Upstream(f.name, f.url, kind="vllm", read_timeout=kwargs.pop("read_timeout", 30))
                               for f in fakes], **kwargs)  # type: ignore[arg-type]
    await pool.check_all()
    return RoutingChatBackend(None, pool)


def test_requests_are_written_in_each_upstream_s_dialect() -> None:
    request = ChatRequest(model="m", messages=(Message("user", "hi"),), reasoning=Reasoning(enabled=False),
                          sampling=Sampling(temperature=0.2, repeat_penalty=1.1, top_k=20),
                          limits=Limits(max_tokens=9, min_tokens=2, stop=("##",), stop_token_ids=(7,),
                                        include_stop=True), output=JsonSchema({"type": "object"}), seed=3)
    vllm = request_body(request, "vllm")
    assert vllm["repetition_penalty"] == 1.1 and vllm["min_tokens"] == 2 and vllm["stop_token_ids"] == [7]
    assert vllm["chat_template_kwargs"] == {"enable_thinking": False} and vllm["include_stop_str_in_output"]
    assert vllm["response_format"] == {"type": "json_schema", "json_schema": {"name": "response",
                                                                              "schema": {"type": "object"}}}
    assert vllm["stream_options"] == {"include_usage": True} and vllm["seed"] == 3 and vllm["top_k"] == 20
    llama = request_body(request, "llama-server")
    assert llama["repeat_penalty"] == 1.1 and "repetition_penalty" not in llama
    assert request_body(ChatRequest(model="m", messages=(), output=Grammar("root ::= \"a\"")), "llama-server")[
        "grammar"] == 'root ::= "a"'
    with pytest.raises(InvalidRequestError, match="GBNF"):
        request_body(ChatRequest(model="m", messages=(), output=Grammar("root ::= \"a\"")), "openai-compatible")


async def test_the_chat_request_is_the_one_httpx_would_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request is assembled from parts prepared once (time to first token); it must be byte for byte what
    ``client.build_request(json=...)`` makes: method, URL, body, every header, and the upstream's timeouts."""
    monkeypatch.setenv("GPU1_KEY", "sk-secret")
    upstream = Upstream("gpu1", "http://10.0.0.5:8000/v1", kind="vllm", api_key_env="GPU1_KEY",
                        connect_timeout=2.5, read_timeout=40)
    async with httpx.AsyncClient(trust_env=False) as client:
        backend = RemoteChatBackend(upstream, client)
        body = request_body(ChatRequest(model="m", messages=(Message("user", "naïve ✓ \"quoted\""),)), "vllm")
        ours = backend._chat_request(body)
        theirs = client.build_request("POST", "http://10.0.0.5:8000/v1/chat/completions", json=body,
                                      headers={"Authorization": "Bearer sk-secret"}, timeout=backend._timeout())
    assert (ours.method, ours.url, ours.content) == (theirs.method, theirs.url, theirs.content)
    assert sorted(ours.headers.multi_items()) == sorted(theirs.headers.multi_items())
    assert ours.extensions["timeout"] == theirs.extensions["timeout"] == {
        "connect": 2.5, "read": 40, "write": 40, "pool": 2.5}
    with pytest.raises(ValueError):  # as httpx: a NaN is not JSON
        backend._chat_request({**body, "temperature": float("nan")})


async def test_a_stream_is_normalised_reasoning_text_and_usage(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes[:1])
    try:
        events = [e async for e in await backend.chat(ask("hello there"))]
        assert isinstance(events[0], ReasoningDelta) and events[0].text == "thinking"
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "gpu1: hello there "
        final = events[-1]
        assert isinstance(final, Final) and final.finish_reason == "stop" and final.error is None
        assert (final.usage.prompt_tokens, final.usage.cached_tokens) == (5, 2)
        fakes[0].mode("think_inline")
        result = await collect(await backend.chat(ask("x")))
        assert result.reasoning == "thinking" and result.content.startswith("gpu1: x")
    finally:
        await backend.pool.close()


async def test_remote_models_are_listed_once_marked_with_their_upstream(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes)
    try:
        cards = backend.models()
        assert [(c.name, c.owned_by) for c in cards] == [("remote-model", "upstream:gpu1+gpu2")]
        assert backend.model("remote-model").metadata["haven.remote"] is True
        with pytest.raises(ModelNotFoundError):
            await backend.chat(ask("x", model="nobody-serves-this"))
    finally:
        await backend.pool.close()


async def test_affinity_keeps_a_conversation_on_one_upstream_and_spreads_the_rest(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes)
    try:
        seen = {(await collect(await backend.chat(ask("q", key="conversation-42")))).content.split(":")[0]
                for _ in range(8)}
        assert len(seen) == 1
        spread = {(await collect(await backend.chat(ask("q", key=f"c{i}")))).content.split(":")[0]
                  for i in range(16)}
        assert spread == {"gpu1", "gpu2"}
    finally:
        await backend.pool.close()


async def test_least_outstanding_goes_around_a_busy_upstream(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes)
    try:
        busy = backend.pool.members[0]
        busy.backend.outstanding += 5  # five long answers in flight there
        answers = [(await collect(await backend.chat(ask("q")))).content.split(":")[0] for _ in range(4)]
        assert answers == ["gpu2"] * 4
        busy.backend.outstanding -= 5
    finally:
        await backend.pool.close()


async def test_a_failure_before_the_first_byte_is_retried_elsewhere(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes)
    try:
        fakes[0].mode("fail_before")
        key = next(f"k{i}" for i in range(100) if backend.pool.choose("remote-model", affinity_key=f"k{i}").name
                   == "gpu1")
        result = await collect(await backend.chat(ask("hello", key=key)))
        assert result.content.startswith("gpu2: hello") and result.final.error is None
        assert backend.pool.members[0].breaker.consecutive == 1
    finally:
        await backend.pool.close()


@pytest.mark.parametrize("mode", ["fail_mid", "end_early"])
async def test_a_failure_mid_stream_ends_with_a_clear_error_and_keeps_what_arrived(fakes: list[FakeUpstream],
                                                                                   mode: str) -> None:
    """A dropped connection, or a body that ends before the answer does: an error, not a short answer."""
    backend = await routed(fakes[:1])
    try:
        fakes[0].mode(mode)
        result = await collect(await backend.chat(ask("one two three four")))
        assert result.final.finish_reason == "error" and result.final.error is not None
        assert result.final.error.code == "upstream_error" and "incomplete" in result.final.error.message
        assert result.reasoning == "thinking" and result.content == "gpu1: "
    finally:
        await backend.pool.close()


@pytest.mark.parametrize(("mode", "error", "match"), [
    ("garbage", UpstreamError, "not JSON"), ("huge", UpstreamError, "oversized"),
    ("error_event", UpstreamError, "out of KV cache"), ("hang", UpstreamUnavailableError, "timed out"),
])
async def test_bad_upstreams_give_a_clear_error_in_bounded_time(fakes: list[FakeUpstream], mode: str,
                                                                error: type[Exception], match: str) -> None:
    backend = await routed(fakes[:1], read_timeout=1.0)
    try:
        fakes[0].mode(mode)
        started = time.monotonic()
        with pytest.raises(error, match=match):
            await backend.chat(ask("x"))
        assert time.monotonic() - started < 10
    finally:
        await backend.pool.close()


async def test_a_breaker_opens_after_failures_and_half_opens_after_its_cooldown() -> None:
    now = [0.0]
    breaker = Breaker(failures=3, cooldown=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record(False)
    assert breaker.state == "closed" and breaker.allows()
    breaker.record(False)
    assert breaker.state == "open" and not breaker.allows()
    now[0] = 10.5
    assert breaker.state == "half-open" and breaker.allows() and not breaker.allows()  # one trial at a time
    breaker.record(False)
    assert breaker.state == "open"
    now[0] = 21
    assert breaker.allows()
    breaker.record(True)
    assert breaker.state == "closed"


async def test_an_unreachable_upstream_is_reported_by_the_health_check(fakes: list[FakeUpstream]) -> None:
    pool = UpstreamPool.build([Upstream("gone", "http://127.0.0.1:9/v1", connect_timeout=1),
                               Upstream(fakes[0].name, fakes[0].url)])
    try:
        results = await pool.check_all()
        assert results["gpu1"] is None
        assert "did not answer" in (results["gone"] or "")
    finally:
        await pool.close()


def test_load_is_read_from_vllm_and_haven_metrics() -> None:
    assert load_from_metrics('vllm:num_requests_running{model_name="m"} 3\nvllm:num_requests_waiting 2\n') == 5
    assert load_from_metrics("haven_queue_depth 4\nother 9\n") == 4
    assert load_from_metrics("nothing here 1\n") is None


async def test_a_sigkilled_upstream_fails_in_flight_requests_and_the_survivor_takes_the_rest() -> None:
    doomed, survivor = start_fake("doomed"), start_fake("survivor")
    backend = await routed([doomed, survivor])
    try:
        doomed.mode("slow")
        key = next(f"k{i}" for i in range(100) if backend.pool.choose("remote-model", affinity_key=f"k{i}").name
                   == "doomed")
        in_flight = asyncio.create_task(collect(await backend.chat(ask("a b c d e f", key=key))))
        await asyncio.sleep(0.3)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait()
        cut = await asyncio.wait_for(in_flight, 10)
        assert cut.final.finish_reason == "error" and cut.final.error and "incomplete" in cut.final.error.message
        after = [await collect(await backend.chat(ask("after", key=f"k{i}"))) for i in range(6)]
        assert all(r.content.startswith("survivor: after") and r.final.error is None for r in after)
    finally:
        await backend.pool.close()
        for fake in (doomed, survivor):
            fake.process.kill()
            fake.process.wait()


async def test_with_redaction_on_the_upstream_never_sees_personal_data(fakes: list[FakeUpstream]) -> None:
    reported: list[tuple[str, dict]] = []
    pool = UpstreamPool.build([Upstream(fakes[0].name, fakes[0].url, kind="vllm")], redact=True,
                              on_redacted=lambda model, counts: reported.append((model, dict(counts))))
    await pool.check_all()
    backend = RoutingChatBackend(None, pool)
    try:
        before = len(fakes[0].received())
        text = "mail anna.li@example.org or call +44 20 7946 0958 about card 4111 1111 1111 1111"
        result = await collect(await backend.chat(ask(text)))
        sent = json.dumps(fakes[0].received()[before:])
        assert "anna.li@example.org" not in sent and "7946 0958" not in sent and "4111" not in sent
        assert "[EMAIL_1]" in sent and "[PHONE_1]" in sent and "[CARD_1]" in sent
        assert result.content == f"gpu1: {text} "  # the echo, restored for the user
        assert reported == [("remote-model", {"EMAIL": 1, "PHONE": 1, "CARD": 1})]
    finally:
        await pool.close()


async def test_finished_streams_give_their_connection_back_to_the_pool(fakes: list[FakeUpstream]) -> None:
    backend = await routed(fakes[:1])
    try:
        before = len(fakes[0].peers())
        for i in range(3):
            result = await collect(await backend.chat(ask(f"again {i}")))
            assert result.content.startswith("gpu1: again")
        # Read to the end of the body after [DONE]: one keep-alive connection, not a new TCP connect per chat.
        assert len(set(fakes[0].peers()[before:])) == 1
    finally:
        await backend.pool.close()
