"""Session affinity through the APIs: a request naming a stored conversation (``conversation_id``) goes to the
upstream that conversation hashes to, whatever its OpenAI ``user`` says and whichever API it comes through;
without a conversation the ``user`` is the key. Two fake-vLLM processes serve the model; Haven runs in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.asgi.openai_support import harness
from tests.scaleout.conftest import FakeUpstream

pytestmark = [pytest.mark.e2e]


def write_upstreams(home: Path, fakes: list[FakeUpstream]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "upstreams.yaml").write_text(yaml.safe_dump({"upstreams": [
        {"name": f.name, "url": f.url, "kind": "vllm", "models": ["remote-model"]} for f in fakes]}))


def served(fakes: list[FakeUpstream], tag: str) -> list[int]:
    """How many requests whose last message contains ``tag`` each upstream received."""
    return [sum(tag in body["messages"][-1]["content"] for body in fake.received()) for fake in fakes]


async def test_a_conversation_stays_on_one_upstream_whatever_its_user(fakes: list[FakeUpstream],
                                                                       tmp_path: Path) -> None:
    write_upstreams(tmp_path / "home", fakes)
    async with harness(tmp_path) as h:  # local single-user mode: conversations without credentials
        cid = (await h.client.post("/api/v1/conversations", json={"title": "pinned"})).json()["id"]
        for i in range(6):  # six different `user` values: by user they would spread over both upstreams
            r = await h.client.post("/v1/chat/completions", json={
                "model": "remote-model", "conversation_id": cid, "user": f"user-{i}",
                "messages": [{"role": "user", "content": f"{cid} turn {i}"}]})
            assert r.status_code == 200, r.text
        r = await h.client.post("/api/chat", json={  # the Ollama API, same conversation
            "model": "remote-model", "conversation_id": cid, "stream": False,
            "messages": [{"role": "user", "content": f"{cid} ollama turn"}]})
        assert r.status_code == 200, r.text
        assert sorted(served(fakes, cid)) == [0, 7]
        stored = (await h.client.get(f"/api/v1/conversations/{cid}")).json()["messages"]
        assert len(stored) == 14  # every turn recorded, on whichever upstream answered


async def test_conversations_spread_over_the_upstreams_and_user_is_the_key_without_one(
        fakes: list[FakeUpstream], tmp_path: Path) -> None:
    write_upstreams(tmp_path / "home", fakes)
    async with harness(tmp_path) as h:
        homes = []
        for n in range(12):
            cid = (await h.client.post("/api/v1/conversations", json={"title": f"c{n}"})).json()["id"]
            r = await h.client.post("/v1/chat/completions", json={
                "model": "remote-model", "conversation_id": cid, "user": "one-user",
                "messages": [{"role": "user", "content": f"{cid} hello"}]})
            assert r.status_code == 200, r.text
            homes.append(served(fakes, cid).index(1))
        assert set(homes) == {0, 1}  # one user's conversations are not all pinned to one upstream
        for i in range(4):  # no conversation: the `user` keeps its requests together
            r = await h.client.post("/v1/chat/completions", json={
                "model": "remote-model", "user": "solo", "messages": [{"role": "user", "content": f"solo {i}"}]})
            assert r.status_code == 200, r.text
        assert sorted(served(fakes, "solo ")) == [0, 4]
