"""The ``ollama`` package against a real Haven: every endpoint it wraps, plus ``GET /``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import ollama
import pytest

from tests.e2e.conftest import HavenServer

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def client(compat_server: HavenServer) -> ollama.Client:
    return ollama.Client(host=compat_server)


def test_root_version_list_show_ps(client: ollama.Client, compat_server: HavenServer) -> None:
    assert httpx.get(compat_server).text == "Ollama is running"
    assert httpx.head(compat_server).status_code == 200
    assert client._client.get("/api/version").status_code == 200
    assert {m.model for m in client.list().models} >= {"tiny:latest", "r1:latest"}
    assert "completion" in (client.show("tiny").capabilities or [])
    client.generate(model="tiny", prompt="")  # preload
    assert "tiny:latest" in {m.model for m in client.ps().models}


def test_chat_generate_embed(client: ollama.Client) -> None:
    reply = client.chat(model="tiny", messages=HI, options={"num_predict": 6})
    assert reply.done and reply.message.role == "assistant"
    assert list(client.chat(model="tiny", messages=HI, stream=True, options={"num_predict": 6}))[-1].done
    assert client.generate(model="tiny", prompt="Hi", options={"num_predict": 6}).done
    assert len(client.embed(model="tiny", input=["a", "b"]).embeddings) == 2
    assert client.embeddings(model="tiny", prompt="a").embedding


def test_think_false_on_r1(client: ollama.Client) -> None:
    reply = client.chat(model="r1", messages=HI, think=False, options={"num_predict": 6})
    assert not reply.message.thinking


def test_copy_create_blobs_delete_push(client: ollama.Client, make_test_model: object, tmp_path: Path) -> None:
    client.copy("tiny", "tiny-copy")
    client.create(model="terse", from_="tiny", system="One word.", parameters={"temperature": 0.1})
    shown = client.show("terse")
    assert shown.modelfile and "One word." in shown.modelfile and "temperature" in (shown.parameters or "")
    path = make_test_model(seed=3)  # type: ignore[operator]
    digest = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert client.create_blob(path) == digest
    client.create(model="uploaded", files={"model.gguf": digest})
    assert "uploaded:latest" in {m.model for m in client.list().models}
    for name in ("tiny-copy", "terse", "uploaded"):
        client.delete(name)
    with pytest.raises(ollama.ResponseError) as info:
        client.push("tiny")
    assert "never uploads" in str(info.value)
