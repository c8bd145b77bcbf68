"""Haven's engine on real weights: greedy decoding equals llama.cpp's own API, stops at <|im_end|>, and
prefix reuse gives the cold run's answer.

Bit-identity, not a logit tolerance: both sides decode one sequence, process the prompt in one batch of
the same size (``n_batch`` = Haven's ``batch_size`` = ``prefill_chunk`` = 512) and then one token per
step, so llama.cpp runs the same kernels on the same shapes and greedy argmax sees the same logits.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import Llama

from tests.real_model.conftest import N_BATCH, N_CTX, THREADS
from tests.real_model.test_prompt_tokens import reference
from tests.support.engine_run import generate, tiny_engine

MAX_TOKENS = 48
PROMPTS = {
    "France": [{"role": "user", "content": "What is the capital of France? Answer in one word."}],
    "Japan": [{"role": "user", "content": "What is the capital of Japan?"}],
    "Chinese": [{"role": "user", "content": "你好！请介绍一下你自己。"}],
    "system + multi-turn": [
        {"role": "system", "content": "You are a geography teacher."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "The capital of France is Paris."},
        {"role": "user", "content": "And what river flows through it?"},
    ],
}
RUNS_ON = {"Chinese"}  # answers longer than MAX_TOKENS (compared token for token up to the cap)
SPECIAL_TEXTS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def llama_greedy(llama: Llama, tokens: list[int], max_tokens: int = MAX_TOKENS) -> list[int]:
    """llama.cpp's high-level generate() at temperature 0 (greedy), stopping at EOS like its chat handler."""
    out: list[int] = []
    llama.reset()  # else generate() reuses the longest prefix of the previous call: the reference must be cold
    for token in llama.generate(tokens, temp=0.0, reset=True):
        if llama.token_is_eog(token) if hasattr(llama, "token_is_eog") else token == llama.token_eos():
            break
        out.append(token)
        if len(out) >= max_tokens:
            break
    return out


def haven_engine(path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    settings: dict[str, Any] = {
        "context_length": N_CTX, "parallel": 1, "batch_size": N_BATCH, "prefill_chunk": N_BATCH,
        "threads": THREADS, "prefix_cache": False,
    }  # fmt: skip
    settings.update(overrides)
    return tiny_engine(path, **settings)


@pytest.fixture(scope="module")
def cold_engine(real_model_path: Path):  # type: ignore[no-untyped-def]
    engine = haven_engine(real_model_path)
    yield engine
    asyncio.run(engine.close())


@pytest.mark.parametrize("case", list(PROMPTS), ids=list(PROMPTS))
async def test_greedy_tokens_equal_llama_cpp_and_stop_cleanly(cold_engine, llama: Llama, case: str) -> None:  # type: ignore[no-untyped-def]
    _, prompt = reference(llama, PROMPTS[case])
    want = llama_greedy(llama, prompt)
    result = await generate(cold_engine, prompt, temperature=0.0, max_tokens=MAX_TOKENS)
    assert result.token_ids == want
    if case in RUNS_ON:  # a long answer: both sides hit the cap at the same token
        assert result.finished.reason == "length" and len(want) == MAX_TOKENS
    else:
        assert result.finished.reason == "stop", f"{case}: did not reach <|im_end|> in {MAX_TOKENS} tokens"
        assert len(want) < MAX_TOKENS  # the reference stopped at EOS too, not at the cap
    assert not any(marker in result.text for marker in SPECIAL_TEXTS)
    assert result.text == cold_engine.detokenize(want)
    usage = result.finished.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (len(prompt), len(want), 0)


async def test_known_answers(cold_engine, llama: Llama) -> None:  # type: ignore[no-untyped-def]
    for case, word in (("France", "Paris"), ("Japan", "Tokyo")):
        _, prompt = reference(llama, PROMPTS[case])
        result = await generate(cold_engine, prompt, temperature=0.0, max_tokens=MAX_TOKENS)
        assert word in result.text, (case, result.text)


async def test_prefix_reuse_reports_cached_tokens_and_answers_as_a_cold_run(  # type: ignore[no-untyped-def]
    cold_engine, real_model_path: Path, llama: Llama
) -> None:
    warm = haven_engine(real_model_path, prefix_cache=True)
    try:
        turn1 = [{"role": "user", "content": "What is the capital of France?"}]
        _, prompt1 = reference(llama, turn1)
        first = await generate(warm, prompt1, temperature=0.0, max_tokens=MAX_TOKENS)
        turn2 = [*turn1, {"role": "assistant", "content": first.text}, {"role": "user", "content": "And of Japan?"}]
        _, prompt2 = reference(llama, turn2)
        second = await generate(warm, prompt2, temperature=0.0, max_tokens=MAX_TOKENS)
        cold = await generate(cold_engine, prompt2, temperature=0.0, max_tokens=MAX_TOKENS)
    finally:
        await warm.close()
    # The second turn's prompt starts with the whole first prompt: at least that much came from the cache.
    assert prompt2[: len(prompt1)] == prompt1
    cached = second.finished.usage.cached_tokens
    assert len(prompt1) <= cached < len(prompt2)
    assert second.finished.usage.prompt_tokens == len(prompt2)
    assert second.token_ids == cold.token_ids, (second.text, cold.text)
    assert cold.finished.usage.cached_tokens == 0
