"""``/api/v1/admin/…`` (admins only): users, their usage, the security log, audit runs, model import.

Never conversation text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response

from haven.conversations.store import iso, usage_by_user
from haven.errors import InvalidRequestError
from haven.server.accounts import routes_admin_audit as admin_audit
from haven.server.accounts import routes_admin_models as admin_models
from haven.server.accounts.deps import context_of, log_event, require_admin
from haven.server.accounts.schemas import NewUser, PasswordReset, UserPatch, user_json

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/users", summary="Users with usage counts (no conversation content)")
def list_users(request: Request) -> dict[str, Any]:
    require_admin(request)
    context = context_of(request)
    usage = usage_by_user(context.db)
    data = []
    for user in context.accounts.list_users():
        counts = usage.get(user.id, {})
        data.append(
            {
                **user_json(user),
                "conversation_count": counts.get("conversation_count", 0),
                "message_count": counts.get("message_count", 0),
                "api_key_count": len(context.accounts.list_keys(user.id)),
                "usage": {k: counts.get(k, 0) for k in ("requests", "prompt_tokens", "completion_tokens")},
            }
        )
    return {"data": data}


@router.post("/users", status_code=201, summary="Create a user (recovery code shown once)")
def create_user(body: NewUser, request: Request) -> dict[str, Any]:
    require_admin(request)
    context = context_of(request)
    user, code = context.accounts.create_user(body.name, body.password, role=body.role)
    context.users_changed()
    log_event(request, "user_created", details={"name": user.name, "role": user.role})
    return {"user": user_json(user), "recovery_code": code}


@router.patch("/users/{user_id}", summary="Change a user's role, disable or enable them, set their retention")
def patch_user(user_id: str, body: UserPatch, request: Request) -> dict[str, Any]:
    require_admin(request)
    accounts = context_of(request).accounts
    fields = body.model_dump(exclude_unset=True)
    user = accounts.get(user_id)
    if "role" in fields and fields["role"] is not None:
        user = accounts.set_role(user_id, fields["role"])
    if "disabled" in fields and fields["disabled"] is not None:
        user = accounts.set_disabled(user_id, fields["disabled"])
    if "retention_days" in fields:
        user = accounts.set_retention(user_id, fields["retention_days"])
    log_event(request, "user_changed", details={"name": user.name, **{k: v for k, v in fields.items()}})
    return user_json(user)


@router.delete("/users/{user_id}", status_code=204, summary="Delete a user and everything they own")
def delete_user(user_id: str, request: Request) -> Response:
    require_admin(request)
    context = context_of(request)
    user = context.accounts.delete_user(user_id)
    context.users_changed()
    log_event(request, "user_deleted", details={"name": user.name})
    return Response(status_code=204)


@router.post("/users/{user_id}/reset-password", summary="Reset a password (without recovery code: data loss)")
def reset_password(user_id: str, body: PasswordReset, request: Request) -> dict[str, Any]:
    require_admin(request)
    user, lost, code = context_of(request).accounts.reset_password(
        user_id, body.new_password, recovery_code=body.recovery_code, confirm_data_loss=body.confirm_data_loss
    )
    log_event(request, "password_reset", details={"name": user.name, "data_lost": lost})
    return {"user": user_json(user), "data_lost": lost, "recovery_code": code}


@router.get("/security-log", summary="The security log, newest first")
def security_log(
    request: Request,
    user: str | None = Query(default=None, max_length=64),
    since: str | None = Query(default=None, max_length=40),
    event: str | None = Query(default=None, max_length=50),
    before_seq: int | None = Query(default=None, ge=1),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    require_admin(request)
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError("since must be an RFC 3339 time.", param="since") from None
    entries = context_of(request).log.entries(
        user=user, since=when, event=event, before_seq=before_seq, limit=limit + 1
    )
    more = len(entries) > limit
    entries = entries[:limit]
    return {
        "data": [
            {"seq": e.seq, "at": iso(e.at), "event": e.event, "user": e.user, "client": e.client, "details": e.details}
            for e in entries
        ],
        "next_before_seq": entries[-1].seq if more and entries else None,
    }


@router.get("/security-log/verify", summary="Check the security log's hash chain")
def verify_log(request: Request) -> dict[str, Any]:
    require_admin(request)
    count, problems = context_of(request).log.verify()
    return {"ok": not problems, "rows": count, "problems": [{"seq": s, "problem": p} for s, p in problems]}


# Audit runs and model import live in their own modules, under this router's prefix and role check.
router.include_router(admin_audit.router)
router.include_router(admin_models.router)
