"""Request-body size limit as a pure ASGI middleware (HTTP 413 above ``settings.max_request_bytes``).

A declared ``Content-Length`` above the limit is refused before any byte is read. Bodies without one
(chunked uploads) are counted as they arrive: once the limit is passed the middleware stops handing
bytes to the app (it sees an empty final chunk) and replaces whatever response the app starts with
the 413, so a huge body never sits in memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.errors import PayloadTooLargeError
from haven.server.errors import haven_error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
                break

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request" and not exceeded:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            elif exceeded and message["type"] == "http.request":
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await self._reject(scope, receive, send)
                return
            started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
        if exceeded and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = haven_error_response(
            scope["path"],
            PayloadTooLargeError(f"the request body is larger than this server's limit of {self.max_bytes} bytes."),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
