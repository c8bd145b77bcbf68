"""Conversation → prompt tokens: template dicts, model-family quirks, model defaults and the reasoning policy.

* :func:`template_messages` turns :class:`~haven.chat.backend.Message` into the dicts Hugging Face chat
  templates expect. Family quirks: DeepSeek's template concatenates tool-call arguments as text, Qwen's
  and Llama's serialise a dict; an assistant turn's reasoning goes in as ``reasoning_content`` (Qwen3)
  and ``thinking`` (gpt-oss style templates).
* :func:`with_defaults` applies a model's stored :class:`~haven.models.manifest.ModelDefaults` (system
  prompt, stop strings, parameters) to what a request leaves unset.
* :func:`render` renders (with the model's template, or the defaults' replacement template), applies the
  reasoning policy and tokenizes. With thinking off, templates that know ``enable_thinking`` switch it
  off; a template that opens ``<think>`` regardless (DeepSeek-R1 distills) gets it closed right away
  (``<think>\\n\\n</think>\\n\\n``, what Qwen3's own template writes for ``enable_thinking=False``), so the
  model answers as content.

It knows the engine's protocol and chat templates; nothing about HTTP or any API's JSON.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from haven.chat.backend import ChatRequest, Limits, Message, Mirostat, Sampling, TextRequest, Tool
from haven.chat.offload import off_loop_if_long
from haven.engine.chat_template import scan_template
from haven.engine.protocol import ModelEngine
from haven.errors import InvalidRequestError
from haven.models.manifest import ModelDefaults

CLOSE_THINK = "\n\n</think>\n\n"


def template_messages(messages: Sequence[Message], family: str) -> list[dict[str, Any]]:
    """Messages as chat-template dicts (HF conventions)."""
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name:
            item["name"] = m.name
        if m.reasoning:
            item["reasoning_content"] = m.reasoning
            item["thinking"] = m.reasoning
        if m.tool_calls:
            calls = []
            for j, call in enumerate(m.tool_calls):
                try:
                    arguments = json.loads(call.arguments or "{}")
                except json.JSONDecodeError:
                    param = f"messages[{i}].tool_calls[{j}].function.arguments"
                    raise InvalidRequestError(f"{param} is not valid JSON.", param=param) from None
                function = {"name": call.name, "arguments": call.arguments if family == "deepseek" else arguments}
                calls.append(
                    {"id": call.id, "type": "function", "function": function}
                    if call.id
                    else {"type": "function", "function": function}
                )
            item["tool_calls"] = calls
        if m.tool_call_id:
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


def template_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """Tools in OpenAI's shape, which every tool-aware template reads."""
    out = []
    for tool in tools:
        function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters or {"type": "object"})}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def check_template(source: str) -> None:
    """A 400 unless ``source`` passes the chat-template safety scan (a model default's replacement template)."""
    scan = scan_template(source)
    if not scan.safe:
        raise InvalidRequestError(f"the template was refused: {scan.reason}.", param="template")


# --- model defaults ---------------------------------------------------------------------------------

_SAMPLING_DEFAULTS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
)


def _defaulted_sampling(sampling: Sampling, parameters: Mapping[str, Any]) -> Sampling:
    changes = {k: parameters[k] for k in _SAMPLING_DEFAULTS if k in parameters and getattr(sampling, k) is None}
    mode = parameters.get("mirostat")
    if sampling.mirostat is None and mode in (1, 2):  # a Modelfile's PARAMETER mirostat 2
        changes["mirostat"] = Mirostat(
            mode, float(parameters.get("mirostat_tau", 5.0)), float(parameters.get("mirostat_eta", 0.1))
        )
    return dataclasses.replace(sampling, **changes) if changes else sampling


def _defaulted_limits(limits: Limits, defaults: ModelDefaults) -> Limits:
    changes: dict[str, Any] = {}
    if defaults.stop:
        changes["stop"] = tuple(dict.fromkeys((*limits.stop, *defaults.stop)))
    predict = defaults.parameters.get("num_predict")
    if limits.max_tokens is None and isinstance(predict, int) and predict > 0:
        changes["max_tokens"] = predict
    return dataclasses.replace(limits, **changes) if changes else limits


def with_defaults(request: ChatRequest, defaults: ModelDefaults) -> ChatRequest:
    """``request`` with the model's defaults filled in where it says nothing (its own values win)."""
    if defaults.empty or not request.apply_defaults:
        return request
    messages = request.messages
    if defaults.system and not any(m.role == "system" for m in messages):
        messages = (Message("system", defaults.system), *messages)
    parameters = defaults.parameters
    seed = request.seed if request.seed is not None else parameters.get("seed")
    ctx = request.context_length if request.context_length is not None else parameters.get("num_ctx")
    return dataclasses.replace(
        request,
        messages=messages,
        sampling=_defaulted_sampling(request.sampling, parameters),
        limits=_defaulted_limits(request.limits, defaults),
        seed=seed,
        context_length=ctx,
    )


def text_with_defaults(request: TextRequest, defaults: ModelDefaults) -> TextRequest:
    if defaults.empty or not request.apply_defaults:
        return request
    seed = request.seed if request.seed is not None else defaults.parameters.get("seed")
    return dataclasses.replace(
        request,
        sampling=_defaulted_sampling(request.sampling, defaults.parameters),
        limits=_defaulted_limits(request.limits, defaults),
        seed=seed,
    )


# --- rendering ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    reasoning_opened: bool


def thinking_enabled(request: ChatRequest) -> bool:
    """The policy: an explicit ``reasoning.enabled`` wins, then ``chat_template_kwargs.enable_thinking``,
    then the model's default (thinking on where the template offers it)."""
    if request.reasoning.enabled is not None:
        return request.reasoning.enabled
    flag = request.template_kwargs.get("enable_thinking")
    return flag if isinstance(flag, bool) else True


async def render(
    engine: ModelEngine,
    request: ChatRequest,
    family: str,
    *,
    tools: Sequence[Mapping[str, Any]] | None,
    template: str | None = None,
) -> Prompt:
    """Render ``request``'s conversation for ``engine`` and tokenize it (the template writes BOS itself).

    The one place messages become prompt tokens, through the engine's ``tokenize_chat``: rendering and
    tokenizing run off the event loop, and request text is never parsed into control tokens (issue 11)."""
    thinking = thinking_enabled(request)
    messages = await off_loop_if_long(request.messages, template_messages, request.messages, family)
    extra = dict(request.template_kwargs)
    extra.pop("enable_thinking", None)
    if request.reasoning.effort is not None:
        extra.setdefault("reasoning_effort", request.reasoning.effort)
    # Rendered and tokenized off the event loop; text from the request never becomes control tokens (issue 11).
    chat = await engine.tokenize_chat(messages, tools=tools, enable_thinking=thinking, template=template,
                                      template_kwargs=extra or None)
    tokens, opened = list(chat.tokens), chat.reasoning_opened
    if opened and not thinking:  # R1 opens <think> whatever it is told: close it, so the reply is content
        tokens += await engine.tokenize_text(CLOSE_THINK, add_special=False, parse_special=True)
        opened = False
    return Prompt(tokens, opened)
