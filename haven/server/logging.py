"""Structured request logs and request metrics (a pure ASGI middleware), never message content.

One line per request: method, route template, status, duration, bytes sent, request id and client
address - no bodies, no prompts, no answers. With ``settings.log_json`` the line is a JSON object;
otherwise ``key=value`` pairs. The same middleware counts requests and their duration in /metrics,
labelled by the route *template* (``/v1/models/{model_id}``) so labels stay few.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.server.metrics import ServerMetrics
from haven.settings import Settings

log = logging.getLogger("haven.server.requests")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        return json.dumps(out, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        head = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}"
        if isinstance(fields, dict):
            return head + " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} {record.getMessage()}"


def configure_logging(settings: Settings) -> None:
    """Route haven's loggers to stderr in the configured format (called by ``haven serve``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if settings.log_json else KeyValueFormatter())
    root = logging.getLogger("haven")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0
        request_id = "req-" + uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            route = _route_of(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(seconds)
            if route != "/metrics" and log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                fields = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "bytes_out": sent,
                    "client": client[0] if client else None,
                }
                log.info("request", extra={"fields": fields})
