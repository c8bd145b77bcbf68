"""Issue 9's sampler extensions at the HTTP edge: both APIs deliver them to the engine, and out-of-range
values are 400s that name the field (the engine's own range checks are in tests/unit)."""

from __future__ import annotations

from pathlib import Path

from tests.asgi.openai_support import harness
from tests.support.fake_engine import FakeEngine, fake_info

USER = [{"role": "user", "content": "Hi"}]


async def test_both_apis_deliver_typical_p_mirostat_and_min_tokens(tmp_path: Path) -> None:
    engine = FakeEngine(fake_info("tiny"))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": USER, "typical_p": 0.8, "mirostat": 2, "mirostat_tau": 4.0,
                  "min_tokens": 3},
        )
        assert r.status_code == 200, r.text
        sent = engine.submitted[-1].sampling
        assert (sent.typical_p, sent.mirostat, sent.mirostat_tau, sent.min_tokens) == (0.8, 2, 4.0, 3)
        r = await h.client.post(
            "/api/chat",
            json={"model": "tiny", "messages": USER, "stream": False,
                  "options": {"typical_p": 0.6, "mirostat": 1, "mirostat_eta": 0.5}},
        )
        assert r.status_code == 200, r.text
        sent = engine.submitted[-1].sampling
        assert (sent.typical_p, sent.mirostat, sent.mirostat_eta) == (0.6, 1, 0.5)


async def test_out_of_range_values_are_400s_naming_the_field(tmp_path: Path) -> None:
    async with harness(tmp_path, engine=FakeEngine(fake_info("tiny"))) as h:
        for field, value in (("mirostat", 3), ("mirostat_tau", -1), ("typical_p", 2), ("min_tokens", -1)):
            r = await h.client.post("/v1/chat/completions", json={"model": "tiny", "messages": USER, field: value})
            assert r.status_code == 400, (field, r.text)
            assert r.json()["error"]["param"] == field
        r = await h.client.post(
            "/api/chat", json={"model": "tiny", "messages": USER, "options": {"mirostat_eta": 11}}
        )
        assert r.status_code == 400 and "mirostat_eta" in r.json()["error"]
