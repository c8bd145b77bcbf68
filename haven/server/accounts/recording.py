"""The ``conversation_id`` extension of ``/v1/chat/completions`` and ``/api/chat``, and the per-request log line.

A pure ASGI middleware in front of the chat routes, so the protocol adapters stay unaware of it:

1. it takes the Haven fields ``conversation_id`` and ``parent_message_id`` out of the JSON body (the
   adapters' strict models never see them) and, with a ``conversation_id``, commits the request's
   trailing non-assistant messages and an empty reply marked incomplete
   (:class:`~haven.conversations.recorder.TurnRecorder`) before the route starts generating; another
   user's or an unknown conversation is 404 and nothing runs;
2. it reads the response as it goes out — OpenAI SSE chunks, Ollama NDJSON lines, or one JSON body, i.e.
   the public wire formats, not any internal type — feeding content, reasoning, tool calls, usage and
   finish reason to the recorder, which flushes the reply every second while streaming and finishes it
   at the end (kept as *incomplete* when the stream is cut short);
3. it appends ``chat_request`` to the security log for every chat request: user, model, token counts,
   duration, client address, status — never content.

Responses carry ``X-Haven-Conversation-Id`` and ``X-Haven-Message-Id`` (the reply's id).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.chat.routing import conversation_affinity
from haven.conversations.recorder import TurnRecorder
from haven.conversations.store import UNSET
from haven.errors import HavenError, InvalidRequestError, PermissionDeniedError
from haven.redaction import Redactor
from haven.server.auth import Principal
from haven.server.errors import haven_error_response

log = logging.getLogger("haven.server.recording")

CHAT_PATHS = {"/v1/chat/completions": "openai", "/api/chat": "ollama"}
HAVEN_FIELDS = ("conversation_id", "parent_message_id")
# Bodies up to this size are decoded on the event loop (well under a millisecond), bigger ones in a worker thread.
INLINE_PARSE_BYTES = 64 * 1024
SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "repeat_penalty",
    "n",
    "reasoning_effort",
    "think",
)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def new_turns(messages: Any, api: str) -> list[dict[str, Any]]:
    """The messages after the last assistant message: what this request adds to the conversation."""
    if not isinstance(messages, list):
        return []
    tail: list[dict[str, Any]] = []
    for item in reversed(messages):
        if not isinstance(item, dict) or item.get("role") == "assistant":
            break
        role = "system" if item.get("role") == "developer" else item.get("role")
        turn: dict[str, Any] = {"role": role, "content": _text_of(item.get("content"))}
        for key in ("tool_call_id", "name"):
            if isinstance(item.get(key), str):
                turn[key] = item[key]
        tail.append(turn)
    return tail[::-1]


def sampling_of(body: dict[str, Any], api: str) -> dict[str, Any]:
    options = body.get("options")
    source: dict[str, Any] = options if api == "ollama" and isinstance(options, dict) else body
    out = {k: source[k] for k in SAMPLING_KEYS if k in source and source[k] is not None}
    if api == "ollama" and "num_predict" in source:
        out["max_tokens"] = source["num_predict"]
    return out


class ReplyParser:
    """Reads one chat response off the wire and reports what it says to a recorder (if any)."""

    def __init__(self, api: str, recorder: TurnRecorder | None) -> None:
        self.api = api
        self.recorder = recorder
        self.kind = "json"
        self.buffer = b""
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.error = False
        self.done = False

    def start(self, content_type: str) -> None:
        self.kind = "sse" if "event-stream" in content_type else "ndjson" if "ndjson" in content_type else "json"

    def feed(self, data: bytes, more: bool) -> None:
        self.buffer += data
        if self.kind == "json":
            if not more:
                self._object(self.buffer)
                self.buffer = b""
            return
        separator = b"\n\n" if self.kind == "sse" else b"\n"
        *complete, self.buffer = self.buffer.split(separator)
        for part in complete:
            if self.kind == "sse":
                for line in part.split(b"\n"):
                    if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                        self._object(line[5:])
            elif part.strip():
                self._object(part)

    def _object(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(obj, dict):
            return
        if "error" in obj:
            self.error = True
            return
        if self.api == "openai":
            self._openai(obj)
        else:
            self._ollama(obj)

    def _openai(self, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("usage"), dict):
            self.usage = {k: obj["usage"].get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        for choice in obj.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1: the conversation records the first choice
            part = choice.get("delta") if "delta" in choice else choice.get("message")
            if isinstance(part, dict) and self.recorder is not None:
                self.recorder.text(part.get("content") or "")
                self.recorder.reasoning(part.get("reasoning_content") or part.get("reasoning") or "")
                for j, call in enumerate(part.get("tool_calls") or []):
                    fn = call.get("function") or {}
                    self.recorder.tool_call(
                        int(call.get("index", j)),
                        call_id=call.get("id"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments") or "",
                    )
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.done = True

    def _ollama(self, obj: dict[str, Any]) -> None:
        message = obj.get("message")
        if isinstance(message, dict) and self.recorder is not None:
            self.recorder.text(message.get("content") or "")
            self.recorder.reasoning(message.get("thinking") or "")
            for j, call in enumerate(message.get("tool_calls") or []):
                fn = call.get("function") or {}
                arguments = fn.get("arguments")
                self.recorder.tool_call(
                    j,
                    name=fn.get("name"),
                    arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                )
        if obj.get("done"):
            self.done = True
            self.finish_reason = obj.get("done_reason") or "stop"
            prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
            if prompt is not None or completion is not None:
                self.usage = {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": (prompt or 0) + (completion or 0),
                }


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise anyio.get_cancelled_exc_class()()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class ChatRecordingMiddleware:
    def __init__(self, app: ASGIApp, *, context: Any) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = CHAT_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if api is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        body = None
        # Parse only bodies that name a Haven field: the route parses (and bounds) everything else itself, and a
        # 1.7 MB chat should not be decoded twice on the event loop. A typical turn is a few KiB, which decodes in
        # microseconds: a hop to the thread pool would cost more than it saves, so only big bodies make it.
        if any(field.encode() in raw for field in HAVEN_FIELDS):
            try:
                if not raw.strip():
                    body = None
                elif len(raw) <= INLINE_PARSE_BYTES:
                    body = json.loads(raw)
                else:
                    body = await anyio.to_thread.run_sync(lambda: json.loads(raw))
            except (ValueError, UnicodeDecodeError, RecursionError):
                body = None  # the route answers the malformed (or absurdly deep) body itself
        principal: Principal | None = scope.get("state", {}).get("principal")
        recorder: TurnRecorder | None = None
        if isinstance(body, dict) and any(k in body for k in HAVEN_FIELDS):
            conversation_id, parent = body.pop("conversation_id", None), body.pop("parent_message_id", UNSET)
            raw = json.dumps(body).encode()
            try:
                recorder = await self._begin(principal, conversation_id, parent, body, api)
            except HavenError as exc:
                await haven_error_response(scope["path"], exc)(scope, receive, send)
                return
        # In place: outer middleware (the request log) reads what the router adds to this scope.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
            (b"content-length", str(len(raw)).encode())
        ]
        # A remote model's conversation stays on one upstream (its prefix cache there; issue 16).
        with conversation_affinity(recorder.conversation_id if recorder is not None else None):
            await self._run(scope, raw, receive, send, api, body if isinstance(body, dict) else {}, principal, recorder)

    async def _begin(
        self, principal: Principal | None, conversation_id: Any, parent: Any, body: dict[str, Any], api: str
    ) -> TurnRecorder | None:
        if conversation_id is None:
            if parent is not UNSET:
                raise InvalidRequestError("parent_message_id needs a conversation_id.", param="parent_message_id")
            return None
        if principal is None or principal.kind == "service":
            raise PermissionDeniedError("conversation_id needs a user account (session, user API key, or local mode).")
        if not isinstance(conversation_id, str) or not (parent is UNSET or parent is None or isinstance(parent, str)):
            raise InvalidRequestError("conversation_id and parent_message_id are strings.", param="conversation_id")
        context = self.context
        unlocked = principal.unlocked
        if unlocked is None:
            unlocked = await anyio.to_thread.run_sync(context.accounts.local_owner)
        assert unlocked is not None
        model = body.get("model") if isinstance(body.get("model"), str) else None
        redact = None
        if context.settings.redact == "outbound+storage":  # issue 17: personal data never stored
            redactor = Redactor()
            redact = lambda text: redactor.redact(text).text  # noqa: E731 - one redactor per recorded turn
        recorder = TurnRecorder(context.conversations, unlocked, conversation_id, redact=redact)
        turns = new_turns(body.get("messages"), api)
        for turn in turns:
            if len(turn["content"]) > context.settings.max_message_chars:
                raise InvalidRequestError("a message is longer than HAVEN_MAX_MESSAGE_CHARS.", param="messages")
        await anyio.to_thread.run_sync(
            lambda: recorder.begin(turns, parent_message_id=parent, model=model, sampling=sampling_of(body, api))
        )
        return recorder

    async def _run(
        self,
        scope: Scope,
        raw: bytes,
        receive: Receive,
        send: Send,
        api: str,
        body: dict[str, Any],
        principal: Principal | None,
        recorder: TurnRecorder | None,
    ) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        parser = ReplyParser(api, recorder)
        status = 0
        started = time.perf_counter()

        closed = False

        def close() -> None:
            self._close(parser, recorder, status, started, body, principal, scope)

        async def watch(message: Message) -> None:
            nonlocal status, closed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers", []))
                parser.start(headers.get(b"content-type", b"").decode("latin-1"))
                if recorder is not None and recorder.reply_id:
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            (b"x-haven-conversation-id", recorder.conversation_id.encode()),
                            (b"x-haven-message-id", recorder.reply_id.encode()),
                        ],
                    }
            elif message["type"] == "http.response.body" and status == 200:
                more = message.get("more_body", False)
                parser.feed(message.get("body", b""), more)
                if recorder is not None and not more:
                    # The last chunk: write the final reply (and the log line) now, before the client has it —
                    # what a client was shown is on disk — in one hop to the thread pool and one write, instead
                    # of a flush here and the final write after.
                    closed = True  # shielded below, so it runs exactly once even if the request is cancelled now
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(close)
                elif recorder is not None and recorder.due():
                    # Still streaming: a kill from here on keeps what came so far (marked incomplete).
                    await anyio.to_thread.run_sync(recorder.flush)
            await send(message)

        try:
            await self.app(scope, replay, watch)
        finally:
            if not closed:
                if (recorder is None or recorder.finished) and self.context.log_ready():
                    close()  # only the security-log row, queued: no database work, so no thread hop
                else:
                    with anyio.CancelScope(shield=True):  # the record survives a cancelled (disconnected) request
                        await anyio.to_thread.run_sync(close)

    @staticmethod
    def _finish(parser: ReplyParser, recorder: TurnRecorder, status: int) -> None:
        try:
            complete = status == 200 and parser.done and not parser.error
            reason = parser.finish_reason if complete else ("error" if parser.error or status != 200 else "cancelled")
            recorder.finish(finish_reason=reason, usage=parser.usage, incomplete=not complete)
        except Exception:
            log.exception("could not store the reply of a chat turn")

    def _close(
        self,
        parser: ReplyParser,
        recorder: TurnRecorder | None,
        status: int,
        started: float,
        body: dict[str, Any],
        principal: Principal | None,
        scope: Scope,
    ) -> None:
        if recorder is not None and not recorder.finished:  # cut short (or not a 200): kept, marked incomplete
            self._finish(parser, recorder, status)
        usage = parser.usage or {}
        user = principal.name if principal is not None else None
        if principal is not None and principal.kind != "user":
            user = principal.kind
        client = scope.get("client")
        try:
            self.context.log.append_soon(
                "chat_request",
                user=user,
                client=client[0] if client else None,
                details={
                    "model": body.get("model") if isinstance(body.get("model"), str) else None,
                    "prompt_tokens": usage.get("prompt_tokens"),
                    "completion_tokens": usage.get("completion_tokens"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "status": status or 499,
                    "conversation": recorder is not None,
                },
            )
        except Exception:
            log.exception("could not append chat_request to the security log")
