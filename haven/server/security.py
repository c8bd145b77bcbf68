"""Cross-site and DNS-rebinding defence (a pure ASGI middleware), and the key-strength rule for public binds.

A server on 127.0.0.1 is still reachable from every web page the user opens: a page can POST to
``http://127.0.0.1:8700/api/pull`` (a "simple" cross-site request needs no CORS preflight when its body
is ``text/plain``), and a page on ``evil.example`` whose DNS is rebound to 127.0.0.1 talks to the server
as same-origin (Ollama's CVE-2024-28224). :class:`BrowserGuardMiddleware` refuses, before any body is
read or any work is done:

* on a loopback bind, a ``Host`` that is not a loopback name or address (``localhost``, ``*.localhost``,
  ``127.0.0.0/8``, ``[::1]``) — 403, the rebinding case;
* a request whose ``Origin`` is neither the server's own (same host and port as the ``Host`` header)
  nor listed in ``HAVEN_CORS_ORIGINS`` — 403, the cross-site case (``Origin: null`` included);
* on ``/v1/*``, a body that is not declared JSON (``application/json`` or ``*+json``) — 415; on
  ``/api/*`` the same for requests a browser sent (``Origin`` or ``Sec-Fetch-*`` headers), while
  non-browser clients keep Ollama's leniency (``curl -d`` sends a form content type; the ``ollama``
  client and Open WebUI send JSON).

:func:`check_api_key_strength` refuses a short ``HAVEN_API_KEY`` on a non-loopback bind.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from haven.errors import ConfigurationError, HavenError, PermissionDeniedError, UnsupportedMediaTypeError
from haven.server.errors import haven_error_response
from haven.settings import Settings

MIN_PUBLIC_KEY_LENGTH = 32
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@functools.lru_cache(maxsize=1024)  # every request's Host header; a pure function of a short string
def is_loopback_host(host: str) -> bool:
    """``host`` (no port) names this machine's loopback interface."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, str]:
    """``"[::1]:8700"`` → ``("[::1]", "8700")``; ``"localhost"`` → ``("localhost", "")``."""
    if value.startswith("["):
        end = value.find("]")
        return (value[: end + 1], value[end + 2 :]) if end > 0 else (value, "")
    host, _, port = value.partition(":")
    return host, port


def check_api_key_strength(settings: Settings) -> None:
    """A key guessable by brute force is no protection on a network address (issue 11)."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    if key is not None and len(key) < MIN_PUBLIC_KEY_LENGTH and not is_loopback_host(settings.host):
        raise ConfigurationError(
            f"refusing to serve on {settings.host} with an API key of {len(key)} characters; a public bind needs "
            f"at least {MIN_PUBLIC_KEY_LENGTH} (generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)."
        )


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BrowserGuardMiddleware:
    def __init__(self, app: ASGIApp, *, loopback_bind: bool, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.loopback_bind = loopback_bind
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.any_origin = "*" in self.allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await haven_error_response(scope["path"], refusal, headers={"Connection": "close"})(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> HavenError | None:
        host_header = headers.get(b"host", b"").decode("latin-1").strip()
        host, _ = split_host(host_header)
        if self.loopback_bind and not is_loopback_host(host):
            return PermissionDeniedError(
                f"this server answers only to loopback host names, not {host_header[:100]!r} "
                "(DNS-rebinding protection)."
            )
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1").strip(), host_header):
            return PermissionDeniedError(
                f"cross-origin requests from {origin.decode('latin-1')[:100]!r} are not allowed; "
                "add the origin to HAVEN_CORS_ORIGINS to allow it."
            )
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            path: str = scope["path"]
            browser = origin is not None or any(name.startswith(b"sec-fetch-") for name in headers)
            strict = path.startswith("/v1/") or (path.startswith("/api/") and browser)
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if strict and not _is_json(content_type):
                return UnsupportedMediaTypeError(
                    f"this endpoint takes a JSON body; send 'Content-Type: application/json' "
                    f"(got {content_type[:80]!r})." if content_type else
                    "this endpoint takes a JSON body; send 'Content-Type: application/json'."
                )
        return None

    def _origin_allowed(self, origin: str, host_header: str) -> bool:
        normalized = origin.rstrip("/").lower()
        if self.any_origin or normalized in self.allowed_origins:
            return True
        parts = urlsplit(normalized)
        return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host_header.lower()
