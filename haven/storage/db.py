"""Engine and session factory for Haven's database, and schema upgrades at start.

``open_database(url)`` upgrades the schema to the newest Alembic revision (migrations ship inside
the package) and returns a :class:`Database` holding the engine and a session factory. SQLite gets
WAL journaling, enforced foreign keys and ``secure_delete`` on every connection; PostgreSQL URLs written as
``postgresql://`` are routed to psycopg 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from haven.errors import HavenError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(HavenError):
    code = "database_error"


def normalise_url(url: str) -> str:
    """``postgresql://`` → ``postgresql+psycopg://`` (SQLAlchemy would otherwise look for psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the web UI read while the audit runner writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted rows (conversations, wrapped keys) are overwritten with zeros, not left in free pages.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # NORMAL is safe with WAL (no corruption on crash) and avoids an fsync per committed response.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise DatabaseError(f"The database driver for {parsed.drivername} is not installed ({exc.name}).") from exc


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine_or_url: Engine | str) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    command.upgrade(alembic_config(engine), "head")


def downgrade_to(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_script_config()).get_current_head()


def _script_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def vacuum(engine: Engine) -> None:
    """Reclaim free pages (and, on SQLite, checkpoint and truncate the WAL so deleted text leaves it)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.exec_driver_sql("VACUUM")
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM")


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error (nothing half-stored)."""
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, upgrade: bool = True) -> Database:
    engine = make_engine(url)
    try:
        if upgrade:
            upgrade_to_head(engine)
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, HavenError):
            raise
        raise DatabaseError(f"Could not open the database at {make_url(normalise_url(url))!r}: {exc}") from exc
    return Database(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))
