"""Havens in front of Havens: two real `haven serve` instances are the upstreams of a third.

The real `openai` and `ollama` clients talk to the front one; a model it does not have itself is routed to the
two behind it. The same calls against a local model and a remote one give the same response shapes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import ollama
import openai
import pytest
import yaml

from tests.e2e.conftest import HavenServer, start_haven_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def havens(make_test_model: Callable[..., Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HavenServer, list[HavenServer]]]:
    settings = {"parallel": 2, "context_length": 1024}
    with start_haven_server(tmp_path_factory.mktemp("back-a"), {"shared": make_test_model()}, **settings) as a, \
            start_haven_server(tmp_path_factory.mktemp("back-b"), {"shared": make_test_model()}, **settings) as b:
        front_home = tmp_path_factory.mktemp("front")
        (front_home / "upstreams.yaml").write_text(yaml.safe_dump({"upstreams": [
            {"name": "a", "url": a + "/v1", "kind": "haven"}, {"name": "b", "url": b + "/v1", "kind": "haven"}]}))
        with start_haven_server(front_home, {"local": make_test_model()}, **settings) as front:
            yield front, [a, b]


def served_by(back: list[HavenServer]) -> list[int]:
    """How many chat requests each back server logged."""
    return [server.log().count("/v1/chat/completions") for server in back]


def wait_for_remote_models(client: openai.OpenAI) -> list[str]:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = [m.id for m in client.models.list().data]
        if "shared:latest" in names:
            return names
        time.sleep(0.2)
    return names


def test_remote_models_are_listed_beside_local_ones(havens: tuple[HavenServer, list[HavenServer]]) -> None:
    front, _ = havens
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused")
    assert set(wait_for_remote_models(client)) >= {"local:latest", "shared:latest"}
    owners = {m.id: m.owned_by for m in client.models.list().data}
    assert owners["shared:latest"] == "upstream:a+b" and owners["local:latest"] != owners["shared:latest"]


@pytest.mark.parametrize("model", ["local", "shared"])
def test_the_openai_client_gets_the_same_shapes_from_local_and_remote(
        havens: tuple[HavenServer, list[HavenServer]], model: str) -> None:
    front, _ = havens
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused")
    wait_for_remote_models(client)
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=6)
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=6, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


@pytest.mark.parametrize("model", ["local", "shared"])
def test_the_ollama_client_gets_the_same_shapes_from_local_and_remote(
        havens: tuple[HavenServer, list[HavenServer]], model: str) -> None:
    front, _ = havens
    wait_for_remote_models(openai.OpenAI(base_url=front + "/v1", api_key="unused"))
    client = ollama.Client(host=front)
    reply = client.chat(model=model, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 6})
    assert reply.done and reply.done_reason in ("stop", "length") and reply.eval_count
    parts = list(client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
                             options={"num_predict": 6}))
    assert parts[-1].done and not parts[0].done
    assert model in [m.model.split(":")[0] for m in client.list().models]


def test_a_conversation_stays_on_one_upstream_and_survives_a_sigkill(
        havens: tuple[HavenServer, list[HavenServer]]) -> None:
    front, back = havens
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0)
    wait_for_remote_models(client)
    before = served_by(back)
    for _ in range(4):
        client.chat.completions.create(model="shared", messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                       user="conversation-7")
    import time

    deadline = time.monotonic() + 5  # a request's log line is written just after its response
    while True:
        grew = [after - was for after, was in zip(served_by(back), before, strict=True)]
        if sum(grew) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(grew) == [0, 4]  # all four on the same upstream
    chosen = back[grew.index(4)]
    chosen.process.send_signal(signal.SIGKILL)
    chosen.process.wait()
    replies = [client.chat.completions.create(model="shared", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=4, user="conversation-7") for _ in range(3)]
    assert all(r.choices[0].finish_reason in ("stop", "length") for r in replies)


def test_metrics_show_each_upstream(havens: tuple[HavenServer, list[HavenServer]]) -> None:
    import httpx

    front, _ = havens
    text = httpx.get(front + "/metrics", timeout=10).text
    for name in ("a", "b"):
        assert f'haven_upstream_requests_total{{upstream="{name}"}}' in text
        assert f'haven_upstream_healthy{{upstream="{name}"}}' in text
    assert 'haven_upstream_first_event_seconds_total{upstream=' in text
