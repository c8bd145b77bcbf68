"""``haven config``: print the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from haven.settings import Settings


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """Print the effective settings (environment + defaults), secrets masked."""
        settings = Settings()
        values = settings.masked()
        if as_json:
            typer.echo(json.dumps(values, indent=2, default=str))
            return
        table = Table(title="Haven settings", show_lines=False)
        table.add_column("setting")
        table.add_column("value")
        table.add_column("environment variable", style="dim")
        for name, value in values.items():
            table.add_row(name, "" if value is None else str(value), f"HAVEN_{name.upper()}")
        Console().print(table)
