"""/v1/completions, /v1/embeddings and /v1/models with a fake engine and store."""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path

from haven.engine.protocol import TextDelta
from tests.asgi.openai_support import harness, sse_events
from tests.support.fake_engine import FakeEngine


async def test_completion_with_echo_n_and_legacy_logprobs(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta(" a"), TextDelta(" time")))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/completions", json={"model": "tiny", "prompt": "Once upon", "echo": True, "n": 2, "logprobs": 1}
        )
    body = r.json()
    assert body["object"] == "text_completion"
    assert [c["text"] for c in body["choices"]] == ["Once upon a time"] * 2
    assert body["choices"][0]["logprobs"]["tokens"] == [" a", " time"]
    assert body["choices"][0]["logprobs"]["text_offset"] == [0, 2]
    assert body["usage"] == {
        "prompt_tokens": 9,  # counted once for two choices (one token per byte in the fake)
        "completion_tokens": 4,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert [bytes(r.prompt_tokens) for r in engine.submitted] == [b"Once upon"] * 2
    assert engine.submitted[0].split_reasoning is False
    assert engine.submitted[0].sampling.max_tokens == 16  # OpenAI's default for completions


async def test_completion_stream_and_token_prompt(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta("!"),))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/completions", json={"model": "tiny", "prompt": [72, 105], "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert [e["choices"][0]["text"] for e in events[:-1]] == ["!", ""]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert list(engine.submitted[0].prompt_tokens) == [72, 105]


async def test_embeddings_float_base64_and_dimensions(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": ["hello", "world"]})
        b = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": "hello", "encoding_format": "base64"})
        d = await h.client.post("/v1/embeddings", json={"model": "tiny", "input": "hello", "dimensions": 2})
    body = r.json()
    assert [e["index"] for e in body["data"]] == [0, 1]
    assert body["usage"] == {"prompt_tokens": 10, "total_tokens": 10}
    vector = body["data"][0]["embedding"]
    assert len(vector) == 4
    decoded = struct.unpack("<4f", base64.b64decode(b.json()["data"][0]["embedding"]))
    assert decoded == tuple(struct.unpack("<4f", struct.pack("<4f", *vector)))
    short = d.json()["data"][0]["embedding"]
    assert len(short) == 2 and math.isclose(math.hypot(*short), 1.0)
    assert engine.embedded == [["hello", "world"], ["hello"], ["hello"]]


async def test_models_list_and_get(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        listing = (await h.client.get("/v1/models")).json()
        one = await h.client.get("/v1/models/tiny:latest")
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["other:latest", "tiny:latest"]  # sorted, as the store lists
    assert one.json() == {"id": "tiny:latest", "object": "model", "created": 1767312000, "owned_by": "haven"}
