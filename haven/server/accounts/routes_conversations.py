"""``/api/v1/conversations…``: the caller's own conversations (another user's are 404), messages, export."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from haven.conversations import export
from haven.conversations.store import UNSET
from haven.server.accounts.deps import context_of, log_event, require_user
from haven.server.accounts.schemas import ConversationPatch, NewConversation, NewMessage

router = APIRouter(prefix="/api/v1/conversations", tags=["conversations"])


def _download(text: str, fmt: str, name: str) -> Response:
    media = "application/json" if fmt == "json" else "text/markdown; charset=utf-8"
    suffix = "json" if fmt == "json" else "md"
    return Response(text, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{suffix}"'})


class ConversationSummary(BaseModel):
    id: str
    title: str
    model: str | None
    created_at: str
    updated_at: str
    message_count: int


class ConversationPage(BaseModel):
    """One page of the listing; pass ``next_cursor`` back as ``cursor`` for the next (null: the last page)."""

    data: list[ConversationSummary]
    next_cursor: str | None


@router.get(
    "",
    summary="List own conversations, newest first (paged; title search with q)",
    response_model=ConversationPage,  # documents the shape in OpenAPI; the route answers ready-made JSON
)
def list_conversations(
    request: Request,
    limit: int = Query(default=50, ge=1, le=200),
    cursor: str | None = Query(default=None, max_length=200, description="next_cursor of the previous page"),
    q: str | None = Query(default=None, max_length=300),
) -> Response:
    page, next_cursor = context_of(request).conversations.page(
        require_user(request), limit=limit, cursor=cursor, query=q
    )
    # Returned as a Response, FastAPI skips validating the page against ConversationPage (another hop to the
    # thread pool plus a pass over up to 200 items that this code built itself from typed columns).
    body = {"data": [c.summary_json() for c in page], "next_cursor": next_cursor}
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type="application/json")


@router.post("", status_code=201, summary="Create a conversation")
def create_conversation(body: NewConversation, request: Request) -> dict[str, Any]:
    view = context_of(request).conversations.create(
        require_user(request), title=body.title, system=body.system, model=body.model
    )
    return view.as_json()


@router.get("/export", summary="Export all own conversations (JSON or Markdown)")
def export_all(request: Request, format: str = Query(default="json")) -> Response:
    fmt = export.check_format(format)
    unlocked = require_user(request)
    store = context_of(request).conversations
    views = [store.get(unlocked, cid) for cid in store.all_ids(unlocked)]
    log_event(request, "conversation_exported", details={"count": len(views), "format": fmt})
    text = export.to_json(views, single=False) if fmt == "json" else export.to_markdown(views)
    return _download(text, fmt, "haven-conversations")


@router.get("/{conversation_id}", summary="One conversation with every message of its tree")
def get_conversation(conversation_id: str, request: Request) -> dict[str, Any]:
    return context_of(request).conversations.get(require_user(request), conversation_id).as_json()


@router.patch("/{conversation_id}", summary="Rename, change system prompt or model, switch branch")
def patch_conversation(conversation_id: str, body: ConversationPatch, request: Request) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    view = context_of(request).conversations.update(
        require_user(request),
        conversation_id,
        title=fields.get("title", UNSET),
        system=fields.get("system", UNSET),
        model=fields.get("model", UNSET),
        current_leaf_id=fields.get("current_leaf_id", UNSET),
    )
    return view.as_json()


@router.delete("/{conversation_id}", status_code=204, summary="Delete a conversation for real")
def delete_conversation(conversation_id: str, request: Request) -> Response:
    context_of(request).conversations.delete(require_user(request), conversation_id)
    log_event(request, "conversation_deleted", details={"conversation": conversation_id})
    return Response(status_code=204)


@router.post("/{conversation_id}/messages", status_code=201, summary="Append a message (parent_id: a new branch)")
def append_message(conversation_id: str, body: NewMessage, request: Request) -> dict[str, Any]:
    item = body.model_dump(exclude={"parent_id"}, exclude_none=True)
    if body.tool_calls:
        item["tool_calls"] = [c.model_dump() for c in body.tool_calls]
    parent = body.parent_id if "parent_id" in body.model_fields_set else UNSET
    views = context_of(request).conversations.append(require_user(request), conversation_id, [item], parent_id=parent)
    return views[0].as_json()


@router.get("/{conversation_id}/export", summary="Export one conversation (JSON or Markdown)")
def export_one(conversation_id: str, request: Request, format: str = Query(default="json")) -> Response:
    fmt = export.check_format(format)
    view = context_of(request).conversations.get(require_user(request), conversation_id)
    log_event(request, "conversation_exported", details={"conversation": conversation_id, "format": fmt})
    text = export.to_json([view], single=True) if fmt == "json" else export.to_markdown([view])
    return _download(text, fmt, f"conversation-{conversation_id}")
