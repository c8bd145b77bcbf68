"""``haven security-log show|verify``: read and check the hash-chained security log."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.markup import escape
from rich.table import Table

from haven.cli.users import Services, console, err_console
from haven.errors import InvalidRequestError


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(f"--since: {value!r} is not a date or time (e.g. 2026-12-01).") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="The security log (logins, keys, users, exports, chat requests; never content).", no_args_is_help=True
    )
    app.add_typer(sub, name="security-log")

    @sub.command("show")
    def show(
        user: str = typer.Option(None, "--user", help="Only this user's events."),
        since: str = typer.Option(None, "--since", help="Only events from this time on (ISO 8601)."),
        limit: int = typer.Option(100, "--limit", min=1, max=100_000),
        as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
    ) -> None:
        """Show events, newest first."""
        s = Services()
        entries = s.log.entries(user=user, since=_since(since), limit=limit)
        if as_json:
            for e in entries:
                typer.echo(
                    json.dumps(
                        {
                            "seq": e.seq,
                            "at": e.at.isoformat(),
                            "event": e.event,
                            "user": e.user,
                            "client": e.client,
                            "details": e.details,
                        }
                    )
                )
            return
        table = Table(title="Security log")
        for column in ("seq", "time (UTC)", "event", "user", "client", "details"):
            table.add_column(column)
        for e in entries:
            details = ", ".join(f"{k}={v}" for k, v in e.details.items())
            table.add_row(
                str(e.seq),
                e.at.strftime("%Y-%m-%d %H:%M:%S"),
                e.event,
                escape(e.user or ""),
                e.client or "",
                escape(details),
            )
        console.print(table)

    @sub.command("verify")
    def verify() -> None:
        """Check the hash chain: exit 1 naming each edited, deleted or reordered row."""
        s = Services()
        count, problems = s.log.verify()
        for seq, problem in problems:
            err_console.print(f"[bold red]row {seq}:[/] {problem}")
        if problems:
            raise typer.Exit(1)
        console.print(f"security log intact ({count} rows)")
