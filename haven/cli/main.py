"""The ``haven`` command: assembles the sub-commands and maps errors to one readable line.

Each area owns a module with a ``register(app)`` function; this file only wires them and
turns :class:`~haven.errors.HavenError` into ``error: <message>`` and exit code 1.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from haven import __version__
from haven.errors import HavenError

err_console = Console(stderr=True, highlight=False)


class HavenGroup(TyperGroup):
    """Root group that prints any HavenError as one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HavenError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise click.exceptions.Exit(130) from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"haven {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        cls=HavenGroup,
        name="haven",
        help="Haven: a self-hosted, sovereign AI assistant server.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )

    @app.callback()
    def root(
        version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True),
    ) -> None:
        """Haven: a self-hosted, sovereign AI assistant server."""

    # Imported here, not at module top, so `haven --help` stays fast and each area owns its module.
    from haven.cli import audit, client, config, db, dev, keys, models, security_log, serve, users  # issue 10

    for module in (config, models, dev, serve, client, audit, users, keys, db, security_log):
        module.register(app)
    return app


def build_cli() -> click.Command:
    """The click command tree (Typer sub-apps plus commands built directly with click)."""
    app = build_app()
    command = typer.main.get_command(app)
    from haven.cli import serve

    if isinstance(command, click.Group):
        serve.register_click(command)
    return command


def main(argv: list[str] | None = None) -> None:
    build_cli().main(args=argv if argv is not None else sys.argv[1:], prog_name="haven")
