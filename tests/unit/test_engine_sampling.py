"""Per-request sampling on the tiny model: seeds, greedy, logit bias, grammars, logprobs, bad values."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from haven.engine.engine import LlamaEngine
from haven.engine.protocol import GenerationRequest, SamplingParams, TextDelta
from haven.errors import GrammarError, InvalidRequestError
from tests.support.engine_run import generate, tiny_engine


@pytest.fixture
async def engine(make_test_model: Callable[..., Path]) -> AsyncIterator[LlamaEngine]:
    eng = tiny_engine(make_test_model(), max_tokens_limit=1000)
    yield eng
    await eng.close()


async def test_same_seed_same_tokens_different_seed_different(engine: LlamaEngine) -> None:
    prompt = engine.tokenize("Once upon a time")
    kwargs: dict[str, Any] = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "max_tokens": 16}
    a = await generate(engine, prompt, seed=1234, **kwargs)
    b = await generate(engine, prompt, seed=1234, **kwargs)
    c = await generate(engine, prompt, seed=99, **kwargs)
    assert a.token_ids == b.token_ids
    assert len(a.token_ids) >= 4
    assert a.token_ids != c.token_ids


async def test_temperature_zero_is_argmax(engine: LlamaEngine) -> None:
    prompt = engine.tokenize("The capital of France is")
    result = await generate(engine, prompt, temperature=0, max_tokens=1, logprobs=1)
    (delta,) = [e for e in result.events if isinstance(e, TextDelta) and e.token_ids]
    # The reported top-1 alternative is the chosen token, and its logprob is the largest.
    lp = delta.logprobs[0]
    assert lp.top[0][0] == lp.token
    assert lp.logprob == pytest.approx(lp.top[0][1])
    # Cross-check against the raw logits of the same prompt decoded directly.
    assert result.token_ids == [_argmax_after(backend_path=engine.backend.path, prompt=prompt)]


def _argmax_after(*, backend_path: str, prompt: list[int]) -> int:
    from haven.engine.llama_backend import LlamaBackend

    backend = LlamaBackend(backend_path, context_length=128, parallel=1, batch_size=128, threads=1)
    try:
        for i, tok in enumerate(prompt):
            backend.batch.add(tok, i, 0, i == len(prompt) - 1)
        assert backend.decode(backend.batch) == 0
        return int(np.argmax(backend.logits_row(len(prompt) - 1)))
    finally:
        backend.close()


async def test_logit_bias_forces_a_token(engine: LlamaEngine) -> None:
    (forced,) = engine.tokenize("hello", add_special=False)[:1]
    result = await generate(
        engine, engine.tokenize("Say something"), temperature=0.7, seed=3, logit_bias={forced: 100.0}, max_tokens=5
    )
    assert result.token_ids == [forced] * 5
    assert result.finished.reason == "length"


@pytest.mark.parametrize("temperature", [0.0, 0.7])
async def test_ignore_eos_runs_to_max_tokens_even_when_eos_is_favoured(engine: LlamaEngine, temperature: float) -> None:
    eos = engine.backend.eos
    prompt = engine.tokenize("Say something")
    favoured = {eos: 100.0}  # without ignore_eos the first token is the end of generation
    stopped = await generate(engine, prompt, temperature=temperature, seed=1, logit_bias=favoured, max_tokens=12)
    assert (stopped.finished.reason, stopped.token_ids) == ("stop", [])
    full = await generate(
        engine, prompt, temperature=temperature, seed=1, logit_bias=favoured, max_tokens=12, ignore_eos=True
    )
    assert full.finished.reason == "length" and full.finished.usage.completion_tokens == 12
    assert not any(engine.backend.is_eog(t) for t in full.token_ids)


@pytest.mark.parametrize("constraint", [{"grammar": 'root ::= "a"'}, {"json_schema": {"type": "object"}}])
async def test_ignore_eos_with_constrained_output_is_refused(engine: LlamaEngine, constraint: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="ignore_eos cannot be combined") as info:
        await generate(engine, engine.tokenize("Hi"), ignore_eos=True, max_tokens=4, **constraint)
    assert info.value.param == "ignore_eos"
    assert engine.stats().slots_in_use == 0
    assert (await generate(engine, engine.tokenize("Hi"), max_tokens=2)).finished.reason in ("length", "stop")


async def test_logprobs_report_top_alternatives(engine: LlamaEngine) -> None:
    result = await generate(engine, engine.tokenize("Hi"), temperature=0.9, seed=5, max_tokens=6, logprobs=3)
    lps = [lp for e in result.events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert len(lps) == 6
    for lp in lps:
        assert lp.logprob <= 0 and len(lp.top) == 3
        assert lp.top[0][1] >= lp.top[1][1] >= lp.top[2][1]
        assert sum(math.exp(p) for _, p in lp.top) <= 1.0 + 1e-6


async def test_gbnf_grammar_constrains_output(engine: LlamaEngine) -> None:
    grammar = 'root ::= ("yes" | "no") " because " [a-z]{3,6} "."'
    for seed in (1, 2, 3):
        result = await generate(engine, engine.tokenize("Answer:"), temperature=1.0, seed=seed, grammar=grammar)
        assert result.finished.reason == "stop"
        head, _, word = result.text.partition(" because ")
        assert head in ("yes", "no")
        assert word.endswith(".") and 3 <= len(word) - 1 <= 6 and word[:-1].isalpha()


async def test_json_schema_output_parses_and_validates(engine: LlamaEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    for seed in (1, 2):
        result = await generate(
            engine, engine.tokenize("JSON:"), temperature=1.0, seed=seed, json_schema=schema, max_tokens=200
        )
        assert result.finished.reason == "stop"
        jsonschema.validate(json.loads(result.text), schema)


async def test_invalid_grammar_is_a_grammar_error_and_engine_keeps_serving(engine: LlamaEngine) -> None:
    prompt = engine.tokenize("Hi")
    with pytest.raises(GrammarError):
        await generate(engine, prompt, grammar="root ::= ( unclosed")
    with pytest.raises(GrammarError):
        await generate(engine, prompt, json_schema={"type": "strng"})
    stats = engine.stats()
    assert (stats.slots_in_use, stats.queue_depth) == (0, 0)
    assert (await generate(engine, prompt, temperature=0, max_tokens=3)).finished.usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("temperature", -0.5, "temperature must be between 0 and 100"),
        ("temperature", float("nan"), "temperature must be a finite number"),
        ("top_p", 0.0, "top_p must be in (0, 1]"),
        ("top_p", 1.5, "top_p must be in (0, 1]"),
        ("top_k", -1, "top_k must be a non-negative integer"),
        ("min_p", float("inf"), "min_p must be a finite number"),
        ("repeat_penalty", 0.0, "repeat_penalty must be in (0, 10]"),
        ("presence_penalty", 3.0, "presence_penalty must be between -2 and 2"),
        ("max_tokens", 0, "max_tokens must be between 1 and 1000"),
        ("max_tokens", 10_000_000, "max_tokens must be between 1 and 1000"),
        ("logprobs", 21, "logprobs must be between 0 and 20"),
        ("logit_bias", {999_999: 5.0}, "not in this model's vocabulary"),
        ("logit_bias", {5: float("nan")}, "logit_bias for token 5 must be a number"),
        ("stop", (3,), "Stop sequences must be strings"),
        ("stop", ("",), "must not be empty"),
        ("stop", "END", "not one string"),
    ],
)
async def test_bad_sampling_values_are_clear_errors(
    engine: LlamaEngine, field: str, value: object, fragment: str
) -> None:
    prompt = engine.tokenize("Hi")
    params = SamplingParams(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError) as info:
        await engine.submit(GenerationRequest(prompt, params))
    assert fragment in str(info.value)
    assert engine.stats().slots_in_use == 0 and engine.stats().queue_depth == 0


async def test_grammar_and_schema_together_are_refused(engine: LlamaEngine) -> None:
    with pytest.raises(InvalidRequestError, match="either a grammar or a JSON schema"):
        await generate(engine, engine.tokenize("Hi"), grammar='root ::= "a"', json_schema={"type": "object"})


async def test_penalties_break_greedy_repetition(engine: LlamaEngine) -> None:
    prompt = engine.tokenize("Hello")
    plain = await generate(engine, prompt, temperature=0, max_tokens=20)
    penalised = await generate(
        engine, prompt, temperature=0, max_tokens=20, frequency_penalty=2.0, presence_penalty=2.0
    )
    whole_context = await generate(engine, prompt, temperature=0, max_tokens=20, repeat_penalty=5.0, repeat_last_n=-1)
    # The random tiny model repeats itself under greedy decoding; penalties make it vary.
    assert len(set(plain.token_ids)) <= 3
    assert len(set(penalised.token_ids)) > 2 * len(set(plain.token_ids))
    assert len(set(whole_context.token_ids)) > 2 * len(set(plain.token_ids))


def test_numpy_greedy_fast_path_picks_what_llama_greedy_picks(make_test_model: Callable[..., Path]) -> None:
    from haven.engine.llama_backend import LlamaBackend
    from haven.engine.sampling import build_chain

    backend = LlamaBackend(make_test_model(), context_length=128, parallel=1, batch_size=128, threads=1)
    try:
        prompt = backend.tokenize("The quick brown fox")
        for i, tok in enumerate(prompt):
            backend.batch.add(tok, i, 0, i == len(prompt) - 1)
        assert backend.decode(backend.batch) == 0
        row = backend.logits_row(len(prompt) - 1)
        runner_up = int(np.argsort(row)[-2])
        for bias in ({}, {runner_up: 50.0}, {int(np.argmax(row)): float("-inf")}):
            params = SamplingParams(temperature=0, logit_bias=bias)
            kwargs: dict[str, Any] = {"vocab": backend.vocab, "n_vocab": backend.n_vocab, "grammar": None}
            fast = build_chain(params, context_length=128, **kwargs)
            slow = build_chain(params, context_length=128, allow_fast_greedy=False, **kwargs)
            try:
                assert fast.fast_greedy and not slow.fast_greedy
                assert fast.greedy(row) == slow.sample(backend.ctx, len(prompt) - 1)
            finally:
                fast.free()
                slow.free()
        assert fast.greedy(row) != int(np.argmax(row))  # the -inf bias really changed the pick
        # Penalties or a grammar need llama.cpp's stateful samplers: no fast path.
        penalised = build_chain(SamplingParams(temperature=0, presence_penalty=0.5), context_length=128, **kwargs)
        assert not penalised.fast_greedy
        penalised.free()
    finally:
        backend.close()
