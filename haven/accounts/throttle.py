"""Failed-login throttling per account and per client address.

Each failure within ``window`` seconds counts; the caller sleeps ``delay`` after a failure (growing
with the count, capped) and, past ``max_per_account`` / ``max_per_client`` failures, is refused with a
retry-after until the oldest counted failure leaves the window. A success clears the account's count
(not the client's, so one correct password cannot launder a password-spraying address).

Where the failures are kept is a :class:`FailureStore`: :class:`MemoryFailures` (one process: the
default on SQLite) or :class:`haven.accounts.shared_limits.DatabaseFailures` (every instance on one
PostgreSQL counts the same failures, so N instances do not give a sprayer N times the tries).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from haven.errors import HavenError

MAX_TRACKED_KEYS = 100_000


class TooManyAttemptsError(HavenError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FailureStore(Protocol):
    """Timestamps of failed logins per key."""

    clock: Callable[[], float]

    def add(self, keys: Iterable[str], now: float, *, window: float) -> None: ...

    def count(self, key: str, since: float) -> int: ...

    def nth_newest(self, key: str, since: float, n: int) -> float | None: ...

    def clear(self, key: str) -> None: ...


class MemoryFailures:
    """This process's failures (exact for one process; nothing shared)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, since: float) -> deque[float]:
        entries = self._failures.get(key) or deque()
        while entries and entries[0] <= since:
            entries.popleft()
        return entries

    def add(self, keys: Iterable[str], now: float, *, window: float) -> None:
        with self._lock:
            for key in keys:
                entries = self._recent(key, now - window)
                entries.append(now)
                self._failures[key] = entries
            # Housekeeping so the map cannot grow without bound under a spray of names.
            if len(self._failures) > MAX_TRACKED_KEYS:
                for key in [k for k, v in self._failures.items() if not self._recent(k, now - window)]:
                    del self._failures[key]

    def count(self, key: str, since: float) -> int:
        with self._lock:
            return len(self._recent(key, since))

    def nth_newest(self, key: str, since: float, n: int) -> float | None:
        with self._lock:
            entries = self._recent(key, since)
            return entries[len(entries) - n] if len(entries) >= n else None

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class LoginThrottle:
    def __init__(
        self,
        *,
        max_per_account: int,
        max_per_client: int,
        window: float,
        base_delay: float,
        clock: Callable[[], float] | None = None,
        store: FailureStore | None = None,
    ) -> None:
        self.max_per_account = max_per_account
        self.max_per_client = max_per_client
        self.window = window
        self.base_delay = base_delay
        self.store: FailureStore = store if store is not None else MemoryFailures(clock or time.monotonic)

    @staticmethod
    def _keys(account: str, client: str | None) -> list[str]:
        return [f"a:{account.casefold()}", *([f"c:{client}"] if client is not None else [])]

    def check(self, account: str, client: str | None) -> None:
        """Raises TooManyAttemptsError when the account or the client is over its limit."""
        now = self.store.clock()
        for key, limit in zip(self._keys(account, client), (self.max_per_account, self.max_per_client), strict=False):
            oldest_counted = self.store.nth_newest(key, now - self.window, limit)
            if oldest_counted is not None:
                retry = oldest_counted + self.window - now
                raise TooManyAttemptsError("too many failed logins; try again later.", retry_after=max(1.0, retry))

    def failure(self, account: str, client: str | None) -> float:
        """Records a failure; returns the delay (seconds) to wait before answering."""
        now = self.store.clock()
        keys = self._keys(account, client)
        self.store.add(keys, now, window=self.window)
        count = self.store.count(keys[0], now - self.window)
        return min(self.base_delay * count, self.base_delay * 4)

    def success(self, account: str) -> None:
        self.store.clear(self._keys(account, None)[0])
