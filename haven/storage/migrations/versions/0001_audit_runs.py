"""Audit tables: imported suites and their items, runs, responses, judgements.

Revision ID: 0001_audit_runs
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_audit_runs"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_suites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("version", sa.String(50), nullable=False),
        sa.Column("format", sa.String(50), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_suite_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("suite_id", sa.Integer(), sa.ForeignKey("audit_suites.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(300), nullable=False),
        sa.Column("group", sa.String(200), nullable=False),
        sa.Column("template_id", sa.String(200), nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("pair_key", sa.String(300), nullable=True),
        sa.Column("stance", sa.String(20), nullable=True),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.UniqueConstraint("suite_id", "item_id", name="uq_audit_suite_items_suite_item"),
    )
    op.create_index("ix_audit_suite_items_suite_id", "audit_suite_items", ["suite_id"])
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("model", sa.String(300), nullable=True),
        sa.Column("model_hash", sa.String(200), nullable=True),
        sa.Column("suite", sa.String(200), nullable=False),
        sa.Column("suite_version", sa.String(50), nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("judge", sa.JSON(), nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("finished_at", TZ, nullable=True),
    )
    op.create_index("ix_audit_runs_config_key", "audit_runs", ["config_key"])
    for table in ("audit_responses", "audit_judgements"):
        common: list[sa.schema.SchemaItem] = [
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("run_id", sa.Integer(), sa.ForeignKey("audit_runs.id", ondelete="CASCADE"), nullable=False),
            sa.Column("item_id", sa.String(300), nullable=False),
            sa.Column("sample_index", sa.Integer(), nullable=False),
        ]
        if table == "audit_responses":
            extra: list[sa.schema.SchemaItem] = [
                sa.Column("content", sa.Text(), nullable=False),
                sa.Column("reasoning", sa.Text(), nullable=False),
                sa.Column("finish_reason", sa.String(50), nullable=True),
                sa.Column("prompt_tokens", sa.Integer(), nullable=True),
                sa.Column("completion_tokens", sa.Integer(), nullable=True),
                sa.Column("latency_s", sa.Float(), nullable=True),
                sa.Column("error", sa.Text(), nullable=True),
                sa.Column("http_status", sa.Integer(), nullable=True),
            ]
            unique = "uq_audit_responses_run_item_sample"
        else:
            extra = [
                sa.Column("label", sa.String(20), nullable=False),
                sa.Column("valence", sa.Float(), nullable=True),
                sa.Column("flags", sa.JSON(), nullable=False),
                sa.Column("judge", sa.String(300), nullable=False),
                sa.Column("label_probs", sa.JSON(), nullable=True),
                sa.Column("judge_refused", sa.Boolean(), nullable=False),
                sa.Column("parse_error", sa.Boolean(), nullable=False),
                sa.Column("thought_suppressed", sa.Boolean(), nullable=False),
                sa.Column("rationale", sa.Text(), nullable=False),
            ]
            unique = "uq_audit_judgements_run_item_sample"
        op.create_table(
            table,
            *common,
            *extra,
            sa.Column("created_at", TZ, nullable=False),
            sa.UniqueConstraint("run_id", "item_id", "sample_index", name=unique),
        )
        op.create_index(f"ix_{table}_run_id", table, ["run_id"])


def downgrade() -> None:
    for table in ("audit_judgements", "audit_responses", "audit_runs", "audit_suite_items", "audit_suites"):
        op.drop_table(table)
