"""`haven audit …` commands (being built; see the open issues)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="audit commands", no_args_is_help=True)
    app.add_typer(sub, name="audit")
