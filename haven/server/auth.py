"""API-key authentication (a pure ASGI middleware) and the rule that public binds need a key.

With ``settings.api_key`` set, every request except the probes (``/health``, ``/ready``) must send
``Authorization: Bearer <key>``. Only a SHA-256 of the key is kept, and the comparison is
``hmac.compare_digest`` of digests, so neither the key's length nor its prefix leaks through timing.
:func:`check_bind_allowed` refuses a non-loopback bind address without a key: a model server open to the
network without authentication is a free GPU/CPU for anyone who finds it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from haven.errors import AuthenticationError, ConfigurationError
from haven.server.errors import haven_error_response
from haven.settings import Settings

OPEN_PATHS = frozenset({"/health", "/ready"})


def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_allowed(settings: Settings) -> None:
    """Raises ConfigurationError when the server would listen on the network without an api_key."""
    if settings.api_key is None and not is_loopback(settings.host):
        raise ConfigurationError(
            f"refusing to serve on {settings.host} without an API key; set HAVEN_API_KEY (or --api-key) "
            "or bind to 127.0.0.1."
        )


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        self.app = app
        self._key_digest = _digest(api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    presented = token.strip()
                break
        if presented and hmac.compare_digest(_digest(presented), self._key_digest):
            await self.app(scope, receive, send)
            return
        message = "invalid API key." if presented else "missing API key; send 'Authorization: Bearer <key>'."
        response = haven_error_response(
            scope["path"], AuthenticationError(message), headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)
