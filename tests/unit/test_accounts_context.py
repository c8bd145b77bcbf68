"""AccountsContext.users_known(): local mode's per-request question answered without a database round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.server.accounts import context as context_module
from haven.server.accounts.context import NO_USERS_TTL_SECONDS, AccountsContext
from haven.settings import Settings


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(context_module.time, "monotonic", lambda: now[0])
    return now


def _context(tmp_path: Path) -> AccountsContext:
    settings = Settings(home=tmp_path, password_time_cost=1, password_memory_kib=8192, password_parallelism=1)
    return AccountsContext(settings)


def test_no_users_is_trusted_for_the_ttl_then_asked_again(tmp_path: Path, clock: list[float]) -> None:
    ctx = _context(tmp_path)
    assert ctx.users_known() is None  # never counted: ask the database
    assert ctx.has_users() is False
    assert ctx.users_known() is False
    # Another process (``haven users add``) creates the first user: seen once the TTL is over.
    other = _context(tmp_path)
    other.accounts.create_user("alice", "a long enough passphrase 42", role="admin")
    clock[0] += NO_USERS_TTL_SECONDS / 2
    assert ctx.users_known() is False
    clock[0] += NO_USERS_TTL_SECONDS
    assert ctx.users_known() is None and ctx.has_users() is True
    assert ctx.users_known() is True  # and for good: local mode never comes back by itself


def test_a_user_created_in_this_process_is_seen_at_once(tmp_path: Path, clock: list[float]) -> None:
    ctx = _context(tmp_path)
    assert ctx.has_users() is False
    ctx.accounts.create_user("alice", "a long enough passphrase 42", role="admin")
    ctx.users_changed()  # what the setup and admin routes call
    assert ctx.users_known() is None and ctx.has_users() is True
