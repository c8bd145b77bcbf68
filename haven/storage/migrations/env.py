"""Alembic environment: runs migrations on the engine handed over by ``haven.storage.db``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from haven.storage.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):  # `alembic` CLI use: build one from the configured URL
    from haven.settings import get_settings
    from haven.storage.db import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or get_settings().effective_database_url)

with engine.connect() as connection:
    # render_as_batch: SQLite cannot ALTER most things, Alembic rebuilds the table instead.
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
