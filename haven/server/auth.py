"""Authentication (a pure ASGI middleware), the auth modes, CSRF, and the rule for public binds.

Every request gets a :class:`Principal` in ``scope["state"]["principal"]`` (or none):

* ``Authorization: Bearer hvn_…`` — a user's API key (:meth:`Accounts.key_from_bearer`);
* ``Authorization: Bearer $HAVEN_API_KEY`` — the *service* key: model APIs only, no user, no conversations;
* cookie ``haven_session`` — a web session; unsafe methods must then carry ``X-CSRF-Token``;
* nothing, with ``HAVEN_AUTH=local``, a loopback bind, no ``HAVEN_API_KEY`` and no user created —
  local single-user mode: the implicit local owner (like Ollama, no credentials).

Otherwise every route but the probes (and the sign-in routes) answers 401. Keys are accepted only in
the Authorization header: a key-looking query parameter is refused outright (it would end up in logs
and browser history). Secrets are compared as digests with ``hmac.compare_digest``.
:func:`check_bind_allowed` refuses a non-loopback bind unless a user exists or HAVEN_API_KEY is set.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from haven.accounts.service import Unlocked
from haven.errors import AuthenticationError, ConfigurationError, HavenError, PermissionDeniedError
from haven.server.errors import haven_error_response
from haven.settings import Settings

if TYPE_CHECKING:  # the context imports the accounts layer; the middleware only needs its type here
    from haven.server.accounts.context import AccountsContext

OPEN_PATHS = frozenset({"/health", "/ready", "/"})
# The web UI's static files (issue 15): public code and catalogues, no data; the login page needs them.
OPEN_PREFIXES = ("/ui/",)
# Reachable without credentials: the UI needs them to sign in (each route checks its own rules).
SIGN_IN_PATHS = frozenset({"/api/v1/auth/status", "/api/v1/auth/login", "/api/v1/auth/setup"})
SESSION_COOKIE = "haven_session"
CSRF_HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
QUERY_KEY_NAMES = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth"})


class CsrfError(PermissionDeniedError):
    code = "csrf_failed"


class KeyInQueryError(AuthenticationError):
    code = "api_key_in_query"


class NotAuthenticatedError(AuthenticationError):
    code = "not_authenticated"


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "local", "service"]
    via: Literal["cookie", "bearer", "local"]
    unlocked: Unlocked | None = None

    @property
    def name(self) -> str | None:
        return self.unlocked.user.name if self.unlocked else None


@functools.lru_cache(maxsize=1024)  # every request's Host header; a pure function of a short string
def is_loopback(host: str) -> bool:
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind_allowed(settings: Settings, *, users_exist: bool | None = None) -> None:
    """Raises ConfigurationError when the server would listen on the network with nobody to authenticate.

    A non-loopback bind is allowed with HAVEN_API_KEY, or once a user exists (``users_exist``; counted
    from the database when not given).
    """
    if settings.api_key is not None or is_loopback(settings.host):
        return
    if users_exist is None:
        from haven.accounts.service import Accounts
        from haven.storage.db import open_database

        db = open_database(settings.effective_database_url)
        try:
            users_exist = Accounts.from_settings(db, settings).user_count() > 0
        finally:
            db.close()
    if not users_exist:
        raise ConfigurationError(
            f"refusing to serve on {settings.host} without an API key or a user account; create a user "
            "(`haven users create NAME --admin`), set HAVEN_API_KEY (or --api-key), or bind to 127.0.0.1."
        )


def _digest(token: str | bytes) -> bytes:
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).digest()


async def _has_users(context: AccountsContext) -> bool:
    """Whether any user exists: from the context's cache when it knows, else counted in a worker thread."""
    known = context.users_known()
    if known is not None:
        return known
    counted: bool = await anyio.to_thread.run_sync(context.has_users)
    return counted


def local_mode_active(settings: Settings, has_users: bool) -> bool:
    return settings.auth == "local" and settings.api_key is None and is_loopback(settings.host) and not has_users


class AuthMiddleware:
    """Resolves the principal of each request and enforces authentication and CSRF."""

    def __init__(self, app: ASGIApp, *, settings: Settings, context: object) -> None:
        from haven.server.accounts.context import AccountsContext

        assert isinstance(context, AccountsContext)
        self.app = app
        self.settings = settings
        self.context = context
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self._service_digest = _digest(key) if key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self._resolve(scope)
        except HavenError as exc:
            await self._refuse(scope, receive, send, exc)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: HavenError) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else {}
        await haven_error_response(scope["path"], exc, headers=headers)(scope, receive, send)

    async def _resolve(self, scope: Scope) -> Principal | None:
        query = scope.get("query_string", b"").decode("latin-1")
        if query and any(name.lower() in QUERY_KEY_NAMES for name, _ in parse_qsl(query, keep_blank_values=True)):
            raise KeyInQueryError("API keys are accepted only in the 'Authorization: Bearer' header, never in the URL.")
        bearer, cookie, csrf = None, None, None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                bearer = token.strip() if scheme.lower() == "bearer" else ""
            elif name == b"cookie":
                jar: SimpleCookie = SimpleCookie()
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 - a malformed cookie header is treated as no cookie
                    continue
                if SESSION_COOKIE in jar:
                    cookie = jar[SESSION_COOKIE].value
            elif name == CSRF_HEADER:
                csrf = value.decode("latin-1")
        context = self.context
        path = scope["path"]
        if bearer is not None:
            if not bearer:
                raise AuthenticationError("unsupported Authorization scheme; send 'Authorization: Bearer <key>'.")
            if self._service_digest is not None and hmac.compare_digest(_digest(bearer), self._service_digest):
                return Principal("service", "bearer")
            unlocked = await anyio.to_thread.run_sync(context.accounts.key_from_bearer, bearer)
            if unlocked is not None:
                return Principal("user", "bearer", unlocked)
            # Local single-user mode ignores whatever key a client sends (SDKs insist on one), like Ollama.
            if local_mode_active(self.settings, await _has_users(context)):
                return Principal("local", "local")
            raise AuthenticationError("invalid API key.")
        if cookie is not None:
            unlocked = await anyio.to_thread.run_sync(context.accounts.session_from_cookie, cookie)
            if unlocked is not None:
                # Signing in again needs no token (the UI may hold a stale session); SameSite=Strict covers it.
                if scope["method"] in UNSAFE_METHODS and path not in SIGN_IN_PATHS and not (
                    csrf and unlocked.csrf_token and hmac.compare_digest(csrf.encode(), unlocked.csrf_token.encode())
                ):
                    raise CsrfError("missing or wrong X-CSRF-Token header for a cookie-authenticated request.")
                return Principal("user", "cookie", unlocked)
            if path not in SIGN_IN_PATHS:
                raise NotAuthenticatedError("the session has expired or was revoked; sign in again.")
        if local_mode_active(self.settings, await _has_users(context)):
            return Principal("local", "local")  # the local owner is unlocked only by routes that need it
        if path in SIGN_IN_PATHS:
            return None
        raise AuthenticationError("missing API key; send 'Authorization: Bearer <key>'.")
