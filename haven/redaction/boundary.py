"""Redaction where a request crosses the machine's boundary, in OpenAI chat-completions JSON.

:class:`OutboundExchange` redacts one request body before it is sent to a remote OpenAI-compatible server
(a remote upstream, an external audit target) and restores the reply: a whole response body, or the
``delta`` of each streamed chunk (a placeholder split across chunks is restored whole, see
:class:`~haven.redaction.redactor.StreamRestorer`). Its ``counts`` are what the security log records: how many
values of each kind were masked, never the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haven.redaction.redactor import Redactor, StreamRestorer


class OutboundExchange:
    def __init__(self) -> None:
        self.redactor = Redactor()
        self._restorers: dict[tuple[int, str], StreamRestorer] = {}

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.redactor.counts)

    def request(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of an OpenAI chat (or completions) request with every text the user supplied redacted."""
        out = dict(body)
        if isinstance(body.get("messages"), list):
            out["messages"] = self.redactor.redact_messages(body["messages"])
        if isinstance(body.get("prompt"), str):
            out["prompt"] = self.redactor.redact(body["prompt"]).text
        if isinstance(body.get("instructions"), str):
            out["instructions"] = self.redactor.redact(body["instructions"]).text
        return out

    def response(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A non-streamed reply with the placeholders restored in every choice's text and tool calls."""
        out = dict(body)
        choices = body.get("choices")
        if isinstance(choices, list):
            out["choices"] = [self._restore_choice(choice, "message") for choice in choices]
        return out

    def chunk(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One streamed chunk: deltas restored through a per-choice, per-field stream restorer."""
        out = dict(body)
        choices = body.get("choices")
        if not isinstance(choices, list):
            return out
        restored = []
        for choice in choices:
            if not isinstance(choice, Mapping) or not isinstance(choice.get("delta"), Mapping):
                restored.append(choice)
                continue
            index = int(choice.get("index", 0))
            delta = dict(choice["delta"])
            for field in ("content", "reasoning", "reasoning_content"):
                if isinstance(delta.get(field), str):
                    restorer = self._restorers.setdefault((index, field), self.redactor.stream_restorer())
                    delta[field] = restorer.feed(delta[field])
                    if choice.get("finish_reason"):
                        delta[field] += restorer.flush()
            restored.append({**choice, "delta": delta})
        out["choices"] = restored
        return out

    def _restore_choice(self, choice: Any, key: str) -> Any:
        if not isinstance(choice, Mapping) or not isinstance(choice.get(key), Mapping):
            return choice
        message = dict(choice[key])
        for field in ("content", "reasoning", "reasoning_content"):
            if isinstance(message.get(field), str):
                message[field] = self.redactor.restore(message[field])
        if isinstance(message.get("tool_calls"), list):
            message["tool_calls"] = [self._restore_call(call) for call in message["tool_calls"]]
        return {**choice, key: message}

    def _restore_call(self, call: Any) -> Any:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("arguments"), str):
            return call
        return {**call, "function": {**function, "arguments": self.redactor.restore(function["arguments"])}}
