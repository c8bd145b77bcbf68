"""Haven's database tables as SQLAlchemy 2 typed models.

The audit (suites, their items, runs, responses, judgements) and, since migration 0002, accounts
(users, web sessions, API keys), conversations and messages (their text only as AES-GCM ciphertext,
see :mod:`haven.accounts.crypto`) and the hash-chained security log.
Every schema change is an Alembic migration in ``migrations/versions``; the models and the newest
migration must describe the same tables (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class AuditSuite(Base):
    """An imported suite (built-in suites are read from the package's data files, not stored)."""

    __tablename__ = "audit_suites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[str] = mapped_column(String(50), default="1")
    format: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(Text, default="")
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[AuditSuiteItem]] = relationship(
        back_populates="suite", cascade="all, delete-orphan", order_by="AuditSuiteItem.position"
    )


class AuditSuiteItem(Base):
    __tablename__ = "audit_suite_items"
    __table_args__ = (UniqueConstraint("suite_id", "item_id", name="uq_audit_suite_items_suite_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite_id: Mapped[int] = mapped_column(ForeignKey("audit_suites.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(300))
    group: Mapped[str] = mapped_column(String(200))
    template_id: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(20))
    prompt: Mapped[str] = mapped_column(Text)
    pair_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    stance: Mapped[str | None] = mapped_column(String(20), nullable=True)
    target: Mapped[str | None] = mapped_column(String(200), nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    # issue 13 (migration 0003): translations and detected language of imported items
    translation_key: Mapped[str | None] = mapped_column(String(300), nullable=True)
    language_detected: Mapped[str | None] = mapped_column(String(20), nullable=True)
    language_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)

    suite: Mapped[AuditSuite] = relationship(back_populates="items")


class AuditRun(Base):
    __tablename__ = "audit_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="running")
    """running → finished; an interrupted run stays 'running' (or 'interrupted') and can be resumed."""
    target: Mapped[str] = mapped_column(String(300))
    """What was audited, as the user named it (model name or endpoint model)."""
    endpoint: Mapped[str] = mapped_column(String(500))
    model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    model_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    suite: Mapped[str] = mapped_column(String(200))
    suite_version: Mapped[str] = mapped_column(String(50))
    languages: Mapped[list[str]] = mapped_column(JSON)
    samples: Mapped[int] = mapped_column(Integer, default=1)
    sampling: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    judge: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config_key: Mapped[str] = mapped_column(String(64), index=True)
    """Hash of everything that defines the run: rerunning the same command resumes it."""
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditResponse(Base):
    __tablename__ = "audit_responses"
    __table_args__ = (UniqueConstraint("run_id", "item_id", "sample_index", name="uq_audit_responses_run_item_sample"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("audit_runs.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(300))
    sample_index: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str] = mapped_column(Text, default="")
    finish_reason: Mapped[str | None] = mapped_column(String(50), nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    completion_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditJudgement(Base):
    __tablename__ = "audit_judgements"
    __table_args__ = (
        UniqueConstraint("run_id", "item_id", "sample_index", name="uq_audit_judgements_run_item_sample"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("audit_runs.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(300))
    sample_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(20))
    valence: Mapped[float | None] = mapped_column(Float, nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    judge: Mapped[str] = mapped_column(String(300))
    label_probs: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    judge_refused: Mapped[bool] = mapped_column(Boolean, default=False)
    parse_error: Mapped[bool] = mapped_column(Boolean, default=False)
    thought_suppressed: Mapped[bool] = mapped_column(Boolean, default=False)
    rationale: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- accounts (issue 10) ---------------------------------------------------------------------------
# Ids are random 128-bit hex strings: nothing guessable, nothing that counts users or conversations.
# Every "*_wrapped" column is a data key sealed with AES-GCM under a key-encryption key the server does
# not keep (derived from a password, an API key secret, a session secret or the recovery code).


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64), unique=True)
    """``name`` case-folded: names are unique regardless of case."""
    role: Mapped[str] = mapped_column(String(10), default="user")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_local: Mapped[bool] = mapped_column(Boolean, default=False)
    """The implicit owner of local single-user mode (no password; key-file-wrapped data key)."""
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    kek_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    password_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    recovery_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    keyfile_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    rotation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """A key rotation in progress: the next data key wrapped by the password (resumable)."""
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    client: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# --- conversations (issue 10) ----------------------------------------------------------------------


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_updated", "user_id", "updated_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title_enc: Mapped[bytes] = mapped_column(LargeBinary)
    system_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    model: Mapped[str | None] = mapped_column(String(300), nullable=True)
    current_leaf_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_seq", "conversation_id", "seq"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(20))
    content_enc: Mapped[bytes] = mapped_column(LargeBinary)
    reasoning_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    tool_calls_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Not content: model, sampling, usage, timings, tool_call_id/name (admins may see usage)."""
    finish_reason: Mapped[str | None] = mapped_column(String(30), nullable=True)
    incomplete: Mapped[bool] = mapped_column(Boolean, default=False)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- security log (issue 10) -----------------------------------------------------------------------


class SecurityLogEntry(Base):
    """One append-only, hash-chained row: ``mac`` = HMAC(key, prev mac ‖ canonical row)."""

    __tablename__ = "security_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    event: Mapped[str] = mapped_column(String(50))
    user_name: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    client: Mapped[str | None] = mapped_column(String(100), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mac: Mapped[str] = mapped_column(String(64))
