"""Generated text on the tiny model: stop strings across tokens, UTF-8, and both reasoning styles.

Output is forced with GBNF grammars so the expected text is exact whatever the random weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from haven.engine.protocol import ReasoningDelta, TextDelta
from tests.support.engine_run import generate, tiny_engine


async def test_stop_string_spanning_tokens_cuts_the_text(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        prompt = engine.tokenize("Go")
        result = await generate(engine, prompt, temperature=0, grammar='root ::= "abc-STOP-def"', stop=("OP-d",))
        assert result.text == "abc-ST"
        assert result.finished.reason == "stop"
        assert result.finished.stop_string == "OP-d"
        # The stop string was not one token: it was matched across token boundaries.
        pieces = [engine.backend.token_to_piece(t) for t in result.token_ids]
        assert b"OP-d" not in pieces
        # A stop string that never occurs leaves the text whole and the reason is the grammar's end.
        whole = await generate(engine, prompt, temperature=0, grammar='root ::= "abc-STOP-def"', stop=("xyz",))
        assert (whole.text, whole.finished.reason, whole.finished.stop_string) == ("abc-STOP-def", "stop", None)
    finally:
        await engine.close()


async def test_multibyte_chinese_never_emits_broken_utf8(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        text = "你好，世界！汉字测试"
        result = await generate(engine, engine.tokenize("Hi"), temperature=0.8, seed=1, grammar=f'root ::= "{text}"')
        deltas = [e.text for e in result.events if isinstance(e, TextDelta) and e.text]
        assert "".join(deltas) == text
        assert all("\ufffd" not in d for d in deltas)
        # Byte-level tokens split these characters: more tokens than characters were generated.
        assert result.finished.usage.completion_tokens > len(text)
    finally:
        await engine.close()


async def test_reasoning_generated_by_the_model_qwen_style(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        prompt = engine.tokenize(engine.render_chat([{"role": "user", "content": "2+2?"}]).text)
        grammar = 'root ::= "<think>" "先想一想" "</think>" "答案是四"'
        result = await generate(engine, prompt, temperature=0, grammar=grammar)
        assert result.reasoning == "先想一想"
        assert result.text == "答案是四"
        kinds = [type(e) for e in result.events if isinstance(e, TextDelta | ReasoningDelta) and e.text]
        assert kinds.index(TextDelta) > kinds.index(ReasoningDelta)
        passthrough = await generate(engine, prompt, temperature=0, grammar=grammar, split_reasoning=False)
        assert (passthrough.reasoning, passthrough.text) == ("", "<think>先想一想</think>答案是四")
    finally:
        await engine.close()


async def test_reasoning_opened_by_the_template_deepseek_style(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model(template="deepseek-r1"))
    try:
        chat = engine.render_chat([{"role": "user", "content": "2+2?"}])
        assert chat.reasoning_opened is True
        result = await generate(
            engine,
            engine.tokenize(chat.text),
            temperature=0,
            grammar='root ::= "想一想\\n</think>\\n\\n" "四"',
            reasoning_opened=chat.reasoning_opened,
        )
        assert result.reasoning.strip() == "想一想"
        assert result.text.strip() == "四"
    finally:
        await engine.close()


async def test_logprobs_belong_to_answer_tokens_only(make_test_model: Callable[..., Path]) -> None:
    engine = tiny_engine(make_test_model())
    try:
        grammar = 'root ::= "<think>" "abc" "</think>" "xyz"'
        result = await generate(engine, engine.tokenize("Hi"), temperature=0, grammar=grammar, logprobs=2)
        assert (result.reasoning, result.text) == ("abc", "xyz")
        answer = [e for e in result.events if isinstance(e, TextDelta)]
        pieces = "".join(lp.token for e in answer for lp in e.logprobs)
        assert "xyz" in pieces and "abc" not in pieces
    finally:
        await engine.close()
