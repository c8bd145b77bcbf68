"""The conversations repository: every query on ``conversations`` and ``messages``, always scoped to one user.

Every method takes the caller's :class:`~haven.accounts.service.Unlocked` and filters by its user id,
so another user's conversation is indistinguishable from a missing one (NotFoundError, HTTP 404).
Titles, system prompts, message content, reasoning and tool calls are sealed under the user's data key
(:class:`~haven.accounts.crypto.FieldCipher`); model names, sampling parameters, token usage and timings
stay in clear (they are not content, and the admin's usage view needs the counts).

Messages form a tree (``parent_id``): editing a message and resending adds a sibling, and
``current_leaf_id`` says which branch the conversation shows.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from haven.accounts.crypto import FieldCipher
from haven.accounts.service import Unlocked, aware, new_id
from haven.errors import InvalidRequestError, NotFoundError
from haven.storage.db import Database
from haven.storage.models import Base, Conversation, Message, User

# The chat hot path (a turn appended to a conversation, the reply flushed while it streams) runs a handful of
# fixed statements per request. Built once here as Core statements with bound parameters, they skip the ORM's
# unit of work and the per-call construction of the SQL expression, which cost more than the SQL itself (profiled
# for issue 10's "≤ 2 ms per recorded turn"): SQLAlchemy caches their compiled form on first use.
_CONVERSATIONS: Table = Base.metadata.tables["conversations"]
_MESSAGES: Table = Base.metadata.tables["messages"]
_C, _M = _CONVERSATIONS.c, _MESSAGES.c
_OWNED_FOR_APPEND = select(_C.id, _C.current_leaf_id, _C.message_count).where(
    _C.id == bindparam("cid"), _C.user_id == bindparam("uid")
)
_MESSAGE_IN = select(_M.id).where(_M.id == bindparam("mid"), _M.conversation_id == bindparam("cid"))
_INSERT_MESSAGES = insert(_MESSAGES)
_MOVE_LEAF = (
    update(_CONVERSATIONS)
    .where(_C.id == bindparam("cid"))
    .values(
        current_leaf_id=bindparam("v_leaf", type_=_C.current_leaf_id.type),
        message_count=bindparam("v_count", type_=_C.message_count.type),
        updated_at=bindparam("v_now", type_=_C.updated_at.type),
    )
)
_REWRITE_REPLY = (
    update(_MESSAGES)
    .where(_M.id == bindparam("mid"), _M.conversation_id == bindparam("cid"), _M.user_id == bindparam("uid"))
    .values(**{name: bindparam(f"v_{name}", type_=_M[name].type) for name in (
        "content_enc", "reasoning_enc", "tool_calls_enc", "meta", "finish_reason", "incomplete", "key_version"
    )})
)
_TOUCH = update(_CONVERSATIONS).where(_C.id == bindparam("cid")).values(
    updated_at=bindparam("v_now", type_=_C.updated_at.type)
)
# The listing reads only what a summary shows: the system prompt can be large and is not decrypted here.
_SUMMARY_COLUMNS = (_C.id, _C.title_enc, _C.model, _C.created_at, _C.updated_at, _C.message_count, _C.key_version)

ID_RE = re.compile(r"^[0-9a-f]{32}$")
ROLES = ("system", "user", "assistant", "tool")
DEFAULT_TITLE = "New conversation"
UNSET: Any = object()


class TitleTooLongError(InvalidRequestError):
    code = "title_too_long"


class MessageTooLongError(InvalidRequestError):
    code = "message_too_long"


@dataclass
class MessageView:
    id: str
    parent_id: str | None
    role: str
    content: str
    reasoning: str | None
    tool_calls: list[dict[str, Any]]
    tool_call_id: str | None
    name: str | None
    model: str | None
    sampling: dict[str, Any] | None
    usage: dict[str, Any] | None
    timings: dict[str, Any] | None
    finish_reason: str | None
    incomplete: bool
    created_at: datetime
    children: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["created_at"] = iso(self.created_at)
        return out


@dataclass
class ConversationView:
    id: str
    title: str
    model: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int
    system: str | None = None
    current_leaf_id: str | None = None
    messages: list[MessageView] | None = None

    def summary_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "model": self.model,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "message_count": self.message_count,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary_json(),
            "system": self.system,
            "current_leaf_id": self.current_leaf_id,
            "messages": [m.as_json() for m in self.messages or []],
        }

    def active_thread(self) -> list[MessageView]:
        by_id = {m.id: m for m in self.messages or []}
        thread: list[MessageView] = []
        node = by_id.get(self.current_leaf_id or "")
        while node is not None:
            thread.append(node)
            node = by_id.get(node.parent_id or "")
        return thread[::-1]


def iso(value: datetime) -> str:
    """``2026-01-31T12:00:00.000000Z``. isoformat, not strftime: a listing formats two stamps per row, and
    strftime was a tenth of a 200-row page."""
    if value.tzinfo is UTC:  # the common case (views hold aware UTC stamps): "+00:00" becomes "Z"
        return value.isoformat(timespec="microseconds")[:-6] + "Z"
    if value.tzinfo is not None:  # naive values are UTC already (SQLite hands them back so)
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_id(value: str, what: str = "conversation") -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise NotFoundError(f"no such {what}.")
    return value


class ConversationStore:
    def __init__(self, db: Database, *, max_title_chars: int = 300, max_message_chars: int = 1_000_000) -> None:
        self.db = db
        self.max_title_chars = max_title_chars
        self.max_message_chars = max_message_chars

    # --- validation ---------------------------------------------------------------------------

    def _title(self, title: str | None) -> str:
        title = (title or "").strip() or DEFAULT_TITLE
        if len(title) > self.max_title_chars:
            raise TitleTooLongError(f"a title has at most {self.max_title_chars} characters.", param="title")
        return title

    def _text(self, text: str | None, param: str) -> str:
        text = text or ""
        if len(text) > self.max_message_chars:
            raise MessageTooLongError(f"{param} has more than {self.max_message_chars} characters.", param=param)
        return text

    # --- conversations ------------------------------------------------------------------------

    @staticmethod
    def _owned(s: Session, u: Unlocked, conversation_id: str) -> Conversation:
        row = s.get(Conversation, check_id(conversation_id))
        if row is None or row.user_id != u.user.id:
            raise NotFoundError("no such conversation.")
        return row

    def create(
        self, u: Unlocked, *, title: str | None = None, system: str | None = None, model: str | None = None
    ) -> ConversationView:
        cipher = u.cipher()
        title = self._title(title)
        system = self._text(system, "system") if system else None
        if model is not None and len(model) > 300:
            raise InvalidRequestError("a model name has at most 300 characters.", param="model")
        cid, now = new_id(), utcnow()
        row = Conversation(
            id=cid,
            user_id=u.user.id,
            title_enc=cipher.seal(title, cid, "", "title"),
            system_enc=cipher.seal(system, cid, "", "system") if system is not None else None,
            model=model,
            message_count=0,
            key_version=cipher.current,
            created_at=now,
            updated_at=now,
        )
        with self.db.session() as s:
            s.add(row)
        return ConversationView(cid, title, model, now, now, 0, system, None, [])

    @staticmethod
    def _view(row: Conversation, cipher: FieldCipher) -> ConversationView:
        system_enc = row.system_enc
        return ConversationView(
            id=row.id,
            title=cipher.open(row.title_enc, row.id, "", "title", row.key_version),
            model=row.model,
            created_at=aware(row.created_at),
            updated_at=aware(row.updated_at),
            message_count=row.message_count,
            system=cipher.open(system_enc, row.id, "", "system", row.key_version) if system_enc else None,
            current_leaf_id=row.current_leaf_id,
        )

    def page(
        self, u: Unlocked, *, limit: int = 50, cursor: str | None = None, query: str | None = None
    ) -> tuple[list[ConversationView], str | None]:
        """Newest first (``updated_at``, then id); ``query`` matches titles case-insensitively.

        Keyset pagination: the cursor is the last row's ``(updated_at, id)``, so any page of 10,000+
        conversations costs what the first does (an OFFSET would walk every skipped row), read in order
        from the index ``(user_id, updated_at)``. Without a search a page is one statement of ``limit + 1``
        rows (the extra row says whether a next page exists). Titles are ciphertext, so a search decrypts
        them here, batch by batch in the same order, until the page is full or the rows run out.
        """
        if not 1 <= limit <= 200:
            raise InvalidRequestError("limit must be between 1 and 200.", param="limit")
        after = _decode_cursor(cursor) if cursor else None
        needle = query.casefold() if query else None
        cipher = u.cipher()
        found: list[ConversationView] = []
        batch = limit + 1 if needle is None else max(200, limit + 1)
        # A read: a plain connection (one transaction, so a search sees one snapshot), no ORM session around it.
        with self.db.engine.connect() as connection:
            while True:
                q = select(*_SUMMARY_COLUMNS).where(_C.user_id == u.user.id)
                if after is not None:
                    stamp, last_id = after
                    # Rows strictly after the cursor in (updated_at desc, id desc). The redundant ``<=`` is what
                    # lets the database seek into the index there: with the OR alone, SQLite walks the index from
                    # the newest row and filters, so page 50 of 10,000 read every row of pages 1 to 49 again.
                    q = q.where(_C.updated_at <= stamp, or_(_C.updated_at < stamp, _C.id < last_id))
                rows = connection.execute(q.order_by(_C.updated_at.desc(), _C.id.desc()).limit(batch)).all()
                # Unpacked as tuples: attribute access on a Row costs more per row than the decryption does.
                for cid, title_enc, model, created_at, updated_at, count, key_version in rows:
                    title = cipher.open(title_enc, cid, "", "title", key_version)  # the one field decrypted
                    if needle is None or needle in title.casefold():
                        found.append(ConversationView(cid, title, model, aware(created_at), aware(updated_at), count))
                        if len(found) > limit:
                            break
                if len(found) > limit or len(rows) < batch:
                    break
                after = (rows[-1][4], rows[-1][0])  # (updated_at, id) of the batch's last row
        if len(found) > limit:
            last = found[limit - 1]
            return found[:limit], _encode_cursor(last.updated_at, last.id)
        return found, None

    def get(self, u: Unlocked, conversation_id: str) -> ConversationView:
        cipher = u.cipher()
        with self.db.session() as s:
            row = self._owned(s, u, conversation_id)
            view = self._view(row, cipher)
            rows = s.scalars(select(Message).where(Message.conversation_id == row.id).order_by(Message.seq)).all()
            view.messages = [self._message(m, cipher) for m in rows]
        by_id = {m.id: m for m in view.messages}
        for m in view.messages:
            if m.parent_id in by_id:
                by_id[m.parent_id].children.append(m.id)
        return view

    def update(
        self,
        u: Unlocked,
        conversation_id: str,
        *,
        title: str | None = UNSET,
        system: str | None = UNSET,
        model: str | None = UNSET,
        current_leaf_id: str | None = UNSET,
    ) -> ConversationView:
        cipher = u.cipher()
        with self.db.session() as s:
            row = self._owned(s, u, conversation_id)
            if title is not UNSET:
                row.title_enc = cipher.seal(self._title(title), row.id, "", "title")
            if system is not UNSET:
                row.system_enc = cipher.seal(self._text(system, "system"), row.id, "", "system") if system else None
            if model is not UNSET:
                row.model = model
            if current_leaf_id is not UNSET:
                if current_leaf_id is not None and (
                    not isinstance(current_leaf_id, str)
                    or not ID_RE.fullmatch(current_leaf_id)
                    or s.scalar(
                        select(Message.id).where(Message.id == current_leaf_id, Message.conversation_id == row.id)
                    )
                    is None
                ):
                    raise InvalidRequestError(
                        "current_leaf_id is not a message of this conversation.", param="current_leaf_id"
                    )
                row.current_leaf_id = current_leaf_id
            row.updated_at = utcnow()
        return self.get(u, conversation_id)

    def delete(self, u: Unlocked, conversation_id: str) -> None:
        with self.db.session() as s:
            row = self._owned(s, u, conversation_id)
            s.delete(row)  # messages go by ON DELETE CASCADE (and the ORM's cascade below)
            s.execute(delete(Message).where(Message.conversation_id == row.id))

    # --- messages -----------------------------------------------------------------------------

    def _message(self, m: Message, cipher: FieldCipher) -> MessageView:
        meta = m.meta or {}
        tool_calls = (
            json.loads(cipher.open(m.tool_calls_enc, m.conversation_id, m.id, "tool_calls", m.key_version))
            if m.tool_calls_enc
            else []
        )
        return MessageView(
            id=m.id,
            parent_id=m.parent_id,
            role=m.role,
            content=cipher.open(m.content_enc, m.conversation_id, m.id, "content", m.key_version),
            reasoning=cipher.open(m.reasoning_enc, m.conversation_id, m.id, "reasoning", m.key_version)
            if m.reasoning_enc
            else None,
            tool_calls=tool_calls,
            tool_call_id=meta.get("tool_call_id"),
            name=meta.get("name"),
            model=meta.get("model"),
            sampling=meta.get("sampling"),
            usage=meta.get("usage"),
            timings=meta.get("timings"),
            finish_reason=m.finish_reason,
            incomplete=m.incomplete,
            created_at=aware(m.created_at),
        )

    def append(
        self,
        u: Unlocked,
        conversation_id: str,
        messages: list[dict[str, Any]],
        *,
        parent_id: str | None = UNSET,
    ) -> list[MessageView]:
        """Appends a chain of messages (each the child of the one before) in one transaction.

        ``parent_id`` UNSET: under the current leaf; None: a new root; an id: a branch under it.
        The last one becomes the current leaf. Each dict has ``role`` and ``content`` and optionally
        reasoning, tool_calls, tool_call_id, name, model, sampling, usage, timings, finish_reason, incomplete.
        """
        cipher = u.cipher()
        for item in messages:
            if item.get("role") not in ROLES:
                raise InvalidRequestError(f"role must be one of {', '.join(ROLES)}.", param="role")
            self._text(item.get("content"), "content")
            self._text(item.get("reasoning"), "reasoning")
        # One transaction on a Core connection (committed on success, rolled back on any error): the ORM session
        # around it would only add its own bookkeeping to the chat hot path.
        with self.db.engine.begin() as connection:
            row = connection.execute(_OWNED_FOR_APPEND, {"cid": check_id(conversation_id), "uid": u.user.id}).first()
            if row is None:
                raise NotFoundError("no such conversation.")
            parent = row.current_leaf_id if parent_id is UNSET else parent_id
            # The current leaf is this conversation's own pointer (only ever set to one of its messages, and
            # messages go only with their conversation): only a parent the caller names is checked.
            if parent_id is not UNSET and parent is not None and (
                not isinstance(parent, str)
                or not ID_RE.fullmatch(parent)
                or connection.execute(_MESSAGE_IN, {"mid": parent, "cid": row.id}).first() is None
            ):
                raise InvalidRequestError("parent_id is not a message of this conversation.", param="parent_id")
            seq = row.message_count  # messages are only ever removed with their conversation: count == last seq
            now = utcnow()
            values: list[dict[str, Any]] = []
            views: list[MessageView] = []
            for item in messages:
                seq += 1
                mid = new_id()
                values.append(self._row(cipher, u.user.id, row.id, mid, parent, seq, now, item))
                views.append(self._new_view(mid, parent, now, item))
                parent = mid
            connection.execute(_INSERT_MESSAGES, values)  # one executemany for the whole chain
            connection.execute(_MOVE_LEAF, {"cid": row.id, "v_leaf": parent, "v_count": seq, "v_now": now})
        return views

    @staticmethod
    def _new_view(mid: str, parent: str | None, now: datetime, item: dict[str, Any]) -> MessageView:
        """The view of a message just written, from its plaintext (no need to decrypt what was just sealed)."""
        return MessageView(
            id=mid,
            parent_id=parent,
            role=item["role"],
            content=item.get("content") or "",
            reasoning=item.get("reasoning") or None,
            tool_calls=list(item.get("tool_calls") or []),
            tool_call_id=item.get("tool_call_id") or None,
            name=item.get("name") or None,
            model=item.get("model") or None,
            sampling=item.get("sampling") or None,
            usage=item.get("usage") or None,
            timings=item.get("timings") or None,
            finish_reason=item.get("finish_reason"),
            incomplete=bool(item.get("incomplete", False)),
            created_at=now,
        )

    def _row(
        self,
        cipher: FieldCipher,
        user_id: str,
        cid: str,
        mid: str,
        parent: str | None,
        seq: int,
        now: datetime,
        item: dict[str, Any],
    ) -> dict[str, Any]:
        """The column values of one new ``messages`` row (text fields sealed)."""
        meta = {k: item[k] for k in ("tool_call_id", "name", "model", "sampling", "usage", "timings") if item.get(k)}
        tool_calls = item.get("tool_calls") or []
        return {
            "id": mid,
            "conversation_id": cid,
            "user_id": user_id,
            "parent_id": parent,
            "seq": seq,
            "role": item["role"],
            "content_enc": cipher.seal(item.get("content") or "", cid, mid, "content"),
            "reasoning_enc": cipher.seal(item["reasoning"], cid, mid, "reasoning") if item.get("reasoning") else None,
            "tool_calls_enc": cipher.seal(json.dumps(tool_calls), cid, mid, "tool_calls") if tool_calls else None,
            "meta": meta,
            "finish_reason": item.get("finish_reason"),
            "incomplete": bool(item.get("incomplete", False)),
            "key_version": cipher.current,
            "created_at": now,
        }

    def update_reply(
        self,
        u: Unlocked,
        conversation_id: str,
        message_id: str,
        *,
        content: str,
        reasoning: str | None,
        tool_calls: list[dict[str, Any]] | None,
        meta: dict[str, Any],
        finish_reason: str | None,
        incomplete: bool,
    ) -> None:
        """Rewrites a reply being generated (flushed as it streams; final when complete).

        ``meta`` replaces the stored one whole (the caller holds what it began the reply with), so this is
        two UPDATEs and no read; a reply whose conversation was deleted meanwhile matches no row and stays gone.
        """
        cipher = u.cipher()
        content = content[: self.max_message_chars]
        cid, mid = conversation_id, message_id
        values: dict[str, Any] = {
            "mid": mid,
            "cid": cid,
            "uid": u.user.id,
            "v_content_enc": cipher.seal(content, cid, mid, "content"),
            "v_reasoning_enc": cipher.seal(reasoning, cid, mid, "reasoning") if reasoning else None,
            "v_tool_calls_enc": cipher.seal(json.dumps(tool_calls), cid, mid, "tool_calls") if tool_calls else None,
            "v_meta": {k: v for k, v in meta.items() if v},
            "v_finish_reason": finish_reason,
            "v_incomplete": incomplete,
            "v_key_version": cipher.current,
        }
        with self.db.engine.begin() as connection:  # one transaction, as in append()
            if connection.execute(_REWRITE_REPLY, values).rowcount:
                connection.execute(_TOUCH, {"cid": cid, "v_now": utcnow()})

    def message_parent(self, u: Unlocked, conversation_id: str, message_id: str) -> tuple[str, str | None, str]:
        """(role, parent_id, content) of one message of the user's conversation."""
        cipher = u.cipher()
        with self.db.session() as s:
            self._owned(s, u, conversation_id)
            m = s.get(Message, check_id(message_id, "message"))
            if m is None or m.conversation_id != conversation_id:
                raise InvalidRequestError(
                    "parent_message_id is not a message of this conversation.", param="parent_message_id"
                )
            return m.role, m.parent_id, cipher.open(m.content_enc, m.conversation_id, m.id, "content", m.key_version)

    def all_ids(self, u: Unlocked) -> list[str]:
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(Conversation.id)
                    .where(Conversation.user_id == u.user.id)
                    .order_by(Conversation.updated_at.desc())
                )
            )

    # --- retention and rotation -----------------------------------------------------------------------

    def delete_expired(self, global_days: int | None, *, now: datetime | None = None) -> int:
        """Hard-deletes conversations untouched longer than the stricter of global and per-user retention."""
        now = now or utcnow()
        removed = 0
        with self.db.session() as s:
            users = s.execute(select(User.id, User.retention_days)).all()
            for user_id, own_days in users:
                days = min(d for d in (global_days, own_days) if d) if (global_days or own_days) else None
                if days is None:
                    continue
                cutoff = now - timedelta(days=days)
                ids = list(
                    s.scalars(
                        select(Conversation.id).where(Conversation.user_id == user_id, Conversation.updated_at < cutoff)
                    )
                )
                if ids:
                    s.execute(delete(Message).where(Message.conversation_id.in_(ids)))
                    s.execute(delete(Conversation).where(Conversation.id.in_(ids)))
                    removed += len(ids)
        return removed

    def reencrypt(self, user_id: str, cipher: FieldCipher, *, batch: int = 200) -> Iterator[int]:
        """Moves every row of the user still under an older key to ``cipher.current``, one committed
        batch at a time (so a kill loses at most one uncommitted batch); yields rows done per batch."""
        while True:
            with self.db.session() as s:
                rows = s.scalars(
                    select(Conversation)
                    .where(Conversation.user_id == user_id, Conversation.key_version != cipher.current)
                    .limit(batch)
                ).all()
                for c in rows:
                    title = cipher.open(c.title_enc, c.id, "", "title", c.key_version)
                    c.title_enc = cipher.seal(title, c.id, "", "title")
                    if c.system_enc:
                        system = cipher.open(c.system_enc, c.id, "", "system", c.key_version)
                        c.system_enc = cipher.seal(system, c.id, "", "system")
                    c.key_version = cipher.current
                msgs = s.scalars(
                    select(Message)
                    .where(Message.user_id == user_id, Message.key_version != cipher.current)
                    .limit(batch)
                ).all()
                for m in msgs:
                    for column, name in (
                        ("content_enc", "content"),
                        ("reasoning_enc", "reasoning"),
                        ("tool_calls_enc", "tool_calls"),
                    ):
                        blob = getattr(m, column)
                        if blob:
                            plain = cipher.open(blob, m.conversation_id, m.id, name, m.key_version)
                            setattr(m, column, cipher.seal(plain, m.conversation_id, m.id, name))
                    m.key_version = cipher.current
                done = len(rows) + len(msgs)
            if not done:
                return
            yield done


def _encode_cursor(stamp: datetime, cid: str) -> str:
    return base64.urlsafe_b64encode(f"{iso(stamp)}|{cid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, cid = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        if not ID_RE.fullmatch(cid):
            raise ValueError(cid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError("cursor is not a cursor this server gave out.", param="cursor") from exc
    return when, cid


def usage_by_user(db: Database) -> dict[str, dict[str, int]]:
    """Counts per user for the admin view: conversations, messages, replies and tokens (never content)."""
    out: dict[str, dict[str, int]] = {}
    with db.session() as s:
        for user_id, count in s.execute(select(Conversation.user_id, func.count()).group_by(Conversation.user_id)):
            out.setdefault(user_id, {})["conversation_count"] = int(count)
        for user_id, role, meta in s.execute(select(Message.user_id, Message.role, Message.meta)):
            entry = out.setdefault(user_id, {})
            entry["message_count"] = entry.get("message_count", 0) + 1
            if role == "assistant":
                usage = (meta or {}).get("usage") or {}
                entry["requests"] = entry.get("requests", 0) + 1
                entry["prompt_tokens"] = entry.get("prompt_tokens", 0) + int(usage.get("prompt_tokens") or 0)
                entry["completion_tokens"] = entry.get("completion_tokens", 0) + int(
                    usage.get("completion_tokens") or 0
                )
    return out
