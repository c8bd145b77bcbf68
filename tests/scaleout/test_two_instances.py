"""Two Haven instances on one PostgreSQL (issue 16, item 6): real `haven serve` processes on loopback ports,
one throwaway PostgreSQL server, the state a load balancer's clients expect to be the same everywhere.

A key revoked through one is refused by the other on its next request; a conversation recorded through one
(a real chat) is read through the other; a per-key request limit and the failed-login throttle hold across
both; the security log written by both verifies as one chain."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from haven.storage.db import make_engine
from tests.conftest_postgres import postgres_url  # noqa: F401 - the fixture, used by name
from tests.e2e.conftest import HAVEN, HavenServer, server_env, start_haven_server
from tests.support.accounts import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
RPM = 120  # a burst of 20 (a sixth of a minute), then 2 a second
BURST = RPM // 6
SETTINGS = {
    "password_time_cost": 1,
    "password_memory_kib": 1024,
    "password_parallelism": 1,
    "login_failure_delay_seconds": 0,
    "login_max_failures_per_account": 3,
    "rate_limit_requests_per_minute": RPM,
    "context_length": 1024,
    "parallel": 1,
}


@pytest.fixture(scope="module")
def instances(make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory,
              postgres_url: str) -> Iterator[tuple[HavenServer, HavenServer]]:  # noqa: F811
    engine = make_engine(postgres_url)
    with engine.begin() as conn:  # a clean schema on the shared server
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    homes = [tmp_path_factory.mktemp("instance-a"), tmp_path_factory.mktemp("instance-b")]
    log_key = secrets.token_bytes(32)  # deploy/: every instance mounts the same security-log key
    for home in homes:
        (home / "security-log.key").write_bytes(log_key)
    env = server_env(homes[0], {"database_url": postgres_url})
    subprocess.run([*HAVEN, "db", "upgrade"], env=env, check=True, capture_output=True)  # as deploy/'s migrate job
    settings = {"database_url": postgres_url, "default_model": "tiny", **SETTINGS}
    with start_haven_server(homes[0], {"tiny": make_test_model()}, **settings) as a, \
            start_haven_server(homes[1], {}, **settings) as b:
        yield a, b


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def alice(instances: tuple[HavenServer, HavenServer]) -> Iterator[httpx.Client]:
    a, _ = instances
    with httpx.Client(base_url=a, timeout=60) as client:
        r = client.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
        assert r.status_code == 201, r.text
        client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        yield client


def new_key(alice: httpx.Client) -> tuple[str, str]:
    r = alice.post("/api/v1/me/keys", json={"label": "test"})
    assert r.status_code == 201, r.text
    return r.json()["key"]["id"], r.json()["secret"]


def test_a_key_revoked_on_one_is_refused_by_the_other(instances: tuple[HavenServer, HavenServer],
                                                       alice: httpx.Client) -> None:
    _, b = instances
    key_id, secret = new_key(alice)
    assert httpx.get(b + "/api/v1/me", headers=bearer(secret), timeout=30).status_code == 200
    assert alice.delete(f"/api/v1/me/keys/{key_id}").status_code == 204  # through instance a
    r = httpx.get(b + "/api/v1/me", headers=bearer(secret), timeout=30)
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key."


def test_a_conversation_recorded_through_one_is_read_through_the_other(
        instances: tuple[HavenServer, HavenServer], alice: httpx.Client) -> None:
    a, b = instances
    _, secret = new_key(alice)
    r = httpx.post(a + "/api/v1/conversations", headers=bearer(secret), json={"title": "shared"}, timeout=30)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = httpx.post(a + "/v1/chat/completions", headers=bearer(secret), timeout=60, json={
        "model": "tiny", "max_tokens": 4, "conversation_id": cid,
        "messages": [{"role": "user", "content": "written through a"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-haven-conversation-id"] == cid
    conversation = httpx.get(f"{b}/api/v1/conversations/{cid}", headers=bearer(secret), timeout=30).json()
    turn, reply = conversation["messages"]
    assert turn["content"] == "written through a" and reply["role"] == "assistant"
    assert reply["content"] == r.json()["choices"][0]["message"]["content"]  # decrypted by b with the key


def test_a_per_key_request_limit_holds_across_both(instances: tuple[HavenServer, HavenServer],
                                                     alice: httpx.Client) -> None:
    _, secret = new_key(alice)
    clients = [httpx.Client(base_url=url, headers=bearer(secret), timeout=30) for url in instances]
    try:
        started = time.monotonic()
        statuses = []
        for i in range(3 * BURST):  # spread over both instances; each alone would allow a burst of its own
            r = clients[i % 2].get("/v1/models")
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
    granted = statuses.count(200)
    assert set(statuses) == {200, 429} and statuses[:BURST] == [200] * BURST
    # One shared bucket: the burst plus what refilled while the loop ran (2 a second); two buckets would
    # have granted at least two bursts.
    assert granted <= BURST + int(elapsed * RPM / 60) + 1, (granted, elapsed)
    assert 429 in statuses[0::2] and 429 in statuses[1::2]  # refused by either


def test_failed_logins_are_counted_across_both(instances: tuple[HavenServer, HavenServer],
                                               alice: httpx.Client) -> None:
    for i in range(3):  # the account's limit, spread over both instances
        r = httpx.post(instances[i % 2] + "/api/v1/auth/login", json={"name": "alice", "password": "wrong " * 3},
                       timeout=30)
        assert r.status_code == 401, r.text
    for url in instances:
        r = httpx.post(url + "/api/v1/auth/login", json={"name": "alice", "password": PASSWORD}, timeout=30)
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_attempts"


def test_the_security_log_written_by_both_verifies_as_one_chain(instances: tuple[HavenServer, HavenServer],
                                                                 alice: httpx.Client) -> None:
    _, b = instances
    r = alice.get("/api/v1/admin/security-log", params={"limit": 200})
    assert r.status_code == 200, r.text
    r = httpx.get(b + "/api/v1/admin/security-log/verify", cookies=alice.cookies, timeout=30)
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
