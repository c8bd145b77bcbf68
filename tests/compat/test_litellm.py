"""LiteLLM's ``ollama_chat/`` and ``openai/`` providers and its Responses bridge, against Haven."""

from __future__ import annotations

import litellm

from tests.e2e.conftest import HavenServer

HI = [{"role": "user", "content": "Hi"}]


def test_ollama_chat_provider(compat_server: HavenServer) -> None:
    reply = litellm.completion(model="ollama_chat/tiny", api_base=compat_server, messages=HI, max_tokens=6)
    assert reply.choices[0].message.role == "assistant"  # type: ignore[union-attr]
    chunks = list(
        litellm.completion(model="ollama_chat/tiny", api_base=compat_server, messages=HI, max_tokens=6, stream=True)
    )
    assert chunks


def test_openai_provider(compat_server: HavenServer) -> None:
    reply = litellm.completion(
        model="openai/tiny", api_base=compat_server + "/v1", api_key="unused", messages=HI, max_tokens=6
    )
    assert reply.usage.completion_tokens <= 6  # type: ignore[union-attr]


def test_responses(compat_server: HavenServer) -> None:
    r = litellm.responses(
        model="openai/tiny", api_base=compat_server + "/v1", api_key="unused", input="Hi", max_output_tokens=6
    )
    assert r.status in ("completed", "incomplete")
