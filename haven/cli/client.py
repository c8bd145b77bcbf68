"""`haven run`, `haven ps`, `haven stop`: CLI commands that talk to a running server (being built)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Registers run / ps / stop."""
