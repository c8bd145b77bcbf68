"""The real `ollama` Python package against a real `haven serve` (tiny random-weight models).

Random weights produce arbitrary text, so answers are compared with each other (seeded sampling is
deterministic: streamed == not streamed) and checked for shape, never for meaning. Greedy decoding is
avoided: on random weights it can loop on a byte token that never completes a UTF-8 character.
"""

from __future__ import annotations

import json
import math
import subprocess

import jsonschema
import ollama
import pytest

from tests.e2e.conftest import HAVEN, HavenServer, server_env

pytestmark = pytest.mark.e2e

SEEDED = {"temperature": 0.8, "num_predict": 12, "seed": 1}
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
def client(haven_server: HavenServer) -> ollama.Client:
    return ollama.Client(host=haven_server, timeout=120)


def test_chat_stream_and_non_stream_agree(client: ollama.Client) -> None:
    reply = client.chat(model="tiny", messages=MESSAGES, options=SEEDED)
    assert reply.message.content
    assert reply.done is True and reply.done_reason in ("stop", "length")
    assert 1 <= (reply.eval_count or 0) <= 12 and (reply.prompt_eval_count or 0) > 5
    assert (reply.total_duration or 0) > 0 and (reply.eval_duration or 0) >= 0
    parts = list(client.chat(model="tiny", messages=MESSAGES, options=SEEDED, stream=True))
    assert parts[-1].done is True and all(not p.done for p in parts[:-1])
    assert "".join(p.message.content or "" for p in parts) == reply.message.content
    assert parts[-1].eval_count == reply.eval_count


def test_generate_matches_chat(client: ollama.Client) -> None:
    chat = client.chat(model="tiny", messages=MESSAGES, options=SEEDED)
    generated = client.generate(model="tiny", prompt=MESSAGES[0]["content"], options=SEEDED)
    assert generated.response and generated.response == chat.message.content


def test_think_puts_reasoning_in_message_thinking(client: ollama.Client) -> None:
    reply = client.chat(model="r1", messages=MESSAGES, think=True, options={**SEEDED, "num_predict": 24})
    # The R1 template opens <think> in the prompt, so the first generated tokens are reasoning.
    assert reply.message.thinking
    assert "<think>" not in (reply.message.content or "") and "<think>" not in reply.message.thinking
    parts = list(
        client.chat(model="r1", messages=MESSAGES, think=True, options={**SEEDED, "num_predict": 24}, stream=True)
    )
    assert "".join(p.message.thinking or "" for p in parts) == reply.message.thinking
    quiet = client.chat(model="r1", messages=MESSAGES, think=False, options={**SEEDED, "num_predict": 24})
    assert not quiet.message.thinking


def test_format_schema_output_validates(client: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}, "confidence": {"type": "integer"}},
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    reply = client.chat(
        model="tiny", messages=MESSAGES, format=schema, options={"temperature": 0.7, "seed": 3, "num_predict": 400}
    )
    assert reply.done_reason == "stop"
    jsonschema.validate(json.loads(reply.message.content or ""), schema)
    reply = client.generate(model="tiny", prompt="json please", format="json", options={"seed": 5, "num_predict": 400})
    assert isinstance(json.loads(reply.response or ""), dict)


def test_embed(client: ollama.Client) -> None:
    result = client.embed(model="tiny", input=["hello", "world"])
    assert len(result.embeddings) == 2
    first, second = (list(v) for v in result.embeddings)
    assert len(first) == len(second) > 0
    assert math.isclose(math.sqrt(sum(x * x for x in first)), 1.0, rel_tol=1e-4)
    assert first != second
    assert (result.prompt_eval_count or 0) >= 2


def test_list_show_ps(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {"tiny:latest", "r1:latest", "llama:latest"} <= names
    shown = client.show("llama")
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert "<|start_header_id|>" in (shown.template or "")
    client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 1})
    running = {m.model: m for m in client.ps().models}
    assert "tiny:latest" in running and running["tiny:latest"].context_length == 2048
    assert (running["tiny:latest"].size or 0) > 0


def test_delete_then_404(client: ollama.Client, haven_server: HavenServer, make_test_model: object) -> None:
    path = make_test_model()  # type: ignore[operator]
    env = server_env(haven_server.home, {})
    subprocess.run([*HAVEN, "models", "import", str(path), "--name", "victim"], env=env, check=True)
    assert "victim:latest" in {m.model for m in client.list().models}
    client.chat(model="victim", messages=MESSAGES, options={"num_predict": 1})
    assert client.delete("victim").status == "success"
    assert "victim:latest" not in {m.model for m in client.list().models}
    assert "victim:latest" not in {m.model for m in client.ps().models}
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("victim")
    assert info.value.status_code == 404


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="no-such-model", messages=MESSAGES)
    assert info.value.status_code == 404
    assert "no-such-model" in info.value.error
    # Still serving.
    assert client.chat(model="tiny", messages=MESSAGES, options={"num_predict": 1}).done is True
