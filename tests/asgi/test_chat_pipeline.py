"""The one chat pipeline behind both APIs: leniency, Haven's own output sent back, the extensions, the
reasoning policy on an R1-style template, model defaults, and one rule for shutdown in both APIs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haven.engine.protocol import ChatPrompt, Finished, ReasoningDelta, TextDelta, Usage
from haven.models.manifest import ModelDefaults
from tests.asgi.openai_support import harness, sse_events
from tests.support.fake_engine import FakeEngine, fake_info
from tests.support.tiny_gguf import write_tiny_gguf

USER = [{"role": "user", "content": "Hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": USER, **extra}


# --- leniency ---------------------------------------------------------------------------------------


async def test_unknown_fields_are_ignored_and_named_strict_mode_refuses_them(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(frobnicate=1, messages=[{**USER[0], "x_y": 2}]))
        assert r.status_code == 200, r.text
        assert r.headers["x-haven-ignored-fields"] == "frobnicate, messages[0].x_y"
        r = await h.client.post("/api/chat", json={**chat(wibble=True), "stream": False})
        assert r.status_code == 200 and r.headers["x-haven-ignored-fields"] == "wibble"
    async with harness(tmp_path / "strict", strict_requests=True) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(frobnicate=1))
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "Unrecognized request argument supplied: frobnicate."
        assert r.json()["error"]["param"] == "frobnicate"
        # Wrong types stay 400s, strict or not.
        r = await h.client.post("/v1/chat/completions", json=chat(num_ctx="big"))
        assert r.status_code == 400 and r.json()["error"]["param"] == "num_ctx"


async def test_unknown_fields_deep_in_a_long_conversation_are_named(tmp_path: Path) -> None:
    # Over LONG_CONVERSATION messages the walk runs in a worker thread; it must find the same fields.
    messages = [*USER * 299, {**USER[0], "x_y": 2}]
    async with harness(tmp_path) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(messages=messages))
        assert r.status_code == 200, r.text
        assert r.headers["x-haven-ignored-fields"] == "messages[299].x_y"
        r = await h.client.post("/api/chat", json={**chat(messages=messages), "stream": False})
        assert r.status_code == 200 and r.headers["x-haven-ignored-fields"] == "messages[299].x_y"


async def test_every_extension_clients_send_is_accepted_and_the_meaningful_ones_reach_the_engine(
    tmp_path: Path,
) -> None:
    engine = FakeEngine()
    body = chat(
        chat_template_kwargs={"enable_thinking": False, "custom": 1},
        repetition_penalty=1.3,
        min_tokens=2,
        stop_token_ids=[65],
        include_stop_str_in_output=True,
        skip_special_tokens=True,
        typical_p=0.9,
        mirostat=2,
        cache_prompt=True,
        n_probs=2,
        id_slot=0,
        num_ctx=100,
        keep_alive="10m",
        think=False,
        json_schema={"type": "object"},
        modalities=["text"],
        verbosity="low",
        prediction={"type": "content", "content": "x"},
        audio=None,
        reasoning={"effort": "low"},
        thinking={"type": "disabled"},
    )
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert "x-haven-ignored-fields" not in r.headers
    sent = engine.submitted[-1]
    assert engine.rendered[-1]["enable_thinking"] is False
    assert engine.rendered[-1]["template_kwargs"] == {"custom": 1, "reasoning_effort": "low"}
    assert sent.sampling.repeat_penalty == 1.3
    assert "A" in sent.sampling.stop  # token 65 of the fake's byte vocabulary
    assert sent.sampling.logprobs == 2
    assert sent.sampling.json_schema == {"type": "object"}
    assert sent.sampling.max_tokens == 100 - len(sent.prompt_tokens)  # the answer must fit num_ctx


async def test_include_stop_str_in_output_appends_the_matched_stop(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta("Hello"), Finished("stop", Usage(1, 1), stop_string="END")))
    async with harness(tmp_path, engine=engine) as h:
        plain = (await h.client.post("/v1/chat/completions", json=chat(stop="END"))).json()
        kept = await h.client.post("/v1/chat/completions", json=chat(stop="END", include_stop_str_in_output=True))
    assert plain["choices"][0]["message"]["content"] == "Hello"
    assert kept.json()["choices"][0]["message"]["content"] == "HelloEND"


async def test_num_ctx_smaller_than_the_prompt_is_a_400(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/v1/chat/completions", json=chat(num_ctx=3))
        assert r.status_code == 400 and "num_ctx" in r.json()["error"]["message"]
        r = await h.client.post("/api/chat", json={**chat(), "options": {"num_ctx": 3}, "stream": False})
        assert r.status_code == 400 and "num_ctx" in r.json()["error"]


# --- Haven's own output, sent back ---------------------------------------------------------------------


async def test_replies_sent_back_with_model_dump_are_accepted(tmp_path: Path) -> None:
    engine = FakeEngine(script=(ReasoningDelta("Hmm."), TextDelta("Hello")))
    async with harness(tmp_path, engine=engine) as h:
        reply = (await h.client.post("/v1/chat/completions", json=chat())).json()["choices"][0]["message"]
        dumped = {**reply, "annotations": None, "audio": None, "function_call": None, "refusal": None}
        messages = [
            *USER,
            dumped,
            {"role": "system", "content": "Be brief."},  # a late system message
            {"role": "user", "content": [{"type": "text", "text": "More", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": ""},  # a reply cut off while thinking
            {"role": "assistant", "content": "ok", "reasoning": "vLLM spelling"},
            {"role": "user", "content": "and?"},
        ]
        r = await h.client.post("/v1/chat/completions", json=chat(messages=messages))
        assert r.status_code == 200, r.text
        assert "x-haven-ignored-fields" not in r.headers
    rendered = engine.rendered[-1]["messages"]
    assert rendered[1]["reasoning_content"] == "Hmm." and rendered[1]["content"] == "Hello"
    assert rendered[2] == {"role": "system", "content": "Be brief."}
    assert rendered[5]["reasoning_content"] == "vLLM spelling"


async def test_reasoning_field_setting(tmp_path: Path) -> None:
    engine = FakeEngine(script=(ReasoningDelta("Hmm."), TextDelta("Hi")))
    for field, expected in [("reasoning", {"reasoning"}), ("reasoning_content", {"reasoning_content"})]:
        async with harness(tmp_path / field, engine=engine, reasoning_field=field) as h:
            message = (await h.client.post("/v1/chat/completions", json=chat())).json()["choices"][0]["message"]
        assert {"reasoning", "reasoning_content"} & set(message) == expected


# --- the reasoning policy on a template that always opens <think> (DeepSeek-R1 distills) ---------------


@dataclass
class R1Engine(FakeEngine):
    """A fake whose generation prompt always ends in an opened ``<think>``, as R1's template does."""

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatPrompt:
        super().render_chat(messages, tools=tools, enable_thinking=enable_thinking, template_kwargs=template_kwargs)
        return ChatPrompt("<｜User｜>hi<｜Assistant｜><think>\n", reasoning_opened=True)


async def test_thinking_off_closes_r1s_think_so_the_answer_is_content(tmp_path: Path) -> None:
    engine = R1Engine(info=fake_info(supports_thinking=True))
    async with harness(tmp_path, engine=engine) as h:
        for body in (chat(reasoning_effort="none"), chat(think=False)):
            assert (await h.client.post("/v1/chat/completions", json=body)).status_code == 200
            assert engine.submitted[-1].reasoning_opened is False
            assert bytes(engine.submitted[-1].prompt_tokens).decode().endswith("<think>\n\n\n</think>\n\n")
        await h.client.post("/api/chat", json={**chat(), "think": False, "stream": False})
        assert engine.submitted[-1].reasoning_opened is False
        await h.client.post("/v1/chat/completions", json=chat())
        assert engine.submitted[-1].reasoning_opened is True  # thinking on by default


# --- one rule for failures --------------------------------------------------------------------------


async def test_shutdown_mid_generation_is_an_error_in_both_apis(tmp_path: Path) -> None:
    engine = FakeEngine(script=(TextDelta("partial"), Finished("cancelled", Usage(1, 1))))
    async with harness(tmp_path, engine=engine) as h:
        events = sse_events((await h.client.post("/v1/chat/completions", json=chat(stream=True))).text)
        lines = [json.loads(x) for x in (await h.client.post("/api/chat", json=chat())).text.splitlines()]
        plain = await h.client.post("/v1/chat/completions", json=chat())
    assert "error" in events[-2] and "shutting down" in events[-2]["error"]["message"]
    assert all(e == "[DONE]" or e["choices"][0]["finish_reason"] != "stop" for e in events if "choices" in e)
    assert "shutting down" in lines[-1]["error"]
    assert plain.status_code == 500 and "shutting down" in plain.json()["error"]["message"]


# --- model defaults ---------------------------------------------------------------------------------


async def test_model_defaults_apply_to_requests_that_do_not_set_them(tmp_path: Path) -> None:
    engine = FakeEngine()
    async with harness(tmp_path, engine=engine) as h:
        defaults = ModelDefaults(system="You are terse.", stop=("STOP",), parameters={"temperature": 0.1, "top_k": 3})
        h.store.set_defaults("tiny", defaults)
        await h.client.post("/v1/chat/completions", json=chat(top_k=9, stop=["X"]))
        await h.client.post("/api/chat", json={**chat(), "stream": False})
        await h.client.post("/v1/chat/completions", json=chat(messages=[{"role": "system", "content": "Mine."}, *USER]))
    first, second, third = engine.submitted[-3:]
    assert engine.rendered[-3]["messages"][0] == {"role": "system", "content": "You are terse."}
    assert (first.sampling.temperature, first.sampling.top_k, first.sampling.stop) == (0.1, 9, ("X", "STOP"))
    assert (second.sampling.temperature, second.sampling.top_k) == (0.1, 3)
    assert engine.rendered[-1]["messages"][0] == {"role": "system", "content": "Mine."}  # the request's own wins


# --- Ollama store endpoints -------------------------------------------------------------------------


async def test_ollama_root_copy_create_show_push(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        for method in ("GET", "HEAD"):
            r = await h.client.request(method, "/")
            assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert (await h.client.get("/")).text == "Ollama is running"
        assert (await h.client.post("/api/copy", json={"source": "tiny", "destination": "mine"})).status_code == 200
        assert h.store.get("mine").sha256 == h.store.get("tiny").sha256
        r = await h.client.post("/api/copy", json={"source": "nope", "destination": "x"})
        assert r.status_code == 404
        body = {
            "model": "brief",
            "from": "tiny",
            "system": "Answer in one word.",
            "parameters": {"temperature": 0.2, "stop": ["<end>"]},
            "stream": False,
        }
        r = await h.client.post("/api/create", json=body)
        assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
        show = (await h.client.post("/api/show", json={"model": "brief"})).json()
        assert show["system"] == "Answer in one word."
        assert "temperature" in show["parameters"] and '"<end>"' in show["parameters"]
        assert "PARAMETER temperature 0.2" in show["modelfile"]
        r = await h.client.post("/api/create", json={**body, "parameters": {"wibble": 1}})
        assert r.status_code == 400 and "wibble" in r.json()["error"]
        r = await h.client.post("/api/create", json={"model": "x", "stream": False})
        assert r.status_code == 400
        r = await h.client.post("/api/push", json={"model": "tiny"})
        assert r.status_code == 400 and "never uploads" in r.json()["error"]


async def test_ollama_blobs_are_verified_then_create_uses_them(tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with harness(tmp_path) as h:
        assert (await h.client.head(f"/api/blobs/{digest}")).status_code == 404
        for bad in ("sha256:xyz", "md5:" + "0" * 32, digest.upper(), digest + "0"):
            r = await h.client.post(f"/api/blobs/{bad}", content=data)
            assert r.status_code == 400 and "expected sha256:<64 hex digits>" in r.json()["error"], bad
        wrong = "sha256:" + "0" * 64
        r = await h.client.post(f"/api/blobs/{wrong}", content=data)
        assert r.status_code == 400 and "nothing was stored" in r.json()["error"]
        assert not h.store.has_blob("0" * 64)
        assert [p.name for p in h.store.blobs_dir.iterdir() if p.name.startswith(".upload")] == []
        assert (await h.client.post(f"/api/blobs/{digest}", content=data)).status_code == 201
        assert (await h.client.head(f"/api/blobs/{digest}")).status_code == 200
        body = {"model": "uploaded", "files": {"m.gguf": digest}, "template": "{{ messages }}", "stream": False}
        r = await h.client.post("/api/create", json=body)
        assert r.status_code == 200, r.text
        manifest = h.store.get("uploaded")
        assert manifest.sha256 == digest.removeprefix("sha256:") and manifest.defaults.template == "{{ messages }}"
        r = await h.client.post("/api/create", json={**body, "template": "{{ ''.__class__ }}"})
        assert r.status_code == 400 and "template" in r.json()["error"]


async def test_speculation_and_cache_prompt_reach_the_engine_and_bad_values_name_the_field(tmp_path: Path) -> None:
    engine = FakeEngine(fake_info("tiny"))
    async with harness(tmp_path, engine=engine) as h:
        r = await h.client.post("/v1/chat/completions",
                                json=chat(speculative="ngram", speculative_draft_max=4, cache_prompt=False))
        assert r.status_code == 200, r.text
        sent = engine.submitted[-1].sampling
        assert (sent.speculative, sent.speculative_draft_max, sent.cache_prompt) == ("ngram", 4, False)
        r = await h.client.post("/v1/chat/completions", json=chat(speculative_draft_max=99))
        assert r.status_code == 400 and r.json()["error"]["param"] == "speculative_draft_max"
        r = await h.client.post("/v1/chat/completions", json=chat(speculative="eagle"))
        assert r.status_code == 400 and r.json()["error"]["param"] == "speculative"


async def test_unknown_field_names_with_control_characters_still_give_a_sendable_header(tmp_path: Path) -> None:
    from haven.server.leniency import header_value

    assert header_value(["\u000b", "é", "ok_field"]) == "%0B, %C3%A9, ok_field"
    async with harness(tmp_path) as h:
        r = await h.client.post("/v1/chat/completions", json={**chat(), "\u000b": 1})
    assert r.status_code == 200 and r.headers["x-haven-ignored-fields"] == "%0B"
