"""OpenAI's Responses API (``POST /v1/responses``) over the same chat backend as chat completions.

Protocol mapping only. ``input`` items become chat messages (``instructions`` → the system message,
``function_call`` items → an assistant turn's tool calls, ``function_call_output`` → tool messages,
``reasoning`` items → the next assistant turn's reasoning); the backend's events become output items:
a ``reasoning`` item (the thinking as ``reasoning_text``), a ``message`` with ``output_text`` and
``function_call`` items. Streaming sends the semantic events (``response.created``,
``response.output_item.added``, ``response.output_text.delta``, ``response.reasoning_text.delta``,
``response.function_call_arguments.delta``, … ``response.completed``); without ``stream`` the same event
sequence is built and only the final response is returned, so both answers always agree.

Responses are not stored (``store`` is accepted; nothing is kept), so ``previous_response_id`` is a 400
until the accounts/conversations storage can hold them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from haven.chat import backend as api
from haven.errors import HavenError, InvalidRequestError
from haven.server.openai.convert import usage_json
from haven.server.openai.protocol import ReasoningConfig
from haven.server.openai.responses_protocol import InputItem, NamedFunctionChoice, ResponsesRequest


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _messages(request: ResponsesRequest) -> tuple[api.Message, ...]:
    out: list[api.Message] = []
    if request.instructions:
        out.append(api.Message("system", request.instructions))
    items = [InputItem(role="user", content=request.input)] if isinstance(request.input, str) else request.input
    reasoning: str | None = None
    for i, item in enumerate(items):
        try:
            text = item.text()
        except ValueError as exc:
            raise InvalidRequestError(f"input[{i}]: {exc}.", param=f"input[{i}]") from None
        if item.type == "reasoning":
            reasoning = (reasoning or "") + text
        elif item.type == "function_call":
            call = api.ToolCall(item.call_id or "", item.name or "", item.arguments or "{}")
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and not last.tool_call_id:
                out[-1] = api.Message("assistant", last.content, last.reasoning, (*last.tool_calls, call))
            else:
                out.append(api.Message("assistant", "", reasoning, (call,)))
                reasoning = None
        elif item.type == "function_call_output":
            out.append(api.Message("tool", text, tool_call_id=item.call_id))
        else:
            role: api.Role = "system" if item.role in ("system", "developer") else item.role or "user"  # type: ignore[assignment]
            out.append(api.Message(role, text, reasoning if role == "assistant" else None))
            if role == "assistant":
                reasoning = None
    if not any(m.role == "user" for m in out):
        raise InvalidRequestError("input must contain at least one user message.", param="input")
    return tuple(out)


def _output(request: ResponsesRequest) -> api.OutputFormat:
    fmt = request.text.format if request.text is not None else None
    if fmt is None or fmt.type == "text":
        return api.PlainText()
    if fmt.type == "json_object":
        return api.JsonObject()
    return api.JsonSchema(fmt.schema_ or {}, fmt.name, fmt.strict)


def _reasoning(config: ReasoningConfig | None) -> api.Reasoning:
    if config is None:
        return api.Reasoning()
    if config.effort == "none" or config.enabled is False:
        return api.Reasoning(enabled=False)
    effort = None if config.effort in (None, "none") else config.effort
    return api.Reasoning(enabled=True if effort or config.enabled else None, effort=effort)


def chat_request(request: ResponsesRequest) -> api.ChatRequest:
    if request.previous_response_id is not None:
        raise InvalidRequestError(
            "previous_response_id is not supported yet: this server does not store responses; "
            "send the whole conversation in input instead.",
            param="previous_response_id",
        )
    choice = request.tool_choice
    tool_choice = choice.name if isinstance(choice, NamedFunctionChoice) else choice or "auto"
    tools = tuple(api.Tool(t.name, t.description, t.parameters, t.strict) for t in request.tools or ())
    return api.ChatRequest(
        model=request.model,
        messages=_messages(request),
        tools=tools,
        tool_choice=tool_choice,
        output=_output(request),
        reasoning=_reasoning(request.reasoning),
        sampling=api.Sampling(temperature=request.temperature, top_p=request.top_p),
        limits=api.Limits(max_tokens=request.max_output_tokens),
        seed=request.seed,
        logprobs=request.top_logprobs,
        request_id=_id("resp"),
    )


def _usage(usage: api.Usage) -> dict[str, Any]:
    chat_usage = usage_json(usage)
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": chat_usage["prompt_tokens_details"],
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": chat_usage["completion_tokens_details"],
        "total_tokens": chat_usage["total_tokens"],
    }


class _Builder:
    """Turns chat events into Responses output items and the SSE events that build them."""

    def __init__(self, request: ResponsesRequest, response_id: str) -> None:
        self.request = request
        self.id = response_id
        self.created = int(time.time())
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.sequence = 0

    def frame(self, kind: str, **payload: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **payload}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()

    def response(self, status: str, **extra: Any) -> dict[str, Any]:
        r = self.request
        fmt = (
            r.text.format.model_dump(by_alias=True, exclude_none=True) if r.text and r.text.format else {"type": "text"}
        )
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": r.model,
            "output": self.items,
            "instructions": r.instructions,
            "tools": [{**t.model_dump(exclude_none=True), "type": "function"} for t in r.tools or ()],
            "tool_choice": r.tool_choice.model_dump()
            if isinstance(r.tool_choice, NamedFunctionChoice)
            else r.tool_choice or "auto",
            "parallel_tool_calls": r.parallel_tool_calls if r.parallel_tool_calls is not None else True,
            "temperature": r.temperature,
            "top_p": r.top_p,
            "max_output_tokens": r.max_output_tokens,
            "previous_response_id": None,
            "reasoning": {"effort": r.reasoning.effort if r.reasoning else None, "summary": None},
            "text": {"format": fmt},
            "store": False,
            "metadata": r.metadata or {},
            "error": None,
            "incomplete_details": None,
            "usage": None,
            **extra,
        }

    def _start(self, item: dict[str, Any]) -> list[bytes]:
        self.items.append(item)
        return [self.frame("response.output_item.added", output_index=len(self.items) - 1, item=item)]

    def close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        index = self.items.index(item)
        item["status"] = "completed"
        frames = []
        if item["type"] == "reasoning":
            text = item["content"][0]["text"]
            frames.append(
                self.frame(
                    "response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text
                )
            )
        else:
            part = item["content"][0]
            frames.append(
                self.frame(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            frames.append(
                self.frame(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        frames.append(self.frame("response.output_item.done", output_index=index, item=item))
        return frames

    def reasoning(self, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if self.open is None or self.open["type"] != "reasoning":
            frames += self.close()
            self.open = {
                "type": "reasoning",
                "id": _id("rs"),
                "summary": [],
                "status": "in_progress",
                "content": [{"type": "reasoning_text", "text": ""}],
            }
            frames += self._start(self.open)
        self.open["content"][0]["text"] += text
        index = len(self.items) - 1
        return [
            *frames,
            self.frame(
                "response.reasoning_text.delta",
                item_id=self.open["id"],
                output_index=index,
                content_index=0,
                delta=text,
            ),
        ]

    def text(self, text: str) -> list[bytes]:
        frames: list[bytes] = []
        if self.open is None or self.open["type"] != "message":
            frames += self.close()
            self.open = {
                "type": "message",
                "id": _id("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            frames += self._start(self.open)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self.open["content"].append(part)
            frames.append(
                self.frame(
                    "response.content_part.added",
                    item_id=self.open["id"],
                    output_index=len(self.items) - 1,
                    content_index=0,
                    part=dict(part),
                )
            )
        self.open["content"][0]["text"] += text
        index = len(self.items) - 1
        return [
            *frames,
            self.frame(
                "response.output_text.delta",
                item_id=self.open["id"],
                output_index=index,
                content_index=0,
                delta=text,
                logprobs=[],
            ),
        ]

    def call(self, delta: api.ToolCallDelta) -> list[bytes]:
        frames = self.close()
        item = self.calls.get(delta.index)
        if item is None:
            item = {
                "type": "function_call",
                "id": _id("fc"),
                "call_id": delta.id or _id("call"),
                "name": delta.name or "",
                "arguments": "",
                "status": "in_progress",
            }
            self.calls[delta.index] = item
            frames += self._start(item)
        item["arguments"] += delta.arguments
        index = self.items.index(item)
        return [
            *frames,
            self.frame(
                "response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=delta.arguments
            ),
        ]

    def finish(self, final: api.Final) -> tuple[list[bytes], dict[str, Any]]:
        frames = self.close()
        for item in self.calls.values():
            item["status"] = "completed"
            index = self.items.index(item)
            frames.append(
                self.frame(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
            frames.append(self.frame("response.output_item.done", output_index=index, item=item))
        usage = _usage(final.usage)
        if final.finish_reason == "error":
            error = {
                "code": final.error.code if final.error else "engine_error",
                "message": final.error.message if final.error else "the generation failed.",
            }
            response = self.response("failed", error=error, usage=usage)
            return [*frames, self.frame("response.failed", response=response)], response
        if final.finish_reason == "length":
            response = self.response("incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=usage)
            return [*frames, self.frame("response.incomplete", response=response)], response
        response = self.response("completed", usage=usage)
        return [*frames, self.frame("response.completed", response=response)], response


async def _frames(builder: _Builder, stream: api.ChatStream, result: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    created = builder.response("in_progress")
    yield builder.frame("response.created", response=created)
    yield builder.frame("response.in_progress", response=created)
    try:
        async for event in stream:
            if isinstance(event, api.ReasoningDelta):
                frames = builder.reasoning(event.text)
            elif isinstance(event, api.TextDelta):
                frames = builder.text(event.text) if event.text else []
            elif isinstance(event, api.ToolCallDelta):
                frames = builder.call(event)
            else:
                frames, response = builder.finish(event)
                result.append(response)
            for frame in frames:
                yield frame
            if result:
                return
    except HavenError as exc:
        yield builder.frame("error", code=exc.code, message=exc.message, param=exc.param)
    finally:
        await stream.aclose()


async def create_response(backend: api.ChatBackend, request: ResponsesRequest) -> dict[str, Any] | AsyncIterator[bytes]:
    stream = await backend.chat(chat_request(request))
    builder = _Builder(request, _id("resp"))
    result: list[dict[str, Any]] = []
    if request.stream:
        return _frames(builder, stream, result)
    async for _ in _frames(builder, stream, result):
        pass
    if not result:
        raise InvalidRequestError("the generation ended without a result.")
    response = result[0]
    if response["status"] == "failed":
        error = api.failure(
            api.Final("error", api.Usage(), api.ChatError("engine_error", response["error"]["message"]))
        )
        assert error is not None
        raise error
    return response
