"""Audit suite items: translation key and detected language (issue 13).

Imported items that share an id across files of different languages are one request in translation:
``translation_key`` is that shared id. ``language_detected``/``language_confidence`` are what the
offline detector (lingua) found in the prompt, kept beside the language the item was imported as.
Additive only (three nullable columns), so it applies on top of any other branch's tables.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_suite_items") as batch:
        batch.add_column(sa.Column("translation_key", sa.String(300), nullable=True))
        batch.add_column(sa.Column("language_detected", sa.String(20), nullable=True))
        batch.add_column(sa.Column("language_confidence", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_suite_items") as batch:
        batch.drop_column("language_confidence")
        batch.drop_column("language_detected")
        batch.drop_column("translation_key")
