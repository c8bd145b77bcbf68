"""Shared helpers for the accounts tests: cheap Argon2 parameters and a database on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from haven.accounts.crypto import Argon2Params
from haven.accounts.service import Accounts
from haven.conversations.store import ConversationStore
from haven.storage.db import Database, make_engine, open_database

# Argon2id at its cheapest: the tests exercise the logic, benchmarks measure the real cost.
FAST = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
FAST_ENV = {
    "HAVEN_PASSWORD_TIME_COST": "1",
    "HAVEN_PASSWORD_MEMORY_KIB": "1024",
    "HAVEN_PASSWORD_PARALLELISM": "1",
    "HAVEN_LOGIN_FAILURE_DELAY_SECONDS": "0",
}
PASSWORD = "correct mule staple 42"
OTHER_PASSWORD = "another quiet lantern 7"


def database_url(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'haven-home' / 'haven.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as conn:  # a clean schema per test on the shared server
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def open_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = open_database(database_url(request, tmp_path, request.param))
    yield database
    database.close()


def accounts_for(db: Database, home: Path) -> Accounts:
    return Accounts(db, home=home, params=FAST)


def store_for(db: Database) -> ConversationStore:
    return ConversationStore(db, max_title_chars=300, max_message_chars=10_000)
