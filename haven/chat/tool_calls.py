"""Tool calls: find the function calls a model wrote in its output text, per template family.

Models do not return structured tool calls; they write them in the text in the format their
chat template taught them. This module knows three families:

* ``qwen`` (Hermes style, Qwen 2.5 / 3): ``<tool_call>{"name": …, "arguments": {…}}</tool_call>``
* ``deepseek`` (DeepSeek R1 / V3): ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME``
  followed by a fenced ```json block and ``<｜tool▁call▁end｜>`` (the format of the official R1 template and
  llama.cpp's ``common/chat`` parser), plus the V3.1 variant ``NAME<｜tool▁sep｜>{…}``;
* ``llama3``: a bare JSON object ``{"name": …, "parameters": {…}}`` (several separated by ``;``), optionally
  after ``<|python_tag|>``, or a built-in call ``<|python_tag|>brave_search.call(query="…")``.

:func:`parse_tool_calls` returns the text that is left once the calls are taken out, and the calls with
their arguments as a JSON string (OpenAI's shape). A call that does not parse stays in the content: a
half-written or malformed call is the model's text, never an exception. It knows nothing about HTTP.

It also offers :func:`forced_call_schema` / :func:`call_from_forced_output`: when a request's
``tool_choice`` names one function, the server can constrain sampling to that function's call shape with
a JSON schema (the engine turns schemas into grammars) and wrap the output as a call, whatever the family.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from haven.engine.protocol import ModelInfo

FAMILIES = ("qwen", "deepseek", "llama3")


@dataclass(frozen=True)
class ToolCall:
    """One function call: ``arguments`` is a JSON object serialised as a string (OpenAI's shape)."""

    id: str
    name: str
    arguments: str

    @property
    def arguments_dict(self) -> dict[str, Any]:
        """The arguments as a dict (Ollama's shape)."""
        value = json.loads(self.arguments)
        return value if isinstance(value, dict) else {}


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def family_for(info: ModelInfo) -> str:
    """Guess the tool-call family from the chat template, then from the architecture.

    The template decides: a Llama-architecture DeepSeek distill writes DeepSeek calls, so markers in
    the template are checked before the architecture name.
    """
    template = info.chat_template or ""
    if "tool▁call" in template or "<｜Assistant｜>" in template:
        return "deepseek"
    if "<tool_call>" in template:
        return "qwen"
    if "<|python_tag|>" in template or "<|start_header_id|>" in template or '"parameters"' in template:
        return "llama3"
    arch = info.architecture.lower()
    if arch.startswith("deepseek"):
        return "deepseek"
    if arch.startswith("llama"):
        return "llama3"
    return "qwen"


def parse_tool_calls(text: str, family: str) -> tuple[str, list[ToolCall]]:
    """Split model output into (remaining content, tool calls). Unknown family: try every format."""
    parsers = {"qwen": _parse_qwen, "deepseek": _parse_deepseek, "llama3": _parse_llama3}
    if family in parsers:
        return parsers[family](text)
    for parser in parsers.values():
        content, calls = parser(text)
        if calls:
            return content, calls
    return text, []


def _make_call(name: Any, arguments: Any) -> ToolCall | None:
    """A ToolCall if ``name`` is a non-empty string and ``arguments`` a JSON object (dict or its text)."""
    if not isinstance(name, str) or not name.strip():
        return None
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(id=new_call_id(), name=name.strip(), arguments=json.dumps(arguments, ensure_ascii=False))


def _call_from_object(obj: Any, argument_keys: tuple[str, ...]) -> ToolCall | None:
    # Some models wrap the call OpenAI-style: {"type": "function", "function": {"name": …, "arguments": …}}.
    if isinstance(obj, dict) and "name" not in obj and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or "name" not in obj:
        return None
    for key in argument_keys:
        if key in obj:
            return _make_call(obj["name"], obj[key])
    return _make_call(obj["name"], {})


def _join(parts: list[str]) -> str:
    return "".join(parts).strip()


# --- Qwen / Hermes -------------------------------------------------------------------------------------

_QWEN_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


def _parse_qwen(text: str) -> tuple[str, list[ToolCall]]:
    calls: list[ToolCall] = []
    kept: list[str] = []
    position = 0
    for match in _QWEN_CALL.finditer(text):
        call = None
        try:
            call = _call_from_object(json.loads(match.group(1)), ("arguments", "parameters"))
        except json.JSONDecodeError:
            call = None
        if call is None:
            continue  # malformed: leave it in the content
        kept.append(text[position : match.start()])
        position = match.end()
        calls.append(call)
    kept.append(text[position:])
    return (_join(kept), calls) if calls else (text, [])


# --- DeepSeek ------------------------------------------------------------------------------------------

_DS_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
_DS_CALLS_END = "<｜tool▁calls▁end｜>"
_DS_CALL = re.compile(
    r"<｜tool▁call▁begin｜>\s*(?:(?P<type>\w+)\s*<｜tool▁sep｜>\s*(?P<name>[^\n<]+?)\s*\n\s*```(?:json)?\s*(?P<args>.*?)\s*```"
    r"|(?P<name2>[^\n<]+?)\s*<｜tool▁sep｜>\s*(?P<args2>.*?))\s*<｜tool▁call▁end｜>",
    re.DOTALL,
)


def _parse_deepseek(text: str) -> tuple[str, list[ToolCall]]:
    begin = text.find(_DS_CALLS_BEGIN)
    if begin < 0:
        return text, []
    end = text.find(_DS_CALLS_END, begin)
    block_end = len(text) if end < 0 else end + len(_DS_CALLS_END)
    block = text[begin + len(_DS_CALLS_BEGIN) : end if end >= 0 else len(text)]
    calls: list[ToolCall] = []
    for match in _DS_CALL.finditer(block):
        if match.group("name") is not None:
            call = _make_call(match.group("name"), match.group("args"))
        else:
            call = _make_call(match.group("name2"), match.group("args2"))
        if call is None:
            return text, []  # one malformed call: keep the whole block as text rather than half of it
        calls.append(call)
    if not calls:
        return text, []
    return (text[:begin] + text[block_end:]).strip(), calls


# --- Llama 3 -------------------------------------------------------------------------------------------

_PYTHON_TAG = "<|python_tag|>"
_BUILTIN_CALL = re.compile(r"^\s*([A-Za-z_][\w.]*)\.call\((.*)\)\s*$", re.DOTALL)


def _parse_builtin(code: str) -> ToolCall | None:
    """``brave_search.call(query="x")`` → ToolCall(name="brave_search", arguments='{"query": "x"}')."""
    match = _BUILTIN_CALL.match(code)
    if not match:
        return None
    try:
        node = ast.parse(f"f({match.group(2)})", mode="eval").body
        if not isinstance(node, ast.Call) or node.args:
            return None
        arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
    except (SyntaxError, ValueError):
        return None
    return _make_call(match.group(1), arguments)


def _parse_llama3(text: str) -> tuple[str, list[ToolCall]]:
    body = text
    prefix = ""
    tag = text.find(_PYTHON_TAG)
    if tag >= 0:
        prefix, body = text[:tag], text[tag + len(_PYTHON_TAG) :]
        builtin = _parse_builtin(body)
        if builtin is not None:
            return prefix.strip(), [builtin]
    stripped = body.strip()
    if not stripped.startswith("{"):
        return text, []
    # One or more JSON objects separated by ';' or whitespace; all of the body must be calls, otherwise
    # a JSON answer that happens to contain "name" would be mistaken for a call.
    decoder = json.JSONDecoder()
    calls: list[ToolCall] = []
    index = 0
    while index < len(stripped):
        try:
            obj, index = decoder.raw_decode(stripped, index)
        except json.JSONDecodeError:
            return text, []
        call = _call_from_object(obj, ("parameters", "arguments"))
        if call is None:
            return text, []
        calls.append(call)
        while index < len(stripped) and stripped[index] in "; \t\r\n":
            index += 1
    return prefix.strip(), calls


# --- forcing a call with a JSON schema ---------------------------------------------------------------


def _function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function", tool)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("a tool must have a function with a name")
    return function


def forced_call_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """JSON schema of ``{"name": <this function>, "arguments": <its parameters>}``.

    Pass it as ``SamplingParams.json_schema`` when ``tool_choice`` names this function, then turn the
    output into a call with :func:`call_from_forced_output`.
    """
    function = _function_of(tool)
    parameters = function.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": dict(parameters)},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def call_from_forced_output(text: str, tool: Mapping[str, Any]) -> ToolCall | None:
    """The call from output generated under :func:`forced_call_schema`; None if it is not one."""
    function = _function_of(tool)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("name") != function["name"]:
        return None
    return _make_call(obj["name"], obj.get("arguments"))


def forced_call(text: str, tools: Sequence[Mapping[str, Any]]) -> ToolCall | None:
    """The call in output generated under a schema that forces a call of one of ``tools``
    (``{"name": <one of them>, "arguments": {...}}``); None if the output is not one."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("arguments"), dict):
        return None
    names = {str(_function_of(t)["name"]) for t in tools}
    if obj.get("name") not in names:
        return None
    return _make_call(obj["name"], obj["arguments"])


# --- streaming -----------------------------------------------------------------------------------------

_MARKERS: dict[str, tuple[str, ...]] = {
    "qwen": ("<tool_call>",),
    # A bare call marker is held too, so nothing that may be part of a call block is ever half-sent.
    "deepseek": (_DS_CALLS_BEGIN, "<｜tool▁call▁begin｜>"),
    "llama3": (_PYTHON_TAG,),
}


class ToolCallStream:
    """Lets answer text stream while holding back anything that may be the start of a tool call.

    :meth:`feed` returns the part of each delta that can be shown now. From the first call marker of the
    family on (``<tool_call>`` …) text is held, and :meth:`finish` parses it. A possible *start* of a
    marker at the end of the text so far is held too, so a marker split across deltas is never half-sent.
    Llama 3 writes bare JSON calls, so an answer whose first non-blank character is ``{`` is held whole.
    Text that turns out not to be a call is returned by :meth:`finish` as content, so nothing is lost.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self.markers = _MARKERS.get(family) or tuple(m for ms in _MARKERS.values() for m in ms)
        self.bare_json = family not in ("qwen", "deepseek")
        self.pending = ""
        self.holding = False
        self.sent_any = False

    def feed(self, text: str) -> str:
        """The part of the text so far that is safe to send now."""
        self.pending += text
        if self.holding:
            return ""
        if self.bare_json and not self.sent_any:
            start = self.pending.lstrip()
            if not start or start.startswith("{"):
                self.holding = bool(start)
                return ""
        found = [i for i in (self.pending.find(m) for m in self.markers) if i >= 0]
        if found:
            cut = min(found)
            self.holding = True
        else:
            # Keep a suffix that could grow into a marker ("<tool_" …) until the next delta decides.
            cut = len(self.pending) - self._marker_prefix_length(self.pending)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        self.sent_any = self.sent_any or bool(out)
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content not yet sent, calls) once the generation has ended."""
        text, self.pending = self.pending, ""
        if not self.holding:
            return text, []
        return parse_tool_calls(text, self.family)

    def _marker_prefix_length(self, text: str) -> int:
        best = 0
        for marker in self.markers:
            for length in range(min(len(marker) - 1, len(text)), best, -1):
                if text.endswith(marker[:length]):
                    best = length
                    break
        return best
