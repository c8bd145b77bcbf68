"""Request bodies and JSON renderings of the accounts API (documented in OpenAPI through FastAPI)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from haven.accounts.service import ApiKeyInfo, UserInfo
from haven.conversations.store import iso


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(Body):
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class NewUser(Credentials):
    role: Literal["admin", "user"] = "user"


class PasswordChange(Body):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class PasswordOnly(Body):
    password: str = Field(max_length=1024)


class MePatch(Body):
    retention_days: int | None = Field(default=None, ge=1, le=36_500)


class NewKey(Body):
    label: str = Field(default="", max_length=100)
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class UserPatch(Body):
    role: Literal["admin", "user"] | None = None
    disabled: bool | None = None
    retention_days: int | None = Field(default=None, ge=1, le=36_500)


class PasswordReset(Body):
    new_password: str = Field(max_length=1024)
    recovery_code: str | None = Field(default=None, max_length=100)
    confirm_data_loss: bool = False


class NewConversation(Body):
    title: str | None = None
    system: str | None = None
    model: str | None = Field(default=None, max_length=300)


class ConversationPatch(Body):
    title: str | None = None
    system: str | None = None
    model: str | None = Field(default=None, max_length=300)
    current_leaf_id: str | None = None


class ToolCallFunction(BaseModel):
    name: str = Field(max_length=256)
    arguments: str = ""


class ToolCallBody(BaseModel):
    id: str | None = Field(default=None, max_length=256)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class NewMessage(Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    parent_id: str | None = None
    reasoning: str | None = None
    tool_calls: list[ToolCallBody] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    model: str | None = Field(default=None, max_length=300)


def user_json(user: UserInfo) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "local": user.is_local,
        "created_at": iso(user.created_at),
        "last_login_at": iso(user.last_login_at) if user.last_login_at else None,
        "retention_days": user.retention_days,
    }


def key_json(key: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": key.id,
        "label": key.label,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at) if key.expires_at else None,
        "last_used_at": iso(key.last_used_at) if key.last_used_at else None,
    }
