"""Per-app accounts services: the database (opened on first use), accounts, conversations, log, throttle.

The app factory puts one :class:`AccountsContext` on ``app.state.accounts``; the auth middleware,
the routes and the recording hook take their services from it. Opening the database runs the schema
upgrade (migrations), once per process, at the first request that needs it (or at start for binds
that must count users before serving).
"""

from __future__ import annotations

import threading
import time
from functools import cached_property

from haven.accounts.service import Accounts
from haven.accounts.shared_limits import DatabaseFailures
from haven.accounts.throttle import LoginThrottle
from haven.conversations.store import ConversationStore
from haven.securitylog import SecurityLog
from haven.settings import Settings
from haven.storage.db import Database, open_database

NO_USERS_TTL_SECONDS = 1.0


class AccountsContext:
    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        self.settings = settings
        self._database = database
        self._lock = threading.Lock()
        self._has_users = False
        self._no_users_seen: float | None = None  # monotonic time of the last count that found no user
        self.throttle = LoginThrottle(
            max_per_account=settings.login_max_failures_per_account,
            max_per_client=settings.login_max_failures_per_client,
            window=settings.login_window_seconds,
            base_delay=settings.login_failure_delay_seconds,
            # Several instances on one database count the same failures (issue 16).
            store=DatabaseFailures(lambda: self.db) if settings.limits_in_database else None,
        )

    @property
    def db(self) -> Database:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    self._database = open_database(self.settings.effective_database_url)
        return self._database

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts.from_settings(self.db, self.settings)

    @cached_property
    def conversations(self) -> ConversationStore:
        return ConversationStore(
            self.db, max_title_chars=self.settings.max_title_chars, max_message_chars=self.settings.max_message_chars
        )

    @cached_property
    def log(self) -> SecurityLog:
        return SecurityLog(self.db, self.settings.home)

    def log_ready(self) -> bool:
        """Whether :attr:`log` exists. The first use of it opens the database (and checks its schema), which
        must not happen on the event loop."""
        return "log" in self.__dict__

    def has_users(self) -> bool:
        """Whether a real user exists (cached once true: local mode never comes back by itself)."""
        if not self._has_users:
            self._has_users = self.accounts.user_count() > 0
            self._no_users_seen = None if self._has_users else time.monotonic()
        return self._has_users

    def users_known(self) -> bool | None:
        """:meth:`has_users` without touching the database, or None when it must be asked (in a thread).

        True once a user exists. False for NO_USERS_TTL_SECONDS after a count found none: in local mode every
        request asks, and a database round trip per request cost a thread hop (0.5–0.9 ms) each. A user created
        in this process (setup, admin routes) is seen at once; one created by another process (``haven users
        add``, another instance) within the TTL."""
        if self._has_users:
            return True
        seen = self._no_users_seen
        if seen is not None and time.monotonic() - seen < NO_USERS_TTL_SECONDS:
            return False
        return None

    def users_changed(self) -> None:
        self._has_users = False
        self._no_users_seen = None

    def close(self) -> None:
        if self.log_ready():  # created: write its queued rows before the database goes
            self.log.close()
        if self._database is not None:
            self._database.close()
