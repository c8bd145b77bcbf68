"""``haven users …``: create, list, set-role, disable, delete, reset-password, rotate-key.

Passwords are read with a hidden prompt (typed twice), or one line from stdin with ``--password-stdin``
(for scripts). Every change is appended to the security log with ``client`` = ``cli``.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from haven.errors import InvalidRequestError
from haven.settings import get_settings

console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


class Services:
    """The database and the domain services the account commands use (opened once per command)."""

    def __init__(self) -> None:
        from haven.accounts.service import Accounts
        from haven.conversations.store import ConversationStore
        from haven.securitylog import SecurityLog
        from haven.storage.db import open_database

        settings = get_settings()
        self.settings = settings
        self.db = open_database(settings.effective_database_url)
        self.accounts = Accounts.from_settings(self.db, settings)
        self.conversations = ConversationStore(
            self.db, max_title_chars=settings.max_title_chars, max_message_chars=settings.max_message_chars
        )
        self.log = SecurityLog(self.db, settings.home)

    def event(self, name: str, *, user: str | None = None, **details: Any) -> None:
        self.log.append(name, user=user, client="cli", details=details)


def read_password(password_stdin: bool, prompt: str = "Password", *, confirm: bool = True) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise InvalidRequestError("--password-stdin: nothing on standard input.")
        return line.rstrip("\r\n")
    value: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return value


def show_recovery_code(code: str) -> None:
    console.print(f"Recovery code (shown once; it unlocks the conversations if the password is lost): [bold]{code}[/]")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Manage user accounts (admins manage; they never read others' conversations).", no_args_is_help=True
    )
    app.add_typer(sub, name="users")

    @sub.command("create")
    def create(
        name: str = typer.Argument(..., help="User name (letters, digits, _ . -)."),
        admin: bool = typer.Option(False, "--admin", help="Make the user an admin (the first user always is)."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    ) -> None:
        """Create a user; prints their recovery code once."""
        s = Services()
        password = read_password(password_stdin)
        user, code = s.accounts.create_user(name, password, role="admin" if admin else "user")
        s.event("user_created", user=user.name, role=user.role)
        console.print(f"created {user.role} {user.name}")
        show_recovery_code(code)

    @sub.command("list")
    def list_() -> None:
        """List users (no conversation content)."""
        s = Services()
        table = Table(title="Haven users")
        for column in ("name", "role", "status", "created", "last login"):
            table.add_column(column)
        for u in s.accounts.list_users():
            last = u.last_login_at.strftime("%Y-%m-%d %H:%M") if u.last_login_at else "never"
            table.add_row(
                u.name, u.role, "disabled" if u.disabled else "active", u.created_at.strftime("%Y-%m-%d %H:%M"), last
            )
        console.print(table)

    @sub.command("set-role")
    def set_role(name: str = typer.Argument(...), role: str = typer.Argument(..., help="admin or user")) -> None:
        """Make a user an admin or a plain user."""
        s = Services()
        user = s.accounts.set_role(s.accounts.by_name(name).id, role)
        s.event("user_changed", user=user.name, role=role)
        console.print(f"{user.name} is now {user.role}")

    @sub.command("disable")
    def disable(
        name: str = typer.Argument(...), enable: bool = typer.Option(False, "--enable", help="Enable the user again.")
    ) -> None:
        """Disable a user (sessions end at once) or, with --enable, enable them again."""
        s = Services()
        user = s.accounts.set_disabled(s.accounts.by_name(name).id, not enable)
        s.event("user_changed", user=user.name, disabled=user.disabled)
        console.print(f"{user.name} is {'disabled' if user.disabled else 'enabled'}")

    @sub.command("delete")
    def delete(name: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", "-y")) -> None:
        """Delete a user, their keys and all their conversations (unrecoverable, backups included)."""
        s = Services()
        user = s.accounts.by_name(name)
        if not yes:
            typer.confirm(f"Delete {user.name} and all their conversations for good?", abort=True)
        s.accounts.delete_user(user.id)
        s.event("user_deleted", user=user.name)
        console.print(f"deleted {user.name}")

    @sub.command("reset-password")
    def reset_password(
        name: str = typer.Argument(...),
        recovery_code: str = typer.Option(None, "--recovery-code", help="The user's recovery code (keeps data)."),
        yes_lose_data: bool = typer.Option(
            False, "--yes-lose-data", help="Without a recovery code: accept that old conversations are deleted."
        ),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the new password from stdin."),
    ) -> None:
        """Set a new password. Without the recovery code the user's conversations become unreadable."""
        s = Services()
        user = s.accounts.by_name(name)
        if not recovery_code and not yes_lose_data:
            err_console.print(
                f"[bold yellow]warning:[/] without {user.name}'s recovery code their conversations can never be "
                "read again and will be deleted."
            )
            if password_stdin or not typer.confirm("Reset anyway?", default=False):
                raise InvalidRequestError("not reset: pass --recovery-code, or --yes-lose-data to accept the loss.")
        password = read_password(password_stdin, "New password")
        _, lost, code = s.accounts.reset_password(
            user.id, password, recovery_code=recovery_code, confirm_data_loss=True
        )
        s.event("password_reset", user=user.name, data_lost=lost)
        console.print(f"password of {user.name} reset" + (" (old conversations deleted)" if lost else ""))
        if code:
            show_recovery_code(code)

    @sub.command("rotate-key")
    def rotate_key(
        name: str = typer.Argument(...),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the user's password from stdin."),
        batch_size: int = typer.Option(200, "--batch-size", min=1, max=100_000, help="Rows per committed batch."),
    ) -> None:
        """Give a user a new data key and re-encrypt everything (resumable: rerun after an interruption).

        Needs the user's password. Their sessions and API keys are revoked (they wrap the old key).
        """
        from haven.conversations.rotation import rotate_data_key

        s = Services()
        password = read_password(password_stdin, f"Password of {name}", confirm=False)
        done = 0

        def progress(rows: int) -> None:
            nonlocal done
            done += rows
            err_console.print(f"re-encrypted {done} rows", end="\r")

        code = rotate_data_key(s.accounts, s.conversations, name, password, progress=progress, batch=batch_size)
        s.event("key_rotated", user=name, rows=done)
        console.print(f"data key of {name} rotated ({done} rows re-encrypted); sessions and API keys were revoked")
        show_recovery_code(code)
