"""``haven db upgrade|current|vacuum``: the schema (Alembic) and space reclamation."""

from __future__ import annotations

import typer
from rich.console import Console

from haven.settings import get_settings

console = Console(highlight=False, emoji=False)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Database schema and maintenance.", no_args_is_help=True)
    app.add_typer(sub, name="db")

    @sub.command("upgrade")
    def upgrade() -> None:
        """Bring the schema to the newest migration (haven serve does this at start too)."""
        from haven.storage.db import current_revision, open_database

        db = open_database(get_settings().effective_database_url)
        console.print(f"schema at revision {current_revision(db.engine)}")
        db.close()

    @sub.command("current")
    def current() -> None:
        """Print the schema's revision and the newest this Haven knows."""
        from haven.storage.db import current_revision, head_revision, make_engine

        engine = make_engine(get_settings().effective_database_url)
        try:
            now, head = current_revision(engine), head_revision()
        finally:
            engine.dispose()
        console.print(
            f"current: {now or 'empty'}  newest: {head}" + ("" if now == head else "  (run haven db upgrade)")
        )

    @sub.command("vacuum")
    def vacuum() -> None:
        """Reclaim the space of deleted rows (SQLite: also checkpoint and truncate the WAL)."""
        from haven.storage.db import open_database
        from haven.storage.db import vacuum as run_vacuum

        db = open_database(get_settings().effective_database_url)
        try:
            run_vacuum(db.engine)
        finally:
            db.close()
        console.print("vacuumed")
