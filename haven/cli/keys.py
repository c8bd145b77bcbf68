"""``haven keys …``: create (printed once), list and revoke users' API keys."""

from __future__ import annotations

import typer
from rich.table import Table

from haven.cli.users import Services, console, read_password


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Manage API keys ('Authorization: Bearer hvn_…').", no_args_is_help=True)
    app.add_typer(sub, name="keys")

    @sub.command("create")
    def create(
        user: str = typer.Option(..., "--user", help="Owner of the key."),
        label: str = typer.Option("", "--label", help="What the key is for."),
        expires_days: int = typer.Option(None, "--expires-days", help="Expire after N days (default: never)."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the user's password from stdin."),
    ) -> None:
        """Create a key and print it once. Needs the user's password: the key gets its own wrap of their data key."""
        s = Services()
        password = read_password(password_stdin, f"Password of {user}", confirm=False)
        unlocked = s.accounts.authenticate_password(user, password)
        info, secret = s.accounts.create_key(unlocked, label=label, expires_days=expires_days)
        s.event("key_created", user=unlocked.user.name, key=info.prefix, label=label)
        console.print(f"API key {info.prefix} for {unlocked.user.name} (shown once):")
        typer.echo(secret)

    @sub.command("list")
    def list_(user: str = typer.Option(None, "--user", help="Only this user's keys.")) -> None:
        """List keys (never their secrets)."""
        s = Services()
        users = [s.accounts.by_name(user)] if user else s.accounts.list_users()
        table = Table(title="API keys")
        for column in ("key", "user", "label", "created", "expires", "last used"):
            table.add_column(column)
        for u in users:
            for k in s.accounts.list_keys(u.id):
                table.add_row(
                    k.prefix,
                    u.name,
                    k.label,
                    k.created_at.strftime("%Y-%m-%d"),
                    k.expires_at.strftime("%Y-%m-%d") if k.expires_at else "never",
                    k.last_used_at.strftime("%Y-%m-%d %H:%M") if k.last_used_at else "never",
                )
        console.print(table)

    @sub.command("revoke")
    def revoke(key: str = typer.Argument(..., help="The key's prefix (hvn_…) or id.")) -> None:
        """Revoke a key: the next request with it is refused."""
        s = Services()
        info = s.accounts.revoke_key(None, key)
        s.event("key_revoked", user=s.accounts.get(info.user_id).name, key=info.prefix)
        console.print(f"revoked {info.prefix}")
