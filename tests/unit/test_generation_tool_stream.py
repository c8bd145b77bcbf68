"""ToolCallStream: answer text streams, tool calls are held and parsed, split markers are never half-sent."""

from __future__ import annotations

import json

from haven.chat.tool_calls import ToolCallStream


def _run(family: str, pieces: list[str]) -> tuple[list[str], str, list[tuple[str, dict[str, object]]]]:
    f = ToolCallStream(family)
    sent = [f.feed(p) for p in pieces]
    rest, calls = f.finish()
    return sent, rest, [(c.name, json.loads(c.arguments)) for c in calls]


def test_plain_answer_streams_piece_by_piece() -> None:
    sent, rest, calls = _run("qwen", ["Hello", " world", "!"])
    assert sent == ["Hello", " world", "!"] and rest == "" and calls == []


def test_qwen_call_after_text_with_the_marker_split_across_tokens() -> None:
    pieces = ["Let me check. <", "tool_", "call>", '{"name": "f", "arguments": {"x": 1}}', "</tool_call>"]
    sent, rest, calls = _run("qwen", pieces)
    assert "".join(sent) == "Let me check. "
    assert sent[1:] == ["", "", "", ""]  # "<" and "tool_" are held: they may start a marker
    assert rest == ""
    assert calls == [("f", {"x": 1})]


def test_a_lone_angle_bracket_is_sent_at_the_end() -> None:
    sent, rest, calls = _run("qwen", ["a <", " b"])
    assert "".join(sent) + rest == "a < b" and calls == []


def test_llama3_bare_json_is_held_whole() -> None:
    sent, rest, calls = _run("llama3", [" ", '{"name": "f", ', '"parameters": {"x": 2}}'])
    assert sent == ["", "", ""] and rest == "" and calls == [("f", {"x": 2})]


def test_llama3_json_that_is_not_a_call_comes_back_as_text() -> None:
    sent, rest, calls = _run("llama3", ['{"answer": 42}'])
    assert sent == [""] and rest == '{"answer": 42}' and calls == []


def test_deepseek_calls_block() -> None:
    block = (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
        '{"x": 3}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
    )
    sent, rest, calls = _run("deepseek", ["Checking.", block[:5], block[5:]])
    assert "".join(sent) == "Checking." and calls == [("f", {"x": 3})]
