"""Haven's rendered prompt and token ids equal llama.cpp's own for the real model's ChatML template.

The reference is what ``llama_cpp.Llama`` registers as its ``chat_template.default`` handler: a
``Jinja2ChatFormatter`` built from the GGUF's ``tokenizer.chat_template`` with the vocabulary's BOS and
EOS texts, whose prompt it tokenizes with ``special=True`` and no extra BOS (``added_special``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_cpp import Llama, llama_chat_format

from tests.support.engine_run import tiny_engine

CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "user only (template's default system)": [{"role": "user", "content": "Hello!"}],
    "system and user": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "multi-turn": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Japan?"},
        {"role": "assistant", "content": "Tokyo."},
        {"role": "user", "content": "Thanks, and Italy?"},
    ],
    "Chinese": [{"role": "user", "content": "中国的首都是哪里？请用一句话回答。"}],
    "Arabic": [
        {"role": "system", "content": "أجب باختصار."},
        {"role": "user", "content": "ما هي عاصمة مصر؟"},
    ],
    "whitespace and newlines": [{"role": "user", "content": "  two\n\nparagraphs\twith tabs  "}],
}


def reference(llama: Llama, messages: list[dict[str, Any]]) -> tuple[str, list[int]]:
    vocab = llama._model  # the same texts Llama.__init__ passes to its default Jinja2ChatFormatter
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=llama.metadata["tokenizer.chat_template"],
        eos_token=vocab.token_get_text(llama.token_eos()),
        bos_token=vocab.token_get_text(llama.token_bos()),
        stop_token_ids=[llama.token_eos()],
    )
    result = formatter(messages=messages)
    tokens = llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
    return result.prompt, tokens


@pytest.fixture(scope="module")
def engine(real_model_path: Path):  # type: ignore[no-untyped-def]
    engine = tiny_engine(real_model_path, context_length=2048, parallel=1, threads=2)
    yield engine
    asyncio.run(engine.close())


@pytest.mark.parametrize("conversation", list(CONVERSATIONS), ids=list(CONVERSATIONS))
def test_prompt_and_token_ids_equal_llama_cpp(engine, llama: Llama, conversation: str) -> None:  # type: ignore[no-untyped-def]
    messages = CONVERSATIONS[conversation]
    want_text, want_tokens = reference(llama, messages)
    prompt = engine.render_chat(messages)
    assert prompt.text == want_text
    # The chat pipeline tokenizes a rendered prompt with add_special=False (the template writes BOS itself).
    tokens = engine.tokenize(prompt.text, add_special=False, parse_special=True)
    assert tokens == want_tokens
    assert engine.detokenize(tokens) == want_text  # and back, byte for byte (non-ASCII included)
    for message in messages:
        assert message["content"] in prompt.text


def test_the_template_markers_are_single_control_tokens(engine, llama: Llama) -> None:  # type: ignore[no-untyped-def]
    tokens = engine.tokenize("<|im_start|>user\nhi<|im_end|>", add_special=False, parse_special=True)
    assert tokens[0] == llama.token_bos() == 1 and tokens[-1] == llama.token_eos() == 2
