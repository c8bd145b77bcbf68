"""Rate-limit buckets and failed-login counts in the database (migration 0004), on SQLite and PostgreSQL:
the same arithmetic as the in-memory stores, two "instances" (two engines) sharing one state, and no lost
update when many threads race on one bucket."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from haven.accounts.shared_limits import DatabaseBuckets, DatabaseFailures
from haven.accounts.throttle import LoginThrottle, TooManyAttemptsError
from haven.settings import Settings
from haven.storage.db import Database, open_database
from tests.conftest_postgres import postgres_url  # noqa: F401 - the fixture, used by name
from tests.support.accounts import database_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_instances(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    url = database_url(request, tmp_path, request.param)
    first, second = open_database(url), open_database(url)
    yield first, second
    first.close()
    second.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_buckets_are_shared_and_refill(two_instances: tuple[Database, Database]) -> None:
    one, two = two_instances
    clock = Clock()
    a, b = DatabaseBuckets(lambda: one, clock=clock), DatabaseBuckets(lambda: two, clock=clock)
    rate, capacity = 1.0, 3.0  # one a second, burst of three
    assert [a.try_take("req:k", rate, capacity, 1), b.try_take("req:k", rate, capacity, 1)] == [0, 0]
    assert a.try_take("req:k", rate, capacity, 1) == 0
    assert b.try_take("req:k", rate, capacity, 1) == pytest.approx(1.0)  # the other instance sees it empty
    assert b.try_take("req:other", rate, capacity, 1) == 0  # keys are separate
    clock.now += 1.0
    assert a.try_take("req:k", rate, capacity, 1) == 0  # refilled one
    assert b.try_take("req:k", rate, capacity, 1) == pytest.approx(1.0)
    clock.now += 100
    assert [a.try_take("req:k", rate, capacity, 1) for _ in range(4)][3] > 0  # capped at capacity, not 100


def test_charges_overdraw_and_debt_is_seen_by_the_other_instance(two_instances: tuple[Database, Database]) -> None:
    one, two = two_instances
    clock = Clock()
    a, b = DatabaseBuckets(lambda: one, clock=clock), DatabaseBuckets(lambda: two, clock=clock)
    assert b.debt_wait("tok:k", 10.0, 100.0) == 0  # unknown key: no debt
    a.charge("tok:k", 10.0, 100.0, 150)  # 50 in debt, 10 a second back
    assert b.debt_wait("tok:k", 10.0, 100.0) == pytest.approx(5.0, abs=1e-6)
    clock.now += 6
    assert b.debt_wait("tok:k", 10.0, 100.0) == 0


def test_a_clock_behind_refills_nothing(two_instances: tuple[Database, Database]) -> None:
    one, _ = two_instances
    clock = Clock()
    buckets = DatabaseBuckets(lambda: one, clock=clock)
    assert buckets.try_take("req:k", 1.0, 1.0, 1) == 0
    clock.now -= 30  # another instance's clock, behind: no refill, and the stamp does not go back
    assert buckets.try_take("req:k", 1.0, 1.0, 1) > 0
    clock.now += 30.5
    assert buckets.try_take("req:k", 1.0, 1.0, 1) > 0  # half a second after the first take, not 30.5


def test_racing_takes_never_overspend(two_instances: tuple[Database, Database]) -> None:
    one, two = two_instances
    clock = Clock()  # frozen: no refill during the race
    stores = [DatabaseBuckets(lambda: one, clock=clock), DatabaseBuckets(lambda: two, clock=clock)]
    granted: list[bool] = []
    lock = threading.Lock()

    def worker(store: DatabaseBuckets) -> None:
        for _ in range(10):
            ok = store.try_take("req:race", 0.001, 25.0, 1) == 0
            with lock:
                granted.append(ok)

    threads = [threading.Thread(target=worker, args=(stores[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 80 and sum(granted) == 25  # exactly the capacity, across both instances


def test_login_failures_count_across_instances(two_instances: tuple[Database, Database]) -> None:
    one, two = two_instances
    clock = Clock()
    throttles = [
        LoginThrottle(max_per_account=3, max_per_client=5, window=60, base_delay=0.5,
                      store=DatabaseFailures(lambda db=db: db, clock=clock))  # type: ignore[misc]
        for db in (one, two)
    ]
    delays = [throttles[i % 2].failure("alice", "1.2.3.4") for i in range(3)]
    assert delays == [0.5, 1.0, 1.5]
    with pytest.raises(TooManyAttemptsError) as info:
        throttles[1].check("Alice", "9.9.9.9")  # names are case-folded
    assert info.value.retry_after == pytest.approx(60)
    throttles[0].check("bob", "1.2.3.4")
    for i in range(2):
        throttles[i].failure("bob", "1.2.3.4")
    with pytest.raises(TooManyAttemptsError):
        throttles[0].check("carol", "1.2.3.4")  # five failures from this address, over both instances
    throttles[1].success("bob")
    throttles[0].check("bob", "5.6.7.8")
    clock.now += 61
    throttles[1].check("alice", "1.2.3.4")
    with one.session() as session:  # never the names typed: digests only
        keys = session.execute(text("SELECT key FROM login_failures")).scalars().all()
    assert keys and not any("alice" in k or "1.2.3.4" in k for k in keys)


def test_auto_keeps_limits_in_memory_on_sqlite_only(tmp_path: Path) -> None:
    assert not Settings(home=tmp_path).limits_in_database
    assert Settings(home=tmp_path, database_url="postgresql://db/haven").limits_in_database
    assert Settings(home=tmp_path, shared_limits="database").limits_in_database
    assert not Settings(home=tmp_path, database_url="postgresql://db/haven", shared_limits="memory").limits_in_database


async def test_a_database_outage_lets_requests_through_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from haven.server.ratelimit import Limits, RateLimitMiddleware

    def unreachable() -> Database:
        raise OSError("connection refused (the database is down)")

    app = RateLimitMiddleware(Starlette(routes=[Route("/v1/models", lambda r: PlainTextResponse("ok"))]),
                              limits=Limits(requests_per_minute=6), buckets=DatabaseBuckets(unreachable))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        statuses = [(await client.get("/v1/models")).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]  # a burst of 1 would refuse the second: the limiter failed open
    failures = [r for r in caplog.records if "rate-limit store failed" in r.getMessage()]
    assert len(failures) == 1  # logged once, not per request
