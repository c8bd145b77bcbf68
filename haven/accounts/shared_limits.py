"""Rate-limit buckets and failed-login counters kept in the database, shared by every Haven instance on it.

Several ``haven serve`` processes behind one load balancer must agree on how much a client has used: a
limit of N requests a minute is N across all of them, and a password sprayer cannot multiply its tries
by the number of instances. Both live in tables of migration 0004:

* :class:`DatabaseBuckets` — token buckets, one row per key. Each take or charge is one
  ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` statement: the refill, the decision and the new level
  are computed by the database under the row lock, so two instances racing on one bucket serialise and
  never both spend the last token (no read-modify-write in Python).
* :class:`DatabaseFailures` — one row per failed login per key, counted in a sliding window.

Time is epoch seconds from this host's clock (instances must keep NTP time, as any cluster does); a
bucket's stamp never moves backwards, so a host a little behind cannot refill a bucket twice. Keys are
digests: the account names people type (sometimes a password, by mistake) are never stored.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import text

from haven.storage.db import Database

PRUNE_EVERY_SECONDS = 60.0
# A bucket at or above zero is full again within a minute (the capacities are at most a minute's rate);
# rows idle this long and not in debt are dropped, and recreated full when next used (the same thing).
IDLE_BUCKET_SECONDS = 3600.0


def digest_key(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=20).hexdigest()


class _Pruner:
    """Runs a cleanup statement at most once a minute per process (cheap, and bounded tables)."""

    def __init__(self) -> None:
        self._next = 0.0
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        with self._lock:
            if now < self._next:
                return False
            self._next = now + PRUNE_EVERY_SECONDS
            return True


class DatabaseBuckets:
    """Token buckets in ``rate_limit_buckets`` (blocking calls: run them off the event loop)."""

    blocking = True

    def __init__(self, database: Callable[[], Database], *, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self.clock = clock
        self._pruner = _Pruner()

    def _upsert(
        self, key: str, rate: float, capacity: float, amount: float, *, conditional: bool
    ) -> tuple[float, bool]:
        now = self.clock()
        db = self._database()
        dialect = db.engine.dialect.name
        least, greatest = ("least", "greatest") if dialect == "postgresql" else ("min", "max")
        t = "rate_limit_buckets"
        # The level refilled up to now (a stamp in the future, from a host slightly ahead, refills nothing).
        refilled = f"{least}(:capacity, {t}.level + {greatest}(0, :now - {t}.stamp) * :rate)"
        level = f"CASE WHEN {refilled} >= :amount THEN {refilled} - :amount ELSE {refilled} END" if conditional \
            else f"{refilled} - :amount"
        granted = f"{refilled} >= :amount" if conditional else "true"
        fresh_granted = capacity >= amount or not conditional
        statement = text(
            f"INSERT INTO {t} (key, level, stamp, granted) VALUES (:key, :fresh, :now, :fresh_granted) "
            f"ON CONFLICT (key) DO UPDATE SET level = {level}, stamp = {greatest}({t}.stamp, :now), "
            f"granted = {granted} RETURNING level, granted"
        )
        params = {
            "key": key, "now": now, "rate": rate, "capacity": capacity, "amount": amount,
            "fresh": capacity - amount if fresh_granted else capacity, "fresh_granted": fresh_granted,
        }
        with db.session() as session:
            if dialect == "postgresql":
                # A bucket update lost in a database crash costs a client one extra request, not data: do not
                # wait for the WAL flush on every request.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            row = session.execute(statement, params).one()
            if self._pruner.due(now):
                session.execute(
                    text(f"DELETE FROM {t} WHERE stamp < :idle AND level >= 0"), {"idle": now - IDLE_BUCKET_SECONDS}
                )
        return float(row[0]), bool(row[1])

    def try_take(self, key: str, rate: float, capacity: float, amount: float) -> float:
        """0 when ``amount`` was taken, else the seconds until it could be."""
        level, granted = self._upsert(key, rate, capacity, amount, conditional=True)
        return 0.0 if granted else (amount - level) / rate

    def charge(self, key: str, rate: float, capacity: float, amount: float) -> None:
        """Takes ``amount`` even past zero (tokens are counted after they were generated)."""
        self._upsert(key, rate, capacity, amount, conditional=False)

    def debt_wait(self, key: str, rate: float, capacity: float) -> float:
        """Seconds until the bucket's level is positive again (0 when it is, or the bucket is new)."""
        now = self.clock()
        with self._database().session() as session:
            row = session.execute(
                text("SELECT level, stamp FROM rate_limit_buckets WHERE key = :key"), {"key": key}
            ).one_or_none()
        if row is None:
            return 0.0
        level = min(capacity, float(row[0]) + max(0.0, now - float(row[1])) * rate)
        return 0.0 if level > 0 else (1e-9 - level) / rate


class DatabaseFailures:
    """Failed-login timestamps in ``login_failures`` (blocking calls; the login route runs in a thread)."""

    def __init__(self, database: Callable[[], Database], *, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self.clock = clock
        self._pruner = _Pruner()

    def add(self, keys: Iterable[str], now: float, *, window: float) -> None:
        rows = [{"key": digest_key(k), "at": now} for k in keys]
        with self._database().session() as session:
            session.execute(text("INSERT INTO login_failures (key, at) VALUES (:key, :at)"), rows)
            if self._pruner.due(now):
                session.execute(text("DELETE FROM login_failures WHERE at <= :cut"), {"cut": now - window})

    def count(self, key: str, since: float) -> int:
        with self._database().session() as session:
            return int(
                session.execute(
                    text("SELECT count(*) FROM login_failures WHERE key = :key AND at > :since"),
                    {"key": digest_key(key), "since": since},
                ).scalar_one()
            )

    def nth_newest(self, key: str, since: float, n: int) -> float | None:
        """The time of the ``n``-th newest failure after ``since`` (None when there are fewer)."""
        with self._database().session() as session:
            value = session.execute(
                text(
                    "SELECT at FROM login_failures WHERE key = :key AND at > :since "
                    "ORDER BY at DESC LIMIT 1 OFFSET :skip"
                ),
                {"key": digest_key(key), "since": since, "skip": n - 1},
            ).scalar_one_or_none()
        return None if value is None else float(value)

    def clear(self, key: str) -> None:
        with self._database().session() as session:
            session.execute(text("DELETE FROM login_failures WHERE key = :key"), {"key": digest_key(key)})
