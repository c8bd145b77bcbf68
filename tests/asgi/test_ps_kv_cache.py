"""``/api/ps`` reports each loaded model's slots and KV cache (issue 14 item 2) beside Ollama's own fields,
which stay exactly as the ollama client parses them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ollama

from haven.engine.engine import LlamaEngine
from tests.asgi.openai_support import harness
from tests.support.engine_run import tiny_engine
from tests.support.fake_engine import FakeLoader

OLLAMA_FIELDS = {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length"}


async def test_ps_reports_the_real_engines_kv_bytes_per_slot(
    tmp_path: Path, make_test_model: Callable[..., Path]
) -> None:
    engines: list[LlamaEngine] = []

    def load(name: str) -> LlamaEngine:
        engines.append(tiny_engine(make_test_model(), parallel=3, context_length=512))
        return engines[-1]

    loader = FakeLoader(make=load)  # type: ignore[arg-type]  # a real engine behind the fake store
    async with harness(tmp_path, loader=loader, names=("tiny:latest",)) as h:
        r = await h.client.post("/api/generate", json={"model": "tiny:latest"})  # loads it
        assert r.status_code == 200, r.text
        (entry,) = (await h.client.get("/api/ps")).json()["models"]
        (engine,) = engines
        backend = engine.backend
        # f16 K and V: 2 bytes each, per layer, per KV embedding, per token of the slot's context.
        assert entry["kv_bytes_per_slot"] == backend.n_layer * 512 * backend.n_embd_kv * 2 * 2
        assert (entry["kv_cache_type"], entry["slots"], entry["context_length"]) == ("f16", 3, 512)
        assert set(entry) >= OLLAMA_FIELDS
        # The ollama client still reads the listing (Haven's extra fields are ignored by its models).
        listed = ollama.ProcessResponse.model_validate({"models": [entry]})
        assert listed.models[0].model == "tiny:latest" and listed.models[0].context_length == 512
