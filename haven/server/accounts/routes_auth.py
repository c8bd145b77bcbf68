"""Sign-in and own-account routes: ``/api/v1/auth/*`` (status, first-run setup, login, logout) and ``/api/v1/me*``.

Login answers the same for an unknown name and a wrong password, slows each failure down and, past
the per-account or per-address limit, answers 429 with Retry-After. The session cookie is HttpOnly,
SameSite=Strict, Secure over HTTPS; the CSRF token comes back in the JSON body.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from haven.accounts.passwords import MAX_LENGTH
from haven.accounts.service import ConflictError, InvalidCredentialsError, NewSession, Unlocked
from haven.conversations.store import iso
from haven.errors import PermissionDeniedError
from haven.server.accounts.deps import client_of, context_of, log_event, principal_of, require_user
from haven.server.accounts.schemas import (
    Credentials,
    MePatch,
    NewKey,
    PasswordChange,
    PasswordOnly,
    key_json,
    user_json,
)
from haven.server.auth import SESSION_COOKIE, is_loopback, local_mode_active

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def _with_session(request: Request, body: dict[str, Any], new: NewSession, status: int = 200) -> JSONResponse:
    response = JSONResponse({**body, "csrf_token": new.csrf_token, "expires_at": iso(new.expires_at)}, status)
    settings = context_of(request).settings
    response.set_cookie(
        SESSION_COOKIE,
        new.cookie,
        max_age=settings.session_max_hours * 3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/auth/status", summary="Auth mode, whether first-run setup is needed, and the signed-in user")
def status(request: Request) -> dict[str, Any]:
    context = context_of(request)
    has_users = context.has_users()
    principal = principal_of(request)
    user: dict[str, Any] | None = None
    csrf = None
    if principal is not None and principal.kind == "local":
        user = user_json(context.accounts.local_owner().user)
    elif principal is not None and principal.unlocked is not None:
        user, csrf = user_json(principal.unlocked.user), principal.unlocked.csrf_token
    return {
        "mode": "local" if local_mode_active(context.settings, has_users) else "required",
        "setup_required": not has_users,
        "user": user,
        "csrf_token": csrf,
        "password_policy": {"min_length": context.settings.password_min_length, "max_length": MAX_LENGTH},
    }


@router.post("/auth/setup", status_code=201, summary="First run: create the first admin (recovery code shown once)")
def setup(body: Credentials, request: Request) -> JSONResponse:
    context = context_of(request)
    principal = principal_of(request)
    if context.has_users():
        raise ConflictError("setup is done: a user exists already; sign in instead.")
    # On a network bind the first admin may only be made with the server key (nobody else is trusted yet).
    if not is_loopback(context.settings.host) and (principal is None or principal.kind != "service"):
        raise PermissionDeniedError(
            "first-run setup on a network address needs 'Authorization: Bearer $HAVEN_API_KEY'."
        )
    user, code = context.accounts.create_user(body.name, body.password, role="admin")
    context.users_changed()
    log_event(request, "setup", user=user.name)
    log_event(request, "user_created", user=user.name, details={"role": user.role, "by": "setup"})
    unlocked = context.accounts.authenticate_password(body.name, body.password)
    new = context.accounts.create_session(unlocked, client=client_of(request))
    return _with_session(request, {"user": user_json(user), "recovery_code": code}, new, 201)


@router.post("/auth/login", summary="Sign in with name and password (sets the session cookie)")
def login(body: Credentials, request: Request) -> JSONResponse:
    context = context_of(request)
    client = client_of(request)
    context.throttle.check(body.name, client)
    try:
        unlocked = context.accounts.authenticate_password(body.name, body.password)
    except InvalidCredentialsError:
        delay = context.throttle.failure(body.name, client)
        log_event(request, "login_failed", user=body.name[:64], details={"reason": "wrong name or password"})
        time.sleep(delay)  # a thread-pool thread: the event loop keeps serving
        raise
    except PermissionDeniedError as exc:
        log_event(request, "login_failed", user=body.name[:64], details={"reason": exc.message[:100]})
        raise
    context.throttle.success(body.name)
    new = context.accounts.create_session(unlocked, client=client)
    log_event(request, "login", user=unlocked.user.name, details={"via": "password"})
    return _with_session(request, {"user": user_json(unlocked.user)}, new)


@router.post("/auth/logout", status_code=204, summary="Sign out: the server-side session is deleted")
def logout(request: Request) -> Response:
    principal = principal_of(request)
    response = Response(status_code=204)
    if principal is not None and principal.unlocked is not None and principal.unlocked.session_id:
        context_of(request).accounts.revoke_session(principal.unlocked.session_id)
        log_event(request, "logout")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- me ------------------------------------------------------------------------------------------


def _me(request: Request) -> Unlocked:
    return require_user(request)


@router.get("/me", summary="The signed-in user")
def me(request: Request) -> dict[str, Any]:
    user = _me(request).user
    return user_json(user if user.is_local else context_of(request).accounts.get(user.id))


@router.patch("/me", summary="Own settings (retention)")
def patch_me(body: MePatch, request: Request) -> dict[str, Any]:
    unlocked = _me(request)
    user = context_of(request).accounts.set_retention(unlocked.user.id, body.retention_days)
    log_event(request, "user_changed", details={"retention_days": body.retention_days})
    return user_json(user)


@router.post("/me/password", status_code=204, summary="Change own password (re-wraps the data key)")
def change_password(body: PasswordChange, request: Request) -> Response:
    unlocked = _me(request)
    context_of(request).accounts.change_password(unlocked, body.current_password, body.new_password)
    log_event(request, "password_changed")
    return Response(status_code=204)


@router.post("/me/recovery-code", summary="Replace own recovery code (shown once)")
def renew_recovery_code(body: PasswordOnly, request: Request) -> dict[str, str]:
    code = context_of(request).accounts.renew_recovery_code(_me(request), body.password)
    log_event(request, "recovery_code_reset")
    return {"recovery_code": code}


@router.delete("/me", status_code=204, summary="Delete own account (password re-typed): conversations, keys, sessions")
def delete_me(body: PasswordOnly, request: Request) -> Response:
    """Self-service deletion. The password is checked like a login (same throttle, same slow failure), the
    last enabled admin is refused (409), and the cookie is cleared: the browser is signed out at once."""
    unlocked = _me(request)
    if unlocked.user.is_local:
        raise PermissionDeniedError("local single-user mode has no account to delete; create a user first.")
    context = context_of(request)
    client = client_of(request)
    name = unlocked.user.name
    context.throttle.check(name, client)
    try:
        context.accounts.authenticate_password(name, body.password)
    except InvalidCredentialsError:
        delay = context.throttle.failure(name, client)
        log_event(request, "login_failed", details={"reason": "wrong password", "action": "delete account"})
        time.sleep(delay)  # a thread-pool thread: the event loop keeps serving
        raise InvalidCredentialsError("the password is wrong; the account was not deleted.", param="password") from None
    context.throttle.success(name)
    context.accounts.delete_user(unlocked.user.id)  # cascade: sessions, keys, wrapped keys, conversations
    context.users_changed()
    log_event(request, "user_deleted", user=name, details={"name": name, "by": "self"})
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/me/keys", summary="Own API keys (never their secrets)")
def list_keys(request: Request) -> dict[str, Any]:
    return {"data": [key_json(k) for k in context_of(request).accounts.list_keys(_me(request).user.id)]}


@router.post("/me/keys", status_code=201, summary="Create an API key (the secret is shown once)")
def create_key(body: NewKey, request: Request) -> dict[str, Any]:
    unlocked = _me(request)
    if unlocked.user.is_local:
        raise PermissionDeniedError("local single-user mode needs no keys; create a user first (`haven users create`).")
    info, secret = context_of(request).accounts.create_key(unlocked, label=body.label, expires_days=body.expires_days)
    log_event(request, "key_created", details={"key": info.prefix, "label": info.label})
    return {"key": key_json(info), "secret": secret}


@router.delete("/me/keys/{key_id}", status_code=204, summary="Revoke an API key")
def revoke_key(key_id: str, request: Request) -> Response:
    info = context_of(request).accounts.revoke_key(_me(request).user.id, key_id)
    log_event(request, "key_revoked", details={"key": info.prefix})
    return Response(status_code=204)
