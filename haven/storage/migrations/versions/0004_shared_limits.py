"""Rate-limit buckets and failed-login counters in the database (issue 16: several instances, one PostgreSQL).

``rate_limit_buckets``: one token bucket per client key and kind (``requests``/``tokens``): its level and
when it was last refilled (epoch seconds), updated in one ``INSERT … ON CONFLICT DO UPDATE … RETURNING``
so two instances never read-modify-write the same bucket. ``login_failures``: one row per failed login
per key (a digest of the account name or client address, never the name typed), counted in a sliding
window. Additive only (two new tables).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_buckets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("stamp", sa.Float(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_rate_limit_buckets_stamp", "rate_limit_buckets", ["stamp"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_key_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index("ix_rate_limit_buckets_stamp", table_name="rate_limit_buckets")
    op.drop_table("rate_limit_buckets")
