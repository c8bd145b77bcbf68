"""``haven users|keys|db|security-log``: the commands, their one-line errors and what they store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from haven.cli.main import build_cli
from tests.support.accounts import FAST_ENV, OTHER_PASSWORD, PASSWORD


@pytest.fixture(autouse=True)
def fast_argon(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAST_ENV.items():
        monkeypatch.setenv(key, value)
    from haven.settings import get_settings

    get_settings.cache_clear()


def haven(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(build_cli(), list(args), input=stdin, env={"COLUMNS": "200"})


def test_users_lifecycle_and_errors() -> None:
    r = haven("users", "create", "alice", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "created admin alice" in r.output and "Recovery code" in r.output
    r = haven("users", "create", "alice", "--password-stdin", stdin=OTHER_PASSWORD + "\n")
    assert r.exit_code == 1 and "already exists" in r.output and "Traceback" not in r.output
    r = haven("users", "create", "bob", "--password-stdin", stdin="password\n")
    assert r.exit_code == 1 and "at least 12 characters" in r.output
    assert haven("users", "create", "bob", "--password-stdin", stdin=OTHER_PASSWORD + "\n").exit_code == 0
    r = haven("users", "list")
    assert "alice" in r.output and "bob" in r.output and "admin" in r.output
    assert haven("users", "set-role", "bob", "admin").exit_code == 0
    assert "disabled" in haven("users", "disable", "bob").output
    assert "enabled" in haven("users", "disable", "bob", "--enable").output
    r = haven("users", "reset-password", "bob", "--password-stdin", stdin="new lantern 12345\n")
    assert r.exit_code == 1 and "never be read again" in r.output and "--yes-lose-data" in r.output
    r = haven("users", "reset-password", "bob", "--yes-lose-data", "--password-stdin", stdin="new lantern 12345\n")
    assert r.exit_code == 0 and "old conversations deleted" in r.output
    assert haven("users", "delete", "bob", "--yes").exit_code == 0
    r = haven("users", "delete", "nobody", "--yes")
    assert r.exit_code == 1 and "no user named 'nobody'" in r.output


def test_keys_db_and_security_log() -> None:
    haven("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    r = haven(
        "keys",
        "create",
        "--user",
        "alice",
        "--label",
        "ci",
        "--expires-days",
        "3",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("hvn_")
    r = haven("keys", "create", "--user", "alice", "--password-stdin", stdin="wrong password here\n")
    assert r.exit_code == 1 and "wrong user name or password" in r.output
    listed = haven("keys", "list").output
    assert secret[:16] in listed and secret not in listed
    assert haven("keys", "revoke", secret[:16]).exit_code == 0
    assert haven("keys", "revoke", secret[:16]).exit_code == 1
    assert "0004" in haven("db", "current").output
    assert haven("db", "upgrade").exit_code == 0 and haven("db", "vacuum").exit_code == 0
    shown = haven("security-log", "show", "--user", "alice").output
    assert "user_created" in shown and "key_created" in shown and "key_revoked" in shown
    assert haven("security-log", "show", "--since", "yesterday").exit_code == 1
    r = haven("security-log", "verify")
    assert r.exit_code == 0 and "intact" in r.output


def test_rotate_key_cli() -> None:
    haven("users", "create", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    r = haven("users", "rotate-key", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.exit_code == 0 and "rotated" in r.output and "Recovery code" in r.output
    r = haven("users", "rotate-key", "alice", "--password-stdin", stdin="wrong password here\n")
    assert r.exit_code == 1 and "wrong password" in r.output
