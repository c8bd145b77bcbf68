"""Request helpers shared by the accounts routes: who is calling, their unlocked data key, logging.

Routes using them are plain ``def`` functions: FastAPI runs them in its thread pool, so the database
and Argon2 work never blocks the event loop. ``require_user`` gives the caller's :class:`Unlocked`
(the local owner in local single-user mode) or
raises 401/403; ``require_admin`` adds the role check. ``log_event`` appends to the security log with
the caller's name and client address filled in; other layers' routes use it too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from haven.accounts.service import Unlocked
from haven.errors import AuthenticationError, PermissionDeniedError
from haven.server.accounts.context import AccountsContext
from haven.server.auth import Principal

log = logging.getLogger("haven.server.accounts")


def context_of(request: Request) -> AccountsContext:
    context: AccountsContext = request.app.state.accounts
    return context


def principal_of(request: Request) -> Principal | None:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return principal


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def require_user(request: Request) -> Unlocked:
    principal = principal_of(request)
    if principal is None:
        raise AuthenticationError("sign in or send 'Authorization: Bearer <key>'.")
    if principal.kind == "service":
        raise PermissionDeniedError("the server API key (HAVEN_API_KEY) is no user account; use a user's key.")
    if principal.kind == "local":
        return context_of(request).accounts.local_owner()
    assert principal.unlocked is not None
    return principal.unlocked


def require_admin(request: Request) -> Unlocked:
    unlocked = require_user(request)
    if not unlocked.user.is_admin:
        raise PermissionDeniedError("this needs an admin account.")
    return unlocked


def log_event(
    request: Request,
    event: str,
    *,
    user: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Records a security-log event for this request (caller and client address filled in)."""
    context: AccountsContext | None = getattr(request.app.state, "accounts", None)
    if context is None:
        return
    if user is None:
        principal = principal_of(request)
        user = principal.name if principal is not None else None
        if principal is not None and principal.kind == "local":
            user = "local"
        elif principal is not None and principal.kind == "service":
            user = "(service key)"
    try:
        context.log.append(event, user=user, client=client_of(request), details=details)
    except Exception:  # the log must not take the request down; the failure itself is logged
        log.exception("could not append %s to the security log", event)
