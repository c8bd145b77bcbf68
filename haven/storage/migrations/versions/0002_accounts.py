"""Accounts, conversations and the security log (issue 10).

Users with Argon2id password hashes and wrapped data keys, server-side web sessions, API keys (hashes
only), conversations and messages whose text columns hold AES-GCM ciphertext, and the hash-chained
security log.

Revision ID: 0002
Revises: 0001_audit_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001_audit_runs"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(10), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("is_local", sa.Boolean(), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("kek_salt", sa.LargeBinary(), nullable=True),
        sa.Column("kek_params", sa.JSON(), nullable=False),
        sa.Column("password_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("recovery_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("keyfile_wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("rotation", sa.JSON(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_login_at", TZ, nullable=True),
    )
    for table in ("web_sessions", "api_keys"):
        extra: list[sa.schema.SchemaItem] = (
            [
                sa.Column("client", sa.String(100), nullable=True),
                sa.Column("created_at", TZ, nullable=False),
                sa.Column("last_seen_at", TZ, nullable=False),
                sa.Column("expires_at", TZ, nullable=False),
            ]
            if table == "web_sessions"
            else [
                sa.Column("label", sa.String(100), nullable=False),
                sa.Column("created_at", TZ, nullable=False),
                sa.Column("expires_at", TZ, nullable=True),
                sa.Column("last_used_at", TZ, nullable=True),
            ]
        )
        op.create_table(
            table,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
            sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
            sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
            sa.Column("key_version", sa.Integer(), nullable=False),
            *extra,
        )
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("title_enc", sa.LargeBinary(), nullable=False),
        sa.Column("system_enc", sa.LargeBinary(), nullable=True),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("current_leaf_id", sa.String(32), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    op.create_index("ix_conversations_user_updated", "conversations", ["user_id", "updated_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user_id", sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.Column("reasoning_enc", sa.LargeBinary(), nullable=True),
        sa.Column("tool_calls_enc", sa.LargeBinary(), nullable=True),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("finish_reason", sa.String(30), nullable=True),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_messages_conversation_seq", "messages", ["conversation_id", "seq"])
    op.create_index("ix_messages_user_id", "messages", ["user_id"])
    op.create_table(
        "security_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("event", sa.String(50), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("client", sa.String(100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )
    op.create_index("ix_security_log_at", "security_log", ["at"])
    op.create_index("ix_security_log_user_name", "security_log", ["user_name"])


def downgrade() -> None:
    for table in ("security_log", "messages", "conversations", "api_keys", "web_sessions", "users"):
        op.drop_table(table)
