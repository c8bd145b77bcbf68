"""The request shapes Open WebUI sends (recorded from its backend's ``ollama`` and ``openai`` routers):
model lists, a streamed chat with every advanced parameter set (copied to the top level of the body as
Open WebUI does), title and tag generation, and thinking."""

from __future__ import annotations

import json

import httpx

from tests.e2e.conftest import HavenServer

ADVANCED = {
    "temperature": 0.8,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": 7,
    "stop": ["<|im_end|>"],
    "num_ctx": 512,
    "num_predict": 8,
    "mirostat": 0,
    "mirostat_eta": 0.1,
    "mirostat_tau": 5.0,
    "num_keep": 24,
    "num_batch": 512,
    "num_thread": 2,
    "num_gpu": 0,
    "use_mmap": True,
    "use_mlock": False,
    "typical_p": 1.0,
    "tfs_z": 1.0,
}
MESSAGES = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello"}]


def test_model_lists(compat_server: HavenServer) -> None:
    assert httpx.get(compat_server + "/api/tags").json()["models"]
    assert httpx.get(compat_server + "/api/version").status_code == 200
    assert httpx.get(compat_server + "/v1/models").json()["data"]


def test_streamed_ollama_chat_with_every_advanced_parameter(compat_server: HavenServer) -> None:
    body = {
        "model": "tiny:latest",
        "messages": MESSAGES,
        "stream": True,
        "options": ADVANCED,
        "keep_alive": "5m",
        "format": None,
    }
    with httpx.stream("POST", compat_server + "/api/chat", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True


def test_streamed_openai_chat_with_parameters_at_the_top_level(compat_server: HavenServer) -> None:
    extra = {k: v for k, v in ADVANCED.items() if k not in ("stop",)}
    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        **{k: v for k, v in extra.items() if k != "num_predict"},
        "max_tokens": 8,
    }
    with httpx.stream("POST", compat_server + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200, r.read()
        ignored = r.headers.get("x-haven-ignored-fields", "")
        text = r.read().decode()
    assert text.rstrip().endswith("data: [DONE]")
    # Runner options nobody implements here are ignored and named, never a 400.
    assert "num_thread" in ignored and "num_ctx" not in ignored


def test_title_and_tag_generation(compat_server: HavenServer) -> None:
    for task in ("title_generation", "tags_generation"):
        body = {
            "model": "tiny",
            "messages": [{"role": "user", "content": f"### Task: {task}\nChat: hi"}],
            "stream": False,
            "max_tokens": 8,
            "metadata": {"task": task, "chat_id": "c1"},
        }
        r = httpx.post(compat_server + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        body = {
            "model": "tiny:latest",
            "messages": body["messages"],
            "stream": False,
            "options": {"num_predict": 8},
            "metadata": {"task": task},
        }
        assert httpx.post(compat_server + "/api/chat", json=body, timeout=60).status_code == 200


def test_thinking_on_and_off(compat_server: HavenServer) -> None:
    body = {"model": "r1", "messages": MESSAGES, "stream": False, "max_tokens": 6, "reasoning_effort": "none"}
    reply = httpx.post(compat_server + "/v1/chat/completions", json=body, timeout=60).json()
    assert "reasoning_content" not in reply["choices"][0]["message"]
    body = {"model": "r1:latest", "messages": MESSAGES, "stream": False, "think": True, "options": {"num_predict": 6}}
    assert httpx.post(compat_server + "/api/chat", json=body, timeout=60).status_code == 200
