"""Tool-call parsing for the Qwen (Hermes), DeepSeek and Llama 3 output formats, and the forced-call schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from haven.chat.tool_calls import (
    ToolCall,
    ToolCallStream,
    call_from_forced_output,
    family_for,
    forced_call_schema,
    parse_tool_calls,
)
from haven.engine.protocol import ModelInfo

TEMPLATES = Path(__file__).resolve().parents[2] / "haven" / "models" / "factory" / "templates"


def _info(architecture: str, template: str | None) -> ModelInfo:
    return ModelInfo(
        name="m",
        architecture=architecture,
        context_length=512,
        training_context_length=512,
        vocab_size=100,
        embedding_length=8,
        parameter_count=1,
        quantization="F32",
        chat_template=template,
        bos_token=None,
        eos_token=None,
    )


def _simple(calls: list[ToolCall]) -> list[tuple[str, dict[str, object]]]:
    return [(c.name, json.loads(c.arguments)) for c in calls]


# --- Qwen / Hermes ---------------------------------------------------------------------------------


def test_qwen_single_call_exactly_as_qwen25_writes_it() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n</tool_call>'
    content, calls = parse_tool_calls(text, "qwen")
    assert content == ""
    assert _simple(calls) == [("get_weather", {"city": "Paris", "unit": "celsius"})]
    assert calls[0].id.startswith("call_") and len(calls[0].id) > 10
    assert json.loads(calls[0].arguments) == calls[0].arguments_dict


def test_qwen_text_before_and_two_parallel_calls() -> None:
    text = (
        "Let me check both.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "get_time", "arguments": {"tz": "Europe/Paris"}}\n</tool_call>'
    )
    content, calls = parse_tool_calls(text, "qwen")
    assert content == "Let me check both."
    assert _simple(calls) == [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "Europe/Paris"})]
    assert calls[0].id != calls[1].id


def test_qwen_arguments_given_as_json_string_and_unclosed_final_call() -> None:
    text = '<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}'
    content, calls = parse_tool_calls(text, "qwen")
    assert content == ""
    assert _simple(calls) == [("add", {"a": 1, "b": 2})]


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par</tool_call>',  # broken JSON
        '<tool_call>{"arguments": {"city": "Paris"}}</tool_call>',  # no name
        '<tool_call>{"name": "", "arguments": {}}</tool_call>',  # empty name
        '<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>',  # arguments not an object
        '<tool_call>["f"]</tool_call>',
        "plain answer with no call",
    ],
)
def test_qwen_malformed_calls_stay_content(text: str) -> None:
    assert parse_tool_calls(text, "qwen") == (text, [])


def test_qwen_one_good_one_malformed_keeps_the_malformed_as_text() -> None:
    text = '<tool_call>{"name": "a", "arguments": {}}</tool_call> then <tool_call>{oops}</tool_call>'
    content, calls = parse_tool_calls(text, "qwen")
    assert _simple(calls) == [("a", {})]
    assert content == "then <tool_call>{oops}</tool_call>"


# --- DeepSeek --------------------------------------------------------------------------------------

DS_R1 = (
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    '```json\n{"city": "Tokyo"}\n```<｜tool▁call▁end｜>\n'
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
    '```json\n{"tz": "Asia/Tokyo"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'
)


def test_deepseek_r1_two_calls_with_leading_text() -> None:
    content, calls = parse_tool_calls("I will look it up.\n\n" + DS_R1, "deepseek")
    assert content == "I will look it up."
    assert _simple(calls) == [("get_weather", {"city": "Tokyo"}), ("get_time", {"tz": "Asia/Tokyo"})]


def test_deepseek_v31_variant_without_type_and_fence() -> None:
    text = (
        '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>search<｜tool▁sep｜>{"q": "haven"}'
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    )
    content, calls = parse_tool_calls(text, "deepseek")
    assert (content, _simple(calls)) == ("", [("search", {"q": "haven"})])


def test_deepseek_missing_calls_end_still_parses() -> None:
    text = DS_R1.removesuffix("<｜tool▁calls▁end｜>")
    assert len(parse_tool_calls(text, "deepseek")[1]) == 2


def test_deepseek_malformed_arguments_keep_whole_block_as_text() -> None:
    text = (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n"
        "```json\n{not json}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    )
    assert parse_tool_calls(text, "deepseek") == (text, [])
    assert parse_tool_calls("<｜tool▁calls▁begin｜>garbage", "deepseek") == ("<｜tool▁calls▁begin｜>garbage", [])


def test_deepseek_round_trip_through_the_real_template_rendering() -> None:
    """What the R1 template renders for an assistant tool call is what the parser reads back."""
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string((TEMPLATES / "deepseek-r1.jinja").read_text())
    rendered = template.render(
        bos_token="",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
                ],
            },
        ],
    )
    output = rendered.split("<｜Assistant｜>", 1)[1].removesuffix("<｜end▁of▁sentence｜>")
    content, calls = parse_tool_calls(output, "deepseek")
    assert (content, _simple(calls)) == ("", [("get_weather", {"city": "Oslo"})])


# --- Llama 3 ---------------------------------------------------------------------------------------


def test_llama3_json_call_with_parameters() -> None:
    text = '{"name": "get_weather", "parameters": {"city": "Berlin"}}'
    assert _simple(parse_tool_calls(text, "llama3")[1]) == [("get_weather", {"city": "Berlin"})]
    assert parse_tool_calls(text, "llama3")[0] == ""


def test_llama3_python_tag_several_calls_separated_by_semicolons() -> None:
    text = '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}'
    content, calls = parse_tool_calls(text, "llama3")
    assert (content, _simple(calls)) == ("", [("a", {"x": 1}), ("b", {})])


def test_llama3_openai_style_wrapper_is_unwrapped() -> None:
    text = '{"type": "function", "function": {"name": "a", "arguments": {"x": 2}}}'
    assert _simple(parse_tool_calls(text, "llama3")[1]) == [("a", {"x": 2})]


def test_llama3_builtin_python_call() -> None:
    text = '<|python_tag|>brave_search.call(query="current weather in Menlo Park", count=3)'
    content, calls = parse_tool_calls(text, "llama3")
    assert (content, _simple(calls)) == ("", [("brave_search", {"query": "current weather in Menlo Park", "count": 3})])


@pytest.mark.parametrize(
    "text",
    [
        '{"answer": 42, "name_hint": "x"}',  # a JSON answer, not a call
        '{"name": "Alice", "age": 30} and some prose',  # trailing prose: not all calls
        '{"name": "f", "parameters": {"x": 1}',  # truncated
        "Sure! Here is the plan.",
        "<|python_tag|>print(1 +)",
    ],
)
def test_llama3_non_calls_stay_content(text: str) -> None:
    assert parse_tool_calls(text, "llama3") == (text, [])


def test_unknown_family_tries_every_format() -> None:
    assert _simple(parse_tool_calls(DS_R1, "other")[1])[0] == ("get_weather", {"city": "Tokyo"})
    assert parse_tool_calls("hello", "other") == ("hello", [])


# --- family detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "template_file", "family"),
    [
        ("qwen2", "qwen2.5.jinja", "qwen"),
        ("llama", "llama3.jinja", "llama3"),
        ("qwen2", "deepseek-r1.jinja", "deepseek"),  # a Qwen-architecture R1 distill writes DeepSeek calls
        ("llama", "deepseek-r1.jinja", "deepseek"),
        ("llama", None, "llama3"),
        ("deepseek2", None, "deepseek"),
        ("qwen2", None, "qwen"),
        ("gemma3", None, "qwen"),
    ],
)
def test_family_for(architecture: str, template_file: str | None, family: str) -> None:
    template = (TEMPLATES / template_file).read_text() if template_file else None
    assert family_for(_info(architecture, template)) == family


# --- forcing a named function ------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_forced_call_schema_accepts_the_call_and_rejects_others() -> None:
    schema = forced_call_schema(WEATHER_TOOL)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"name": "get_weather", "arguments": {"city": "Rome"}}, schema)
    for bad in ({"name": "other", "arguments": {"city": "Rome"}}, {"name": "get_weather", "arguments": {}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_call_from_forced_output() -> None:
    call = call_from_forced_output('{"name": "get_weather", "arguments": {"city": "Rome"}}', WEATHER_TOOL)
    assert call is not None and (call.name, call.arguments_dict) == ("get_weather", {"city": "Rome"})
    assert call_from_forced_output('{"name": "nope", "arguments": {}}', WEATHER_TOOL) is None
    assert call_from_forced_output("not json", WEATHER_TOOL) is None


def test_forced_call_schema_needs_a_named_function() -> None:
    with pytest.raises(ValueError, match="name"):
        forced_call_schema({"type": "function", "function": {}})


# --- streaming -----------------------------------------------------------------------------------------


def _stream(family: str, deltas: list[str]) -> tuple[list[str], str, list[tuple[str, dict[str, object]]]]:
    stream = ToolCallStream(family)
    shown = [stream.feed(d) for d in deltas]
    tail, calls = stream.finish()
    return [s for s in shown if s], tail, _simple(calls)


def test_stream_shows_text_then_holds_the_call() -> None:
    deltas = ["Let me ", "check.", "\n<tool", '_call>\n{"name": "f", ', '"arguments": {"x": 1}}\n</tool_call>']
    shown, tail, calls = _stream("qwen", deltas)
    assert shown == ["Let me ", "check.", "\n"]
    assert (tail, calls) == ("", [("f", {"x": 1})])


def test_stream_releases_a_false_alarm() -> None:
    shown, tail, calls = _stream("qwen", ["a <to", "p> b"])
    assert "".join(shown) + tail == "a <top> b" and calls == []
    shown, tail, calls = _stream("qwen", ["x <tool_call>not json</tool_call>"])
    assert (shown, tail, calls) == (["x "], "<tool_call>not json</tool_call>", [])


def test_stream_deepseek_and_llama3() -> None:
    shown, tail, calls = _stream("deepseek", ["Sure.", DS_R1[:20], DS_R1[20:]])
    assert shown == ["Sure."] and [c[0] for c in calls] == ["get_weather", "get_time"]
    shown, tail, calls = _stream("llama3", [" ", '{"name": "a", ', '"parameters": {}}'])
    assert (shown, calls) == ([], [("a", {})])
    shown, tail, calls = _stream("llama3", ['{"answer": ', "42}"])
    assert (shown, tail, calls) == ([], '{"answer": 42}', [])
    shown, tail, calls = _stream("llama3", ["Hello", " {not at start}"])
    assert (shown, tail, calls) == (["Hello", " {not at start}"], "", [])
