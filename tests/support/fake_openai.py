"""A tiny scripted OpenAI-compatible server on loopback, for audit tests and benchmarks.

``FakeOpenAI(rule)`` serves ``/v1/models`` and ``/v1/chat/completions`` from a thread
(stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive). ``rule(prompt, request) -> Reply``
decides each answer, so tests can plant behaviours: instant answers, refusals for one
country, HTTP 500s, garbage bodies, slow replies. Every request is recorded in ``requests``.

    with FakeOpenAI(lambda prompt, req: Reply("Sure.")) as server:
        server.base_url  # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    content: str = "Here is a balanced answer."
    reasoning: str | None = None
    """Sent as ``reasoning_content`` on the message when set."""
    status: int = 200
    raw: bytes | None = None
    """Sent verbatim instead of a JSON completion (garbage tests)."""
    delay_s: float = 0.0
    finish_reason: str = "stop"
    logprobs: Any = None


Rule = Callable[[str, dict[str, Any]], Reply]


def always(content: str = "Here is a balanced answer.") -> Rule:
    return lambda prompt, request: Reply(content)


def refuse_if(predicate: Callable[[str], bool], refusal: str = "I'm sorry, but I can't help with that.") -> Rule:
    """Refuse prompts for which ``predicate(prompt)`` is true, answer the others."""

    def rule(prompt: str, request: dict[str, Any]) -> Reply:
        return Reply(refusal) if predicate(prompt) else Reply("Certainly. Here is a detailed, balanced answer.")

    return rule


@dataclass
class _State:
    rule: Rule
    model_id: str
    model_digest: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _last_user_prompt(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            entry: dict[str, Any] = {"id": self.state.model_id, "object": "model", "owned_by": "fake"}
            if self.state.model_digest:
                entry["digest"] = self.state.model_digest
            data = {"object": "list", "data": [entry]}
            self._send(200, json.dumps(data).encode())
        elif self.path == "/health":
            self._send(200, b'{"status":"ok"}')
        else:
            self._send(404, b'{"error":{"message":"not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error":{"message":"not found"}}')
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error":{"message":"bad json"}}')
            return
        with self.state.lock:
            self.state.requests.append(body)
        prompt = _last_user_prompt(body)
        reply = self.state.rule(prompt, body)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.raw is not None:
            self._send(reply.status, reply.raw, "text/plain")
            return
        if reply.status != 200:
            err = {"error": {"message": f"scripted HTTP {reply.status}", "type": "server_error"}}
            self._send(reply.status, json.dumps(err).encode())
            return
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
        if reply.logprobs is not None:
            choice["logprobs"] = reply.logprobs
        completion = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.state.model_id,
            "choices": [choice],
            "usage": {
                "prompt_tokens": max(1, len(prompt.split())),
                "completion_tokens": max(1, len(reply.content.split())),
                "total_tokens": max(1, len(prompt.split())) + max(1, len(reply.content.split())),
            },
        }
        self._send(200, json.dumps(completion).encode())


def free_port() -> int:
    """A loopback port nobody listens on right now (for 'unreachable endpoint' tests)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeOpenAI:
    """Context manager: start on a free loopback port (or ``port``), stop on exit."""

    def __init__(
        self, rule: Rule | None = None, *, model_id: str = "fake-model", model_digest: str | None = None, port: int = 0
    ) -> None:
        self.state = _State(rule=rule or always(), model_id=model_id, model_digest=model_digest)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.requests)

    def set_rule(self, rule: Rule) -> None:
        self.state.rule = rule

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """``python -m tests.support.fake_openai``: serve instant answers in a process of its own, print the URL."""
    import sys

    server = FakeOpenAI(always("Certainly. Here is a detailed, balanced answer."))
    server.start()
    print(server.base_url, flush=True)
    try:
        sys.stdin.read()  # serve until the parent closes our stdin
    finally:
        server.stop()


if __name__ == "__main__":
    main()
