"""Failed-login throttling per account and per client address (in memory, per process).

Each failure within ``window`` seconds counts; the caller sleeps ``delay`` after a failure (growing
with the count, capped) and, past ``max_per_account`` / ``max_per_client`` failures, is refused with a
retry-after until the oldest failure leaves the window. A success clears the account's count (not the
client's, so one correct password cannot launder a password-spraying address).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from haven.errors import HavenError


class TooManyAttemptsError(HavenError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(
        self,
        *,
        max_per_account: int,
        max_per_client: int,
        window: float,
        base_delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_account = max_per_account
        self.max_per_client = max_per_client
        self.window = window
        self.base_delay = base_delay
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        entries = self._failures.setdefault(key, deque())
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        return entries

    def check(self, account: str, client: str | None) -> None:
        """Raises TooManyAttemptsError when the account or the client is over its limit."""
        now = self._clock()
        with self._lock:
            for key, limit in ((f"a:{account.casefold()}", self.max_per_account), (f"c:{client}", self.max_per_client)):
                if key == "c:None":
                    continue
                entries = self._recent(key, now)
                if len(entries) >= limit:
                    retry = entries[len(entries) - limit] + self.window - now
                    raise TooManyAttemptsError("too many failed logins; try again later.", retry_after=max(1.0, retry))

    def failure(self, account: str, client: str | None) -> float:
        """Records a failure; returns the delay (seconds) to wait before answering."""
        now = self._clock()
        with self._lock:
            entries = self._recent(f"a:{account.casefold()}", now)
            entries.append(now)
            if client is not None:
                self._recent(f"c:{client}", now).append(now)
            # Housekeeping so the map cannot grow without bound under a spray of names.
            if len(self._failures) > 100_000:
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]
            return min(self.base_delay * len(entries), self.base_delay * 4)

    def success(self, account: str) -> None:
        with self._lock:
            self._failures.pop(f"a:{account.casefold()}", None)
