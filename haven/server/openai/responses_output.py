"""Responses API output: chat events → output items (reasoning, message, function_call) and the semantic
SSE events that build them (``response.output_item.added``, ``response.output_text.delta``,
``response.reasoning_text.delta``, ``response.function_call_arguments.delta``, … ``response.completed``).

Used by :mod:`haven.server.openai.responses` for streamed and non-streamed answers alike.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from haven.chat import backend as api
from haven.server.openai.convert import usage_json
from haven.server.openai.responses_protocol import NamedFunctionChoice, ResponsesRequest


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _usage(usage: api.Usage) -> dict[str, Any]:
    chat_usage = usage_json(usage)
    return {
        "input_tokens": chat_usage["prompt_tokens"],
        "input_tokens_details": chat_usage["prompt_tokens_details"],
        "output_tokens": chat_usage["completion_tokens"],
        "output_tokens_details": chat_usage["completion_tokens_details"],
        "total_tokens": chat_usage["total_tokens"],
    }


class ResponseBuilder:
    """Turns chat events into Responses output items and the SSE events that build them."""

    def __init__(self, request: ResponsesRequest, response_id: str) -> None:
        self.request = request
        self.id = response_id
        self.created = int(time.time())
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.sequence = 0
        self.stored = False
        """Whether this response will be kept (a store is configured and the request allows it)."""

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
            "store": self.stored,
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
                "id": new_id("rs"),
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
                "id": new_id("msg"),
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
                "id": new_id("fc"),
                "call_id": delta.id or new_id("call"),
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
