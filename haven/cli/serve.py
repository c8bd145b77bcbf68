"""``haven serve`` (server commands; being built)."""

from __future__ import annotations

import click
import typer


def register(app: typer.Typer) -> None:
    """Typer-side commands (run, ps, stop) go here."""


def register_click(group: click.Group) -> None:
    """Commands built with click directly (``serve``, whose flags come from Settings)."""
